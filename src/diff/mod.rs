//! `picoqemu diff`: runs one guest on KVM and on the interpreter and shows exactly where, and
//! why, they disagree.
//!
//! Whole-run mode ([`wholerun`]) compares the final CPU state, all of guest RAM and the device
//! output. `--lockstep` ([`lockstep`]) compares after every instruction, with KVM's single-step
//! quirks handled by explicit rules. Undefined flags are masked exactly as the interpreter's
//! executed instructions leave them ([`flagmask`]).
//!
//! A divergence is checked against the documented differences of KVM's emulator on our hosts
//! ([`known`], `docs/known-differences.md`) exactly as `picoqemu fuzz` does: the reference's
//! stop, the whole-run shape (e.g. `kvm-guest-tf-traps`), and — when a whole run differs for
//! no recognised reason and no undefined flag was read — the first differing instruction,
//! located by a lockstep run on fresh machines.
//!
//! Limits: `--timeout` bounds the whole command (one deadline; a whole run gives the reference
//! half of it). A timeout on either side is "no verdict" (the sides stopped at unrelated
//! instructions), never a divergence; `--max-instructions` stops both sides at the same count,
//! so states are still compared there.
//!
//! Exit status: 0 identical; 1 divergent (unexplained); 2 bad usage or image; 3 the reference
//! (KVM) could not execute an instruction, so there is no verdict; 4 no verdict: a side ran out
//! of time, or both hit the budget without a difference; 5 host error (e.g. KVM unavailable); 6 divergent, but
//! only by a documented known difference of KVM's emulator.
pub mod error;
pub mod history;
pub mod known;
pub mod lockstep;
pub mod stepper;
pub mod trace;
pub mod wholerun;

/// The state/RAM comparer, the instruction formatter and the undefined-flags model live in the
/// verification library; re-exported under their old names.
pub use picoqemu_verify::{compare, disasm, flagmask};

use std::path::PathBuf;
use std::time::{Duration, Instant};

use picoqemu_core::devices::Sink;
use picoqemu_core::{load_image, CpuState, ImageKind, IoBus, Machine, RunLimits, StopReason};
use picoqemu_interp::{InterpBackend, JitMode};
use picoqemu_kvm::KvmBackend;

use crate::backends::{self, BuildError};
use crate::options::{JitOpts, LimitOpts, MachineOpts};

pub use error::DiffError;
use known::Known;
use lockstep::{Lockstep, LockstepEnd};
use wholerun::{Side, WholeRun};

/// Exit statuses of `diff`.
pub mod exit {
    pub const IDENTICAL: i32 = 0;
    pub const DIVERGENT: i32 = 1;
    pub const BAD_INPUT: i32 = 2;
    pub const NO_VERDICT_FAULT: i32 = 3;
    pub const NO_VERDICT_LIMIT: i32 = 4;
    pub const HOST_ERROR: i32 = 5;
    /// Divergent only by a documented known difference (`docs/known-differences.md`).
    pub const EXPLAINED: i32 = 6;
}

