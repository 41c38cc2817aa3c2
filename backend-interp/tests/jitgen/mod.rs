//! Campaign driver of the JIT differential test: runs each generated program under the
//! interpreter tiers, compares everything observable (masking only undefined flags), checks
//! budgeted runs stop-by-stop, shrinks failing programs and prints reproducers.
//!
//! The generator (its compiled-tier loop profile), the RNG, the undefined-flags model, the
//! comparer helpers and the shrinker are `picoqemu_verify`'s; this file is the campaign.
use iced_x86::{Decoder, DecoderOptions, Formatter, NasmFormatter};
use picoqemu_core::devices::{MmioConsole, Sink};
use picoqemu_core::{Backend, CpuState, IoBus, Machine, MachineConfig, RunLimits, StopReason};
use picoqemu_interp::{InterpBackend, JitMode};

use picoqemu_verify::compare::{byte_diffs, state_diff as masked_state_diff};
use picoqemu_verify::gen::loops::{
    self as gen, build, generate, Built, Catalogue, Class, Program, Term, CODE_LINEAR, FILL_BASE, FILL_LEN,
    HANDLER, MMIO_BASE,
};
use picoqemu_verify::rng::{fill_bytes, SplitMix64 as Rng};
use picoqemu_verify::shrink::{ddmin, Oracle};

/// Seed and size of a campaign.
#[derive(Debug, Clone, Copy)]
pub struct CampaignConfig {
    pub seed: u64,
    pub count: u64,
}

impl CampaignConfig {
    /// `PICOQEMU_JIT_DIFF_SEED` / `PICOQEMU_JIT_DIFF_COUNT` override the defaults.
    pub fn from_env(seed: u64, count: u64) -> CampaignConfig {
        let parse = |name: &str| {
            std::env::var(name).ok().and_then(|v| {
                let v = v.trim();
                match v.strip_prefix("0x") {
                    Some(h) => u64::from_str_radix(h, 16).ok(),
                    None => v.parse().ok(),
                }
            })
        };
        CampaignConfig {
            seed: parse("PICOQEMU_JIT_DIFF_SEED").unwrap_or(seed),
            count: parse("PICOQEMU_JIT_DIFF_COUNT").unwrap_or(count),
        }
    }
}

/// Totals of a campaign.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    programs: u64,
    skipped: u64,
    eager_insns: u64,
    jit_insns: u64,
    jit_compiled: u64,
    jit_declined: u64,
    jit_runs: u64,
    budget_stops: u64,
    hot_runs: u64,
    masked_stops: u64,
    faults: u64,
    by_class: [u64; 8],
}

/// A machine and CPU set up for one program.
struct Rig {
    m: Machine,
    be: InterpBackend,
}

/// RAM areas filled with random bytes and compared, per class: (start, fill length, compare
/// length).
fn areas(class: Class) -> Vec<(usize, usize, usize)> {
    let mut v = vec![(FILL_BASE, FILL_LEN, 0)];
    match class {
        Class::Smc => v.push((CODE_LINEAR + 0x700, 0x900, 0)),
        Class::Mmio => v.push((0xCF000, 0x1000, 0)),
        Class::A20 => v.push((0x0C00, 0x1800, 0)),
        Class::Hma => v.push((0x100C00, 0x1800, 0)),
        _ => {}
    }
    v
}

/// Compared RAM ranges.
fn compare_ranges(class: Class) -> Vec<(usize, usize)> {
    let mut v = vec![(0, 0x40000)];
    match class {
        Class::Mmio => v.push((0xC0000, 0xE0000)),
        Class::Hma | Class::A20 => v.push((0xF0000, 0x110000)),
        _ => {}
    }
    v
}

fn rig(p: &Program, b: &Built, mode: JitMode) -> Rig {
    rig_with(p, b, InterpBackend::new().with_jit(mode))
}

/// Sets up `p` on a fresh machine for the backend `be` (which may have run other programs).
fn rig_with(p: &Program, b: &Built, mut be: InterpBackend) -> Rig {
    let cfg = MachineConfig { a20_wrap: p.a20_wrap, ..MachineConfig::default() };
    let mut bus = IoBus::capturing();
    if p.mmio {
        bus.mmio_console = Some(MmioConsole::new(MMIO_BASE, Sink::capture()));
    }
    let mut m = Machine::new(cfg, bus).expect("machine");
    let ram = m.ram_mut().as_mut_slice();
    for (i, (start, len, _)) in areas(p.class).into_iter().enumerate() {
        fill_bytes(p.fill_seed.wrapping_add(i as u64), &mut ram[start..start + len]);
    }
    for v in 0..256 {
        ram[v * 4..v * 4 + 2].copy_from_slice(&(HANDLER as u16).to_le_bytes());
        ram[v * 4 + 2..v * 4 + 4].copy_from_slice(&[0, 0]);
    }
    ram[HANDLER] = 0xF4; // hlt
    let at = gen::CODE_BASE + b.ip as usize;
    ram[at..at + b.code.len()].copy_from_slice(&b.code);
    be.set_state(&p.init).expect("set_state");
    Rig { m, be }
}

