//! `picoqemu fuzz`: random real-mode programs run on KVM and on the interpreter, compared,
//! and each divergence minimised to a small reproducer.
//!
//! Program `k` of seed `S` is generated from [`rng::program_seed`]`(S, k)` only, so campaigns
//! are reproducible on every machine and for every `--jobs`. Each job thread owns one machine
//! pair, one KVM VM and one interpreter, reused (reset) for every program it runs; results are
//! collected by program number, so the output does not depend on scheduling.
pub mod harness;
pub mod minimize;
pub mod repro;

/// The RNG, the program layout and the campaign profile of the generator live in the
/// verification library; re-exported under their old names.
pub use picoqemu_verify::gen::campaign as gen;
pub use picoqemu_verify::{program, rng};

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;

use picoqemu_core::{IoBus, Machine, MachineConfig};
use picoqemu_interp::{InterpBackend, JitMode};
use picoqemu_kvm::KvmBackend;

use crate::diff::stepper::StepBackend;
use crate::diff::wholerun::Side;
use crate::diff::DiffError;
use harness::{SkipReason, Verdict, Worker};

/// Arguments of `picoqemu fuzz`.
#[derive(Debug, Clone, clap::Args)]
pub struct FuzzArgs {
    /// Campaign seed (decimal or 0x-prefixed hex).
    #[arg(long, default_value = "1", value_parser = parse_seed)]
    pub seed: u64,
    /// Number of programs.
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
    /// Worker threads, each with its own machines and KVM VM (default: all cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Where reproducers of divergences are written.
    #[arg(long, default_value = "fuzz-out")]
    pub out: PathBuf,
    /// Compare after every instruction instead of at the end of each program.
    #[arg(long)]
    pub lockstep: bool,
    /// When the interpreter side compiles loops to host code (`eager` tests that tier).
    #[arg(long, value_enum, default_value_t = crate::cli::JitChoice::Hot)]
    pub jit: crate::cli::JitChoice,
}

/// Parses a seed: decimal or `0x` hex.
pub fn parse_seed(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse(),
    };
    r.map_err(|_| format!("`{s}` is not a seed (a decimal or 0x-hex 64-bit number)"))
}

/// What happened to one program, as reported at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Same,
    /// Divergent: signature, minimised size, reproducer directory (or the error writing it).
    Divergent {
        signature: Vec<String>,
        insns: usize,
        original: usize,
        repro: Result<PathBuf, String>,
    },
    Skipped(SkipReason),
}

/// Counts of a campaign.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub programs: u64,
    pub same: u64,
    pub divergent: u64,
    pub skipped: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fuzz: {} programs, {} same, {} divergent, {} skipped",
            self.programs, self.same, self.divergent, self.skipped
        )
    }
}

/// Runs, classifies and (when divergent) minimises and writes program `index` of `seed`.
pub fn fuzz_one<R: StepBackend, C: StepBackend>(
    worker: &mut Worker<R, C>,
    seed: u64,
    index: u64,
    out: &Path,
) -> Result<Outcome, DiffError> {
    let program = gen::generate(rng::program_seed(seed, index));
    match worker.run_program(&program)? {
        Verdict::Same => Ok(Outcome::Same),
        Verdict::Skipped(r) => Ok(Outcome::Skipped(r)),
        Verdict::Known(k) => Ok(Outcome::Skipped(SkipReason::Known(k.id))),
        Verdict::Divergent(f) => {
            let m = minimize::minimise(worker, &program, &f)?;
            let repro = repro::write(out, seed, index, &program, &m).map_err(|e| e.to_string());
            Ok(Outcome::Divergent {
                signature: m.finding.signature.clone(),
                insns: m.program.insn_count(),
                original: program.insn_count(),
                repro,
            })
        }
    }
}

/// A KVM/interpreter worker on fresh machines.
pub fn kvm_worker(lockstep: bool) -> Result<Worker<KvmBackend, InterpBackend>, DiffError> {
    kvm_worker_with(lockstep, JitMode::default())
}

/// [`kvm_worker`] with the interpreter's compiled-block tier in `jit` mode.
pub fn kvm_worker_with(lockstep: bool, jit: JitMode) -> Result<Worker<KvmBackend, InterpBackend>, DiffError> {
    let config = MachineConfig { mem_size: program::FUZZ_MEM, a20_wrap: false, ..MachineConfig::default() };
    let mk = Machine::new(config, IoBus::capturing())?;
    let mi = Machine::new(config, IoBus::capturing())?;
    let kvm = KvmBackend::new(&mk).map_err(|e| DiffError::KvmUnavailable(e.to_string()))?;
    Ok(Worker::new(Side::new(kvm, mk), Side::new(InterpBackend::new().with_jit(jit), mi), lockstep))
}