/// Arguments of `picoqemu diff`.
///
/// Exit status: 0 identical; 1 divergent (unexplained: a bug); 2 bad usage or image; 3 no
/// verdict, KVM could not emulate an instruction; 4 no verdict, a side ran out of time or both
/// hit the instruction budget without a difference; 5 host error (e.g. no KVM); 6 divergent only by a documented known difference
/// of KVM's emulator (printed as `DIVERGENT (explained: <id>, see docs/known-differences.md)`).
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Exit status: 0 identical; 1 divergent (unexplained); 2 bad usage or image; \
3 no verdict (KVM could not emulate an instruction); 4 no verdict (a side ran out of time, or both hit \
--max-instructions with no difference so far); 5 host error (e.g. KVM unavailable); 6 divergent only by a documented known difference of KVM's \
emulator (\"DIVERGENT (explained: <id>, see docs/known-differences.md)\").")]
pub struct DiffArgs {
    /// Load the image at physical 0 and start at 0000:0000 (the article's layout).
    #[arg(long, conflicts_with = "rom")]
    pub raw: bool,
    /// Load the image to end at 0xFFFFF and start at F000:FFF0 like a CPU reset.
    #[arg(long)]
    pub rom: bool,
    #[command(flatten)]
    pub machine: MachineOpts,
    /// Compare after every instruction (KVM single-steps) instead of only at the end.
    #[arg(long)]
    pub lockstep: bool,
    /// `--timeout` limits the whole command (default 10s; a whole run gives KVM half of it and
    /// the interpreter the rest): a timeout on either side is no verdict (exit 4), never a
    /// divergence. Both runs stop after `--max-instructions` and are compared at that count
    /// (exit 4 if no difference).
    #[command(flatten)]
    pub limits: LimitOpts,
    #[command(flatten)]
    pub jit: JitOpts,
    /// The guest image (a 512-byte boot sector unless --raw or --rom).
    pub image: PathBuf,
}

impl DiffArgs {
    /// The loader layout the flags select.
    pub fn kind(&self) -> ImageKind {
        if self.raw {
            ImageKind::Raw
        } else if self.rom {
            ImageKind::Rom
        } else {
            ImageKind::Boot
        }
    }

    /// The run limits the flags select (the whole command: [`DEFAULT_TIMEOUT`] unless `--timeout`).
    pub fn limits(&self) -> RunLimits {
        self.limits.limits(Some(DEFAULT_TIMEOUT))
    }
}

/// The limit of the whole command when `--timeout` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Two machines with the same image loaded, and the start state.
pub struct Prepared {
    pub kvm: Side<KvmBackend>,
    pub interp: Side<InterpBackend>,
    pub start: CpuState,
}

/// Builds a capturing machine shaped by `opts` and loads `image` into it.
pub fn machine_with(
    image: &[u8],
    kind: ImageKind,
    opts: &MachineOpts,
) -> Result<(Machine, CpuState), DiffError> {
    backends::machine(opts, IoBus::capturing(), Sink::capture(), image, kind).map_err(|e| match e {
        BuildError::Load(e) => DiffError::Load(e),
        BuildError::Machine(e) => DiffError::Core(e),
        BuildError::Placement(m) => DiffError::Usage(m),
    })
}

/// Loads `image` on two fresh machines of `mem` bytes and creates the KVM VM and the
/// interpreter (default compiled tier).
pub fn prepare(image: &[u8], kind: ImageKind, mem: usize) -> Result<Prepared, DiffError> {
    prepare_with(image, kind, &MachineOpts { mem, ..MachineOpts::default() }, JitMode::default())
}

/// [`prepare`] on machines shaped by `opts`, with the interpreter's compiled tier in `jit` mode.
pub fn prepare_with(
    image: &[u8],
    kind: ImageKind,
    opts: &MachineOpts,
    jit: JitMode,
) -> Result<Prepared, DiffError> {
    let (mk, start) = machine_with(image, kind, opts)?;
    let (mi, _) = machine_with(image, kind, opts)?;
    let kvm = backends::kvm(&mk).map_err(|e| DiffError::KvmUnavailable(e.to_string()))?;
    Ok(Prepared { kvm: Side::new(kvm, mk), interp: Side::new(backends::interp(jit), mi), start })
}