/// What one stop looked like.
struct Stop {
    reason: StopReason,
    state: CpuState,
    icount: u64,
}

fn run(r: &mut Rig, limit: u64) -> Stop {
    let reason = r.be.run(&mut r.m, RunLimits::instructions(limit)).expect("run");
    let state = r.be.state().expect("state");
    let icount = r.be.stats().instructions.unwrap_or(0);
    Stop { reason, state, icount }
}

/// Flags to mask at a stop, and the bytes of FLAGS images a fault pushed to RAM (linear
/// address, bits that may differ).
#[derive(Debug, Clone, Default)]
struct Mask {
    flags: u32,
    pushed: Vec<(usize, u8)>,
    /// The stop could not be placed on the program's path (nothing is masked then).
    lost: bool,
}

fn item_at(b: &Built, k: u64) -> usize {
    let p = b.prefix_len as u64;
    let l = (b.items.len() - b.prefix_len) as u64;
    if k < p {
        k as usize
    } else {
        (p + (k - p) % l) as usize
    }
}

fn undefined_after(b: &Built, completed: u64) -> u32 {
    let mut u = 0;
    for k in 0..completed {
        u = b.items[item_at(b, k)].fx.apply(u);
    }
    u
}

/// Places the reference stop on the program's path and computes the mask.
fn mask_for(p: &Program, b: &Built, s: &Stop, m: &Machine) -> Mask {
    let lost = Mask { flags: 0, pushed: Vec::new(), lost: true };
    let cs = s.state.segs[1];
    let eip = s.state.eip;
    let next_ip = |c: u64| b.items[item_at(b, c)].ip as u32;
    let ss = s.state.segs[2];
    let sp = s.state.gpr[4] & 0xFFFF;
    let a20 = if p.a20_wrap { 0xF_FFFF } else { u32::MAX };
    let lin = |off: u32| (ss.base.wrapping_add(off & 0xFFFF) & a20) as usize;
    match s.reason {
        StopReason::BudgetExhausted | StopReason::StepDone => {
            let c = s.icount;
            if cs.selector == gen::CODE_SEG && (eip == next_ip(c) || eip == b.hlt_ip as u32) {
                return Mask { flags: undefined_after(b, c), pushed: Vec::new(), lost: false };
            }
            lost
        }
        StopReason::Halted if cs.selector == gen::CODE_SEG && eip == b.hlt_ip as u32 + 1 => {
            Mask { flags: undefined_after(b, s.icount - 1), pushed: Vec::new(), lost: false }
        }
        StopReason::Halted if cs.selector == 0 && eip == HANDLER as u32 + 1 && s.icount >= 2 => {
            let c = s.icount - 2;
            let byte = |a: usize| m.ram().read_u8(a as u64).expect("stack in RAM") as u32;
            let word = |a: usize, b2: usize| byte(a) | byte(b2) << 8;
            let ip = word(lin(sp), lin(sp + 1));
            let pcs = word(lin(sp + 2), lin(sp + 3));
            if pcs == gen::CODE_SEG as u32 && ip == next_ip(c) {
                let f = undefined_after(b, c);
                let pushed = vec![(lin(sp + 4), f as u8), (lin(sp + 5), (f >> 8) as u8)];
                return Mask { flags: f, pushed, lost: false };
            }
            lost
        }
        StopReason::TripleFault if cs.selector == gen::CODE_SEG => {
            // The state is the faulting instruction's (it may or may not have been counted).
            // The deliveries that failed may have pushed part of a FLAGS image just below SP
            // (the stack wraps): there, any byte may hold either half of it.
            (s.icount.saturating_sub(2)..=s.icount).rev().find(|&c| next_ip(c) == eip).map_or(lost, |c| {
                let f = undefined_after(b, c);
                let bits = (f as u8) | (f >> 8) as u8;
                let pushed = (0..10).map(|k| (lin(sp.wrapping_sub(8).wrapping_add(k)), bits)).collect();
                Mask { flags: f, pushed, lost: false }
            })
        }
        _ => lost,
    }
}