/// Runs a campaign with workers made by `make`, calling `progress` after each program.
/// Returns the outcome of every program, by number.
pub fn campaign<R, C, F>(
    args: &FuzzArgs,
    make: F,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<Outcome>, DiffError>
where
    R: StepBackend,
    C: StepBackend,
    F: Fn() -> Result<Worker<R, C>, DiffError> + Sync,
{
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
        .clamp(1, 256)
        .min(args.count.max(1) as usize);
    let next = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(u64, Outcome)>();
    let errors = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for _ in 0..jobs {
            let tx = tx.clone();
            let (next, failed, make) = (&next, &failed, &make);
            handles.push(s.spawn(move || -> Result<(), DiffError> {
                let mut worker = make()?;
                loop {
                    if failed.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= args.count {
                        return Ok(());
                    }
                    match fuzz_one(&mut worker, args.seed, k, &args.out) {
                        Ok(o) => {
                            let _ = tx.send((k, o));
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                    }
                }
            }));
        }
        drop(tx);
        let mut results = BTreeMap::new();
        for (k, o) in rx.iter() {
            results.insert(k, o);
            progress(results.len() as u64);
        }
        let errors: Vec<DiffError> =
            handles.into_iter().filter_map(|h| h.join().ok()).filter_map(|r| r.err()).collect();
        (results, errors)
    });
    let (results, errors) = errors;
    if let Some(e) = errors.into_iter().next() {
        return Err(e);
    }
    Ok(results.into_values().collect())
}

/// Prints the per-program lines and the summary; returns the summary.
pub fn report(outcomes: &[Outcome], seed: u64) -> Summary {
    let mut s = Summary { programs: outcomes.len() as u64, ..Summary::default() };
    let mut skipped: BTreeMap<String, u64> = BTreeMap::new();
    for (k, o) in outcomes.iter().enumerate() {
        match o {
            Outcome::Same => s.same += 1,
            Outcome::Skipped(r) => {
                s.skipped += 1;
                let key = match r {
                    SkipReason::KvmCannotEmulate(m) => format!("KVM cannot emulate {m}"),
                    SkipReason::NoTermination => "did not terminate".to_string(),
                    SkipReason::Known(id) => format!("known difference {id} (docs/known-differences.md)"),
                    SkipReason::Generator(e) => format!("generator: {e}"),
                };
                *skipped.entry(key).or_default() += 1;
            }
            Outcome::Divergent { signature, insns, original, repro } => {
                s.divergent += 1;
                let where_ = match repro {
                    Ok(d) => format!("reproducer in {}", d.display()),
                    Err(e) => format!("could not write the reproducer: {e}"),
                };
                println!(
                    "divergent: seed {seed} program {k}: [{}], minimised {original} -> {insns} instructions; {where_}",
                    signature.join(", ")
                );
            }
        }
    }
    for (why, n) in &skipped {
        println!("skipped: {n} program(s): {why}");
    }
    println!("{s}");
    s
}

/// `picoqemu fuzz`.
pub fn run(args: &FuzzArgs) -> anyhow::Result<i32> {
    if let Err(e) = KvmBackend::probe() {
        eprintln!(
            "picoqemu: KVM is not available ({e}); fuzz compares KVM with the interpreter and needs /dev/kvm"
        );
        return Ok(crate::diff::exit::HOST_ERROR);
    }
    if args.out.exists() && !args.out.is_dir() {
        eprintln!("picoqemu: --out {} exists and is not a directory", args.out.display());
        return Ok(crate::diff::exit::BAD_INPUT);
    }
    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(args.count);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "fuzz {bar:40} {pos}/{len} programs ({per_sec}, eta {eta})",
        ) {
            b.set_style(style);
        }
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let progress = |n: u64| bar.set_position(n);
    let lockstep = args.lockstep;
    let outcomes = match campaign(args, || kvm_worker_with(lockstep, args.jit.into()), &progress) {
        Ok(o) => o,
        Err(e) => {
            bar.finish_and_clear();
            eprintln!("picoqemu: {e}");
            return Ok(crate::diff::exit::HOST_ERROR);
        }
    };
    bar.finish_and_clear();
    let s = report(&outcomes, args.seed);
    Ok(if s.divergent == 0 { 0 } else { 1 })
}