/// Exit status and report text for a whole-run comparison.
pub fn whole_run_verdict(w: &WholeRun) -> (i32, String) {
    let c = &w.comparison;
    let steps = w.trace.steps;
    if let StopReason::EmulationFailure { cs, ip, bytes } = &c.left.stop {
        let (hex, text) = disasm::describe(bytes.as_slice(), *ip);
        return (
            exit::NO_VERDICT_FAULT,
            format!(
                "diff: no verdict: KVM could not emulate the instruction at {cs:04x}:{ip:04x} ({hex}  {text}); \
                 KVM's instruction emulator on this host lacks it (see docs/known-differences.md)\n"
            ),
        );
    }
    if let Some(text) = timeout_no_verdict(w) {
        return (exit::NO_VERDICT_LIMIT, text);
    }
    if c.is_identical() {
        if c.left.stop == StopReason::BudgetExhausted {
            return (
                exit::NO_VERDICT_LIMIT,
                format!(
                    "diff: no verdict: both runs reached the instruction budget ({steps} instructions each) and show no difference so far\n"
                ),
            );
        }
        return (
            exit::IDENTICAL,
            format!(
                "diff: identical: kvm and interp both {} after {steps} instructions; registers, all of RAM and device output match\n",
                c.left.stop
            ),
        );
    }
    let mut out = format!("diff: DIVERGENT (whole run; the interpreter executed {steps} instructions)\n");
    out.push_str(&c.to_string());
    if let Some(t) = w.trace.undef.taint() {
        out.push_str(&format!(
            "note: instruction #{} read flags [{}] that an earlier instruction left undefined; later state may legitimately differ\n",
            t.step,
            picoqemu_core::cpu::flag_string(t.flags).chars().filter(|c| c.is_uppercase()).collect::<String>()
        ));
    }
    out.push_str("last instructions executed by the interpreter:\n");
    out.push_str(&w.trace.history.to_string());
    out.push_str("(run with --lockstep to find the first instruction that differs)\n");
    (exit::DIVERGENT, out)
}

/// The "no verdict" report of a whole run in which a side ran out of time: the two sides then
/// stopped after unrelated instruction counts, so their states are not compared.
fn timeout_no_verdict(w: &WholeRun) -> Option<String> {
    let c = &w.comparison;
    let sides =
        [(c.left_name, &c.left.stop, w.reference_steps), (c.right_name, &c.right.stop, Some(w.trace.steps))];
    let out: Vec<&str> =
        sides.iter().filter(|(_, stop, _)| **stop == StopReason::Timeout).map(|(name, _, _)| *name).collect();
    if out.is_empty() {
        return None;
    }
    let count = |n: Option<u64>| match n {
        Some(n) => format!("{n} instructions"),
        None => "an uncounted number of instructions (KVM counts only under --max-instructions)".to_string(),
    };
    let detail: Vec<String> =
        sides.iter().map(|(name, stop, n)| format!("{name}: {stop}, after {}", count(*n))).collect();
    Some(format!(
        "diff: no verdict: {} ran out of time (--timeout); the runs stopped at different points, so they are not compared\n  {}\n",
        out.join(" and "),
        detail.join("\n  ")
    ))
}

/// Exit status and report text for a divergence that is the known difference `k`; `detail` is
/// the divergence's own report.
pub fn explained_verdict(k: Known, detail: &str) -> (i32, String) {
    (
        exit::EXPLAINED,
        format!(
            "diff: DIVERGENT (explained: {}, see docs/known-differences.md)\n  {}\ndetails of the difference:\n{detail}",
            k.id, k.summary
        ),
    )
}

/// The known difference that explains a lockstep run's end, if any.
pub fn explain_lockstep(l: &Lockstep, start: &CpuState, reference_ram: &[u8]) -> Option<Known> {
    match &l.end {
        LockstepEnd::Diverged(d) => known::classify_divergence(d),
        LockstepEnd::ReferenceFailed(stop) => known::classify_reference_stop(stop, start, reference_ram),
        _ => None,
    }
}

/// The known difference that explains a whole run's divergence without locating it, if any.
pub fn explain_whole_run(w: &WholeRun, reference_ram: &[u8], candidate_ram: &[u8]) -> Option<Known> {
    let c = &w.comparison;
    if c.is_identical() {
        return None;
    }
    known::classify_reference_stop(&c.left.stop, &c.left.state, reference_ram)
        .or_else(|| known::classify_whole_run(c, &w.trace.tf_rep, reference_ram, candidate_ram))
}