fn state_diff(a: &CpuState, b: &CpuState, mask: u32) -> Vec<String> {
    masked_state_diff(a, b, mask).iter().map(|d| d.to_string()).collect()
}

fn ram_diff(p: &Program, a: &Machine, b: &Machine, mask: &Mask) -> Vec<String> {
    // The FLAGS image a fault pushed: only the masked bits may differ.
    let ignore = |i: usize| mask.pushed.iter().filter(|&&(a, _)| a == i).fold(0u8, |acc, &(_, m)| acc | m);
    byte_diffs(&a.ram().to_vec(), &b.ram().to_vec(), &compare_ranges(p.class), ignore, 8)
        .into_iter()
        .map(|(i, x, y)| format!("ram[{i:#07x}]: {x:02x} -> {y:02x}"))
        .collect()
}

fn compare(
    p: &Program,
    b: &Built,
    what: &str,
    r: &Stop,
    rm: &Machine,
    o: &Stop,
    om: &Machine,
) -> Result<Mask, String> {
    let mask = mask_for(p, b, r, rm);
    let mut diffs = Vec::new();
    if r.reason != o.reason {
        diffs.push(format!("stop: {} -> {}", r.reason, o.reason));
    }
    if r.icount != o.icount {
        diffs.push(format!("instructions: {} -> {}", r.icount, o.icount));
    }
    diffs.extend(state_diff(&r.state, &o.state, mask.flags));
    diffs.extend(ram_diff(p, rm, om, &mask));
    let out = |m: &Machine| m.bus().mmio_console.as_ref().map(|c| c.out.captured().to_vec());
    if out(rm) != out(om) {
        diffs.push(format!("mmio console output: {:?} -> {:?}", out(rm), out(om)));
    }
    if rm.bus().stats != om.bus().stats {
        diffs.push(format!("bus stats: {:?} -> {:?}", rm.bus().stats, om.bus().stats));
    }
    if diffs.is_empty() {
        return Ok(mask);
    }
    let masked = if mask.lost {
        "stop not on the modelled path: nothing masked".to_string()
    } else {
        format!("masked flags {}", picoqemu_core::cpu::flag_string(mask.flags | 0x2))
    };
    Err(format!(
        "{what}: Off -> other differ at {} after {} instructions ({masked}):\n    {}",
        r.reason,
        r.icount,
        diffs.join("\n    ")
    ))
}

/// Budget slices for a budgeted run of `p` (deterministic in `seed`).
fn schedule(p: &Program, b: &Built, seed: u64) -> Vec<u64> {
    let mut rng = Rng::new(seed);
    let l = (b.items.len() - b.prefix_len) as u64;
    let mut v = Vec::new();
    let mut total = 0;
    while total < p.cap && v.len() < 10 {
        let n = match rng.below(8) {
            0 => 1,
            1 => rng.range(1, 3),
            2 => l.saturating_sub(1).max(1),
            3 => l + 1,
            4 => b.prefix_len as u64 + rng.range(1, l),
            5 => rng.range(1, 2 * l),
            _ => rng.range(1, p.cap),
        };
        let n = n.min(p.cap - total);
        v.push(n);
        total += n;
    }
    if total < p.cap {
        v.push(p.cap - total);
    }
    v
}

/// Result of checking one program.
#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    eager_insns: u64,
    jit: picoqemu_interp::JitStats,
    budget_stops: u64,
    hot: bool,
    masked: bool,
    fault: bool,
}

/// Runs every comparison for `p`. `budget_seed`: also run the budgeted schedule.
fn check(p: &Program, b: &Built, hot: bool, budget_seed: Option<u64>) -> Result<Outcome, String> {
    let mut out = Outcome::default();
    let mut off = rig(p, b, JitMode::Off);
    let r = run(&mut off, p.cap);
    out.fault = matches!(r.reason, StopReason::Halted) && r.state.segs[1].selector == 0;
    let mut eager = rig(p, b, JitMode::Eager);
    let e = run(&mut eager, p.cap);
    let mask = compare(p, b, "whole run (Eager)", &r, &off.m, &e, &eager.m)?;
    out.masked = mask.flags != 0;
    out.eager_insns = e.icount;
    out.jit = eager.be.jit_stats();
    if hot {
        out.hot = true;
        let mut h = rig(p, b, JitMode::Hot);
        let hs = run(&mut h, p.cap);
        compare(p, b, "whole run (Hot)", &r, &off.m, &hs, &h.m)?;
    }
    if let Some(seed) = budget_seed {
        let mut off = rig(p, b, JitMode::Off);
        let mut eager = rig(p, b, JitMode::Eager);
        let mut done = 0;
        for (i, n) in schedule(p, b, seed).into_iter().enumerate() {
            let r = run(&mut off, n);
            let e = run(&mut eager, n);
            out.budget_stops += 1;
            done += n;
            compare(
                p,
                b,
                &format!("budgeted run, slice {i} of {n} (total {done})"),
                &r,
                &off.m,
                &e,
                &eager.m,
            )?;
            if !matches!(r.reason, StopReason::BudgetExhausted | StopReason::StepDone) {
                break;
            }
        }
    }
    Ok(out)
}