/// Exit status and report text for a lockstep comparison.
pub fn lockstep_verdict(l: &Lockstep) -> (i32, String) {
    let rules = format!(
        "quirk rules applied: {} REP chunks, {} fault+handler merges, {} MOV SS realignments, {} HLT debug exits, {} I/O merges, {} REP compare restarts\n",
        l.rules.rep_chunks, l.rules.fault_merged, l.rules.mov_ss, l.rules.hlt, l.rules.io_merged, l.rules.rep_restarts
    );
    match &l.end {
        LockstepEnd::Stopped(stop @ (StopReason::BudgetExhausted | StopReason::Timeout)) if l.limited_by.is_some() => {
            let side = l.limited_by.unwrap_or("?");
            let what = if *stop == StopReason::Timeout { "ran out of time (--timeout)" } else { "reached the instruction budget" };
            (
                exit::NO_VERDICT_LIMIT,
                format!(
                    "diff: no verdict: {side} {what} after {} identical instructions in lockstep; a limit is not a difference\n{rules}",
                    l.steps
                ),
            )
        }
        LockstepEnd::Stopped(stop) => {
            let code = match stop {
                StopReason::BudgetExhausted | StopReason::Timeout => exit::NO_VERDICT_LIMIT,
                _ => exit::IDENTICAL,
            };
            if code == exit::IDENTICAL {
                return (code, format!("diff: identical: {} instructions compared in lockstep; both {stop}\n{rules}", l.steps));
            }
            let what = if *stop == StopReason::Timeout { "ran out of time (--timeout)" } else { "reached the instruction budget" };
            (
                code,
                format!(
                    "diff: no verdict: kvm and interp {what} after {} identical instructions in lockstep; a limit is not a difference\n{rules}",
                    l.steps
                ),
            )
        }
        LockstepEnd::ReferenceFailed(stop) => {
            let text = match stop {
                StopReason::EmulationFailure { cs, ip, bytes } => {
                    let (hex, dis) = disasm::describe(bytes.as_slice(), *ip);
                    format!("KVM could not emulate the instruction at {cs:04x}:{ip:04x} ({hex}  {dis})")
                }
                other => other.to_string(),
            };
            (
                exit::NO_VERDICT_FAULT,
                format!("diff: no verdict after {} identical instructions: {text}\n{rules}", l.steps),
            )
        }
        LockstepEnd::GuestTrapFlag { step, cs, ip } => (
            exit::NO_VERDICT_FAULT,
            format!("diff: the guest set TF at instruction #{step} ({cs:04x}:{ip:04x}); lockstep cannot compare it\n"),
        ),
        LockstepEnd::Diverged(d) => {
            let (hex, dis) = disasm::describe(d.bytes.as_slice(), d.ip);
            let mut out = format!(
                "diff: DIVERGENT at instruction #{} (lockstep), CS:IP {:04x}:{:04x}: {hex}  {dis}\n",
                d.step, d.cs, d.ip
            );
            out.push_str(&d.comparison.to_string());
            if !d.written.is_empty() {
                out.push_str("memory written by this instruction that differs:\n");
                for r in &d.written {
                    out.push_str(&format!("  {r}\n"));
                }
            }
            if let Some(t) = l.undef.taint() {
                out.push_str(&format!(
                    "note: instruction #{} read flags [{}] that an earlier instruction left undefined\n",
                    t.step,
                    picoqemu_core::cpu::flag_string(t.flags).chars().filter(|c| c.is_uppercase()).collect::<String>()
                ));
            }
            out.push_str("last instructions executed:\n");
            out.push_str(&l.history.to_string());
            out.push_str(&rules);
            (exit::DIVERGENT, out)
        }
    }
}