/// Runs `p` on `shared`, an Eager backend that keeps its code cache and compiled code from the
/// programs before (so compiled blocks accumulate until the code buffer is flushed), against a
/// fresh `JitMode::Off` run. Returns the backend for the next program.
fn marathon_step(p: &Program, b: &Built, shared: InterpBackend) -> (InterpBackend, Result<(), String>) {
    let mut off = rig(p, b, JitMode::Off);
    let r = run(&mut off, p.cap);
    let mut s = rig_with(p, b, shared);
    let before = s.be.stats().instructions.unwrap_or(0);
    let mut o = run(&mut s, p.cap);
    o.icount -= before;
    let res = compare(p, b, "run on a long-lived Eager backend", &r, &off.m, &o, &s.m).map(|_| ());
    (s.be, res)
}

/// Whether `p` reads no possibly-undefined flag (the shrinker must keep that true).
fn flag_safe(p: &Program) -> bool {
    let mut q = p.clone();
    let before = (q.prefix.len(), q.body.len(), q.term);
    let mut rng = Rng::new(0);
    gen::make_flag_safe(&mut q, &mut rng);
    before == (q.prefix.len(), q.body.len(), q.term)
}

fn fails(p: &Program, hot: bool, budget_seed: Option<u64>) -> Option<String> {
    let mut q = p.clone();
    let b = build(&mut q)?;
    if q.body.len() != p.body.len() {
        return None;
    }
    check(&q, &b, hot, budget_seed).err()
}

/// Whether a smaller program still shows the mismatch (and reads no undefined flag).
struct StillFails {
    hot: bool,
    budget_seed: Option<u64>,
}

impl Oracle<Program> for StillFails {
    type Finding = String;
    type Error = std::convert::Infallible;
    fn check(&mut self, q: &Program) -> Result<Option<String>, Self::Error> {
        Ok(if flag_safe(q) { fails(q, self.hot, self.budget_seed) } else { None })
    }
}

/// Removes instructions (ddmin, `picoqemu_verify::shrink`) and iterations while the mismatch
/// persists.
fn shrink(p: &Program, hot: bool, budget_seed: Option<u64>) -> Program {
    let mut best = p.clone();
    let mut oracle = StillFails { hot, budget_seed };
    let mut why = String::new();
    let mut progress = true;
    while progress {
        progress = ddmin(&mut best, &mut why, &mut oracle).unwrap_or_else(|e| match e {});
        // Fewer iterations.
        if let Term::DecJnz(_) | Term::Loop | Term::Loope | Term::Loopne = best.term {
            let g = match best.term {
                Term::DecJnz(r) => r.full_register32() as usize - iced_x86::Register::EAX as usize,
                _ => 1,
            };
            let it = best.init.gpr[g] & 0xFFFF;
            for cand in [1, 2, 3, it / 2] {
                if cand == 0 || cand >= it {
                    continue;
                }
                let mut q = best.clone();
                q.init.gpr[g] = (q.init.gpr[g] & 0xFFFF_0000) | cand;
                let wide = match q.term {
                    Term::DecJnz(r) => r.size() == 4,
                    _ => q.ecx_loop,
                };
                if wide {
                    q.init.gpr[g] = cand;
                }
                if fails(&q, hot, budget_seed).is_some() {
                    best = q;
                    progress = true;
                    break;
                }
            }
        }
    }
    best
}