/// `picoqemu diff`.
pub fn run(args: &DiffArgs) -> anyhow::Result<i32> {
    let limits = args.limits();
    let deadline = limits.timeout.map(|t| Instant::now() + t);
    let image = match std::fs::read(&args.image) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("picoqemu: cannot read {}: {e}", args.image.display());
            return Ok(exit::BAD_INPUT);
        }
    };
    let kind = args.kind();
    let mut p = match prepare_with(&image, kind, &args.machine, args.jit.jit.into()) {
        Ok(p) => p,
        Err(DiffError::KvmUnavailable(m)) => {
            eprintln!("picoqemu: KVM is not available ({m}); diff compares KVM with the interpreter and needs /dev/kvm");
            return Ok(exit::HOST_ERROR);
        }
        Err(e @ (DiffError::Load(_) | DiffError::Core(_) | DiffError::Usage(_))) => {
            eprintln!("picoqemu: {e}");
            return Ok(exit::BAD_INPUT);
        }
        Err(e) => {
            eprintln!("picoqemu: {e}");
            return Ok(exit::HOST_ERROR);
        }
    };
    if args.lockstep {
        let l = match lockstep::lockstep(&mut p.kvm, &mut p.interp, &p.start, limits) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("picoqemu: {e}");
                return Ok(exit::HOST_ERROR);
            }
        };
        if let LockstepEnd::GuestTrapFlag { step, cs, ip } = l.end {
            eprintln!(
                "picoqemu: the guest sets TF at instruction #{step} ({cs:04x}:{ip:04x}); KVM swallows a guest's own \
                 single-step trap while it single-steps, so lockstep cannot compare it: falling back to a whole-run comparison"
            );
            p = match prepare_with(&image, kind, &args.machine, args.jit.jit.into()) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("picoqemu: {e}");
                    return Ok(exit::HOST_ERROR);
                }
            };
        } else {
            let (code, text) = lockstep_verdict(&l);
            let (code, text) = match explain_lockstep(&l, &p.start, p.kvm.machine.ram_mut().bytes()) {
                Some(k) => explained_verdict(k, &text),
                None => (code, text),
            };
            print!("{text}");
            return Ok(code);
        }
    }
    let mut reload = |m: &mut Machine| -> Result<(), DiffError> {
        m.reset();
        load_image(m, &image, kind)?;
        Ok(())
    };
    let budget = limits.max_instructions;
    let w =
        match wholerun::whole_run_until(&mut p.kvm, &mut p.interp, &p.start, budget, deadline, &mut reload) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("picoqemu: {e}");
                return Ok(exit::HOST_ERROR);
            }
        };
    let (code, text) = whole_run_verdict(&w);
    let mut explained =
        explain_whole_run(&w, p.kvm.machine.ram_mut().bytes(), p.interp.machine.ram_mut().bytes());
    if explained.is_none() && code == exit::DIVERGENT && w.trace.undef.taint().is_none() {
        // Locate the first differing instruction; a known difference there explains it.
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left != Some(Duration::ZERO) {
            explained = locate_known(&image, kind, &args.machine, RunLimits { timeout: left, ..limits });
        }
    }
    let (code, text) = match explained {
        Some(k) => explained_verdict(k, &text),
        None => (code, text),
    };
    print!("{text}");
    Ok(code)
}

/// Runs `image` in lockstep on fresh machines and returns the known difference at its first
/// differing instruction, if that is one. Host errors and other ends give `None` (the whole-run
/// verdict stands).
fn locate_known(image: &[u8], kind: ImageKind, opts: &MachineOpts, limits: RunLimits) -> Option<Known> {
    let mut p = prepare_with(image, kind, opts, JitMode::default()).ok()?;
    let l = lockstep::lockstep(&mut p.kvm, &mut p.interp, &p.start, limits).ok()?;
    explain_lockstep(&l, &p.start, p.kvm.machine.ram_mut().bytes())
}