fn disasm(code: &[u8], ip: u16) -> String {
    let mut d = Decoder::with_ip(16, code, ip as u64, DecoderOptions::NONE);
    let mut f = NasmFormatter::new();
    let mut s = String::new();
    while d.can_decode() {
        let start = d.position();
        let ins = d.decode();
        let mut t = String::new();
        f.format(&ins, &mut t);
        let bytes: Vec<String> = code[start..d.position()].iter().map(|b| format!("{b:02x}")).collect();
        s.push_str(&format!("    {:04x}: {:<24} {t}\n", ins.ip(), bytes.join(" ")));
    }
    s
}

fn report(p: &Program, hot: bool, budget_seed: Option<u64>, why: &str) -> String {
    let mut q = p.clone();
    let Some(b) = build(&mut q) else { return format!("(could not rebuild)\n{why}") };
    let hex: Vec<String> = b.code.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "class {:?}, a20_wrap {}, mmio console {}, cap {} instructions, hot {hot}, budget schedule {:?}\n  \
         code at {:04x}:{:04x} (linear {:05x}), IVT -> 0000:{:04x} (hlt), data filled from seed {:#x}:\n    {}\n{}  initial state:\n{}\n  {why}",
        p.class,
        p.a20_wrap,
        p.mmio,
        p.cap,
        budget_seed.map(|s| schedule(&q, &b, s)),
        gen::CODE_SEG,
        b.ip,
        gen::CODE_BASE + b.ip as usize,
        HANDLER,
        p.fill_seed,
        hex.join(" "),
        disasm(&b.code, b.ip),
        q.init.to_string().lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n"),
    )
}

/// Runs a whole campaign and panics with reproducers when any program differs.
pub fn campaign(cfg: &CampaignConfig) {
    eprintln!(
        "jit_differential: seed {:#x}, {} programs (PICOQEMU_JIT_DIFF_SEED / PICOQEMU_JIT_DIFF_COUNT to change)",
        cfg.seed, cfg.count
    );
    let cat = Catalogue::new();
    let mut rng = Rng::new(cfg.seed);
    let mut t = Totals::default();
    let mut failures = Vec::new();
    let mut mode = JitMode::Eager;
    let mut shared = Some(InterpBackend::new().with_jit(JitMode::Eager));
    for n in 0..cfg.count {
        let mut p = generate(&mut rng, &cat);
        let Some(b) = build(&mut p) else {
            t.skipped += 1;
            continue;
        };
        let hot = n % 4 == 0;
        let budget_seed = (n % 3 == 0).then(|| rng.next_u64());
        t.programs += 1;
        t.by_class[p.class as usize] += 1;
        match check(&p, &b, hot, budget_seed) {
            Ok(o) => {
                if let Some(be) = shared.take() {
                    let (be, res) = marathon_step(&p, &b, be);
                    shared = Some(be);
                    if let Err(why) = res {
                        failures.push(format!(
                            "program #{n} (long-lived backend, no shrinking):\n  {}",
                            report(&p, false, None, &why)
                        ));
                    }
                }
                t.eager_insns += o.eager_insns;
                t.jit_insns += o.jit.instructions;
                t.jit_compiled += o.jit.compiled;
                t.jit_declined += o.jit.declined;
                t.jit_runs += o.jit.runs;
                t.budget_stops += o.budget_stops;
                t.hot_runs += u64::from(o.hot);
                t.masked_stops += u64::from(o.masked);
                t.faults += u64::from(o.fault);
            }
            Err(why) => {
                if failures.len() < 6 {
                    let small = shrink(&p, hot, budget_seed);
                    let why2 = fails(&small, hot, budget_seed).unwrap_or_else(|| why.clone());
                    failures.push(format!("program #{n}:\n  {}", report(&small, hot, budget_seed, &why2)));
                } else {
                    failures.push(format!("program #{n}: {why}"));
                }
            }
        }
        if n == 0 {
            mode = rig(&p, &b, JitMode::Eager).be.jit_mode();
        }
    }
    let long_lived = shared.map(|be| be.jit_stats()).unwrap_or_default();
    eprintln!(
        "jit_differential: long-lived Eager backend: {} programs, {} blocks compiled, {} code-buffer flushes",
        t.programs, long_lived.compiled, long_lived.flushes
    );
    eprintln!(
        "jit_differential: {} programs ({} not assembled) from {} encodings, classes {:?}; Eager runs: {} instructions, {} by compiled code ({:.1}%), {} blocks compiled, {} declined, {} entries; {} budgeted stops, {} Hot runs, {} runs ending with masked flags, {} ending in a fault handler",
        t.programs,
        t.skipped,
        cat.encodings(),
        t.by_class,
        t.eager_insns,
        t.jit_insns,
        100.0 * t.jit_insns as f64 / t.eager_insns.max(1) as f64,
        t.jit_compiled,
        t.jit_declined,
        t.jit_runs,
        t.budget_stops,
        t.hot_runs,
        t.masked_stops,
        t.faults
    );
    if !failures.is_empty() {
        panic!(
            "{} of {} programs differ between JitMode::Off and the compiled tier:\n\n{}",
            failures.len(),
            t.programs,
            failures.join("\n\n")
        );
    }
    if mode == JitMode::Off {
        eprintln!("SKIP (compiled-tier share): this host cannot run compiled code (JitMode::Off in effect)");
        return;
    }
    assert!(t.jit_compiled > 0, "no block was compiled");
    assert!(
        t.jit_insns * 2 > t.eager_insns,
        "compiled code retired only {} of {} instructions",
        t.jit_insns,
        t.eager_insns
    );
}

/// One run of a fat program on the long-lived backend, compared with a fresh Off run; `extra`
/// is code loaded too (at its IP) without being run, so that its cached pages stay valid.
fn fat_step(p: &Program, b: &Built, extra: &Built, shared: InterpBackend, what: &str) -> InterpBackend {
    let load = |m: &mut Machine| {
        let at = gen::CODE_BASE + extra.ip as usize;
        m.ram_mut().as_mut_slice()[at..at + extra.code.len()].copy_from_slice(&extra.code);
    };
    let mut off = rig(p, b, JitMode::Off);
    load(&mut off.m);
    let r = run(&mut off, p.cap);
    let mut s = rig_with(p, b, shared);
    load(&mut s.m);
    let before = s.be.stats().instructions.unwrap_or(0);
    let o = run(&mut s, p.cap);
    let mut diffs = Vec::new();
    if (&r.reason, r.icount) != (&o.reason, o.icount - before) {
        diffs.push(format!(
            "stop {} after {} -> {} after {}",
            r.reason,
            r.icount,
            o.reason,
            o.icount - before
        ));
    }
    diffs.extend(state_diff(&r.state, &o.state, 0));
    diffs.extend(ram_diff(p, &off.m, &s.m, &Mask::default()));
    assert!(
        diffs.is_empty() && r.reason == StopReason::Halted,
        "{what} differs on the long-lived backend (stats {:?}):\n    {}\n{}",
        s.be.jit_stats(),
        diffs.join("\n    "),
        disasm(&b.code, b.ip)
    );
    s.be
}

/// Fills the code buffer of one long-lived Eager backend until it is flushed and partly
/// refilled, with "fat" programs (150 distinct compiled loops each) at IP 0100h, then runs
/// again the fat program that ran first (at IP 8000h, its pages still cached): its blocks
/// were compiled before the flush and must be compiled afresh, not run from entries that now
/// hold other code. Every run is compared with a fresh `JitMode::Off` run (all flags are
/// defined at the end: nothing is masked). Returns the backend's statistics, or `None` when
/// the host cannot run compiled code.
pub fn flush_campaign(seed: u64) -> Option<picoqemu_interp::JitStats> {
    let cat = Catalogue::new();
    let mut rng = Rng::new(seed);
    let mut shared = InterpBackend::new().with_jit(JitMode::Eager);
    if shared.jit_mode() == JitMode::Off {
        return None;
    }
    let fat = |rng: &mut Rng, ip: u16| loop {
        if let Some((init, code)) = gen::generate_fat(rng, &cat, 150, ip) {
            let p = Program::plain(init, rng.next_u64(), 1_000_000);
            break (p, Built { code, items: Vec::new(), prefix_len: 0, hlt_ip: 0, ip });
        }
    };
    let (pa, ba) = fat(&mut rng, gen::CODE_IP);
    let none = Built { code: Vec::new(), items: Vec::new(), prefix_len: 0, hlt_ip: 0, ip: 0 };
    shared = fat_step(&pa, &ba, &none, shared, "first fat program");
    let mut after_flush = 0;
    for n in 0..200 {
        let (p, b) = fat(&mut rng, 0x0100);
        assert!(0x0100 + b.code.len() < gen::CODE_IP as usize, "filler overlaps the first program");
        shared = fat_step(&p, &b, &ba, shared, &format!("filler #{n}"));
        if shared.jit_stats().flushes > 0 {
            after_flush += 1;
            if after_flush > 2 {
                break;
            }
        }
    }
    shared = fat_step(&pa, &ba, &none, shared, "first fat program after the flush");
    Some(shared.jit_stats())
}
