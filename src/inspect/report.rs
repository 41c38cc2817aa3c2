//! The report of a run that did not end by `hlt` or the debug-exit port, on stderr: one
//! `picoqemu:` line naming the stop and what to do, the instruction at CS:IP and the next
//! ones (decoded forward from guest RAM), the register dump (unless `--regs` printed it), and
//! for an abnormal stop (fault, unsupported instruction, emulation failure, budget, timeout,
//! Ctrl-C) the last instructions run when they are known: the interpreter's
//! [`picoqemu_core::Backend::history`], or the last lines of `--trace`.
use std::fmt::Write as _;
use std::io::Write as _;

use picoqemu_core::{BackendError, CpuState, History, HistoryEntry, Machine, SegReg, StopReason};

use super::disasm::{code_at, hex, Disassembler, Syntax};
use crate::options::LimitOpts;

/// Instructions shown after the one at CS:IP.
const NEXT: usize = 2;
/// Instructions of history shown at most.
const LAST: usize = 16;

/// Everything a stop report needs besides the stop.
pub struct StopContext<'a> {
    /// The backend's name.
    pub backend: &'a str,
    /// The run's limits (to name them in the message).
    pub limits: &'a LimitOpts,
    /// `--regs` already printed the registers on stdout.
    pub regs_printed: bool,
    /// The registers at the stop.
    pub state: &'a Result<CpuState, BackendError>,
    pub machine: &'a Machine,
    /// The backend's history.
    pub history: History,
    /// The last `--trace` lines, when tracing.
    pub traced: Vec<String>,
    /// Linear addresses of `--break` (to tell them from the magic breakpoint).
    pub breaks: &'a [u32],
}

/// True for the stops whose report includes the last instructions.
pub fn is_abnormal(stop: &StopReason) -> bool {
    matches!(
        stop,
        StopReason::TripleFault
            | StopReason::Unsupported { .. }
            | StopReason::EmulationFailure { .. }
            | StopReason::Timeout
            | StopReason::BudgetExhausted
            | StopReason::Interrupted
    )
}

/// Writes the report of `stop` to stderr (nothing for a halt, a debug exit or a step).
pub fn report_stop(stop: &StopReason, cx: &StopContext) {
    if matches!(stop, StopReason::Halted | StopReason::DebugExit(_) | StopReason::StepDone) {
        return;
    }
    report(&stop_report(stop, cx));
}

/// The text of [`report_stop`].
pub fn stop_report(stop: &StopReason, cx: &StopContext) -> String {
    let mut msg = format!("picoqemu: {} backend: {}\n", cx.backend, describe_stop(stop, cx));
    let mut dis = Disassembler::new(Syntax::Intel);
    if !matches!(stop, StopReason::HostError(_)) {
        msg.push_str(&context(stop, cx, &mut dis));
    }
    if !cx.regs_printed {
        match cx.state {
            Ok(s) => push_line(&mut msg, &s.to_string()),
            Err(e) => {
                let _ = writeln!(msg, "(registers unavailable: {e})");
            }
        }
    }
    if is_abnormal(stop) {
        msg.push_str(&last_instructions(cx, &mut dis));
    }
    msg
}

/// The `at` line (the bytes the stop reports, or guest RAM at CS:IP) and the `next` lines.
fn context(stop: &StopReason, cx: &StopContext, dis: &mut Disassembler) -> String {
    let mut out = String::new();
    let Ok(state) = cx.state else { return out };
    let base = state.seg(SegReg::Cs).base;
    let (cs, mut ip) = (state.cs(), state.eip);
    let (mut buf, mut n) = code_at(cx.machine, base, ip);
    if let StopReason::Unsupported { cs: c, ip: i, bytes }
    | StopReason::EmulationFailure { cs: c, ip: i, bytes } = stop
    {
        if (*c, *i) == (cs, ip) {
            n = bytes.as_slice().len();
            buf[..n].copy_from_slice(bytes.as_slice());
        }
    }
    for k in 0..=NEXT {
        let (len, text) = dis.decode(ip, &buf[..n]);
        let label = if k == 0 { "at  " } else { "next" };
        let shown = hex(&buf[..len.max(1).min(n)]);
        let _ = writeln!(out, "  {label} {cs:04x}:{ip:04x}  {shown:<20} {text}");
        if len == 0 {
            break;
        }
        ip = if ip <= 0xFFFF { (ip + len as u32) & 0xFFFF } else { ip.wrapping_add(len as u32) };
        (buf, n) = code_at(cx.machine, base, ip);
    }
    out
}

/// The last instructions run, from the backend's history or the trace, or a line saying
/// they are not known.
fn last_instructions(cx: &StopContext, dis: &mut Disassembler) -> String {
    if !cx.traced.is_empty() {
        let mut out = String::from("last instructions traced (oldest first):\n");
        for l in &cx.traced {
            let _ = writeln!(out, "  {l}");
        }
        return out;
    }
    if cx.history.is_empty() {
        return format!("last instructions: not known ({} does not record them; --trace does)\n", cx.backend);
    }
    let lines = history_lines(&cx.history, cx.machine, dis);
    let mut out = String::from("last instructions (oldest first; decoded from guest memory now):\n");
    for l in &lines[lines.len().saturating_sub(LAST)..] {
        let _ = writeln!(out, "  {l}");
    }
    out
}

/// Decodes each history entry from guest RAM into lines `cs:ip  bytes  text`.
pub fn history_lines(history: &History, machine: &Machine, dis: &mut Disassembler) -> Vec<String> {
    let mut lines = Vec::new();
    for e in &history.entries {
        if e.compiled > 0 {
            lines.push(format!("{:04x}:{:04x}  (compiled loop: {} instructions)", e.cs, e.ip, e.compiled));
            continue;
        }
        entry_lines(e, machine, dis, &mut lines);
    }
    lines
}

/// The instructions of one straight-line stretch.
fn entry_lines(e: &HistoryEntry, machine: &Machine, dis: &mut Disassembler, lines: &mut Vec<String>) {
    let base = u32::from(e.cs) << 4;
    let mut off = 0u32;
    while off < e.bytes.max(1) {
        let ip = if e.ip <= 0xFFFF { (e.ip + off) & 0xFFFF } else { e.ip.wrapping_add(off) };
        let (buf, n) = code_at(machine, base, ip);
        let (len, text) = dis.decode(ip, &buf[..n]);
        lines.push(format!("{:04x}:{ip:04x}  {:<20} {text}", e.cs, hex(&buf[..len.max(1).min(n)])));
        if len == 0 {
            break;
        }
        off += len as u32;
    }
}

/// One line naming the stop and what to do about it.
pub fn describe_stop(stop: &StopReason, cx: &StopContext) -> String {
    let limits = cx.limits;
    match stop {
        StopReason::BudgetExhausted => format!(
            "instruction budget exhausted after {} instructions; raise --max-instructions if the guest needs more",
            limits.max_instructions.unwrap_or(0)
        ),
        StopReason::Timeout => format!(
            "timeout: the guest was still running after {}; raise --timeout if it needs longer",
            limits.timeout.map(|d| format!("{d:?}")).unwrap_or_else(|| "the deadline".into())
        ),
        StopReason::TripleFault => {
            "triple fault (CPU shutdown): the guest raised an exception it could not handle".into()
        }
        StopReason::Unsupported { .. } => {
            format!("{stop}; the interpreter does not implement it, try --backend kvm")
        }
        StopReason::EmulationFailure { .. } => {
            format!("{stop}; KVM's instruction emulator on this host cannot run it, try --backend interp")
        }
        StopReason::Interrupted => {
            "stopped by Ctrl-C (SIGINT); the guest's output so far was written, its registers follow".into()
        }
        StopReason::Breakpoint { cs, ip } => {
            let linear = (u32::from(*cs) << 4).wrapping_add(*ip);
            if cx.breaks.contains(&linear) {
                format!("breakpoint at {cs:04x}:{ip:04x} (--break)")
            } else {
                format!("magic breakpoint: xchg bx, bx ran; stopped at {cs:04x}:{ip:04x} (--magic-break)")
            }
        }
        StopReason::HostError(_)
        | StopReason::Halted
        | StopReason::DebugExit(_)
        | StopReason::StepDone
        | StopReason::Watchpoint { .. } => stop.to_string(),
    }
}

/// Writes `text` to stderr. Unlike `eprint!`, a closed or broken stderr is not a panic.
pub fn report(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes()).and_then(|_| stderr.flush());
}

/// Appends `text` and a newline unless it already ends with one.
pub fn push_line(out: &mut String, text: &str) {
    out.push_str(text);
    if !text.ends_with('\n') {
        out.push('\n');
    }
}

/// Disassembles the first instruction of `bytes` at `ip` (16-bit code, Intel syntax).
pub fn disassemble(ip: u32, bytes: &[u8]) -> String {
    Disassembler::new(Syntax::Intel).decode(ip, bytes).1
}

#[cfg(test)]
mod tests {
    use super::*;
    use picoqemu_core::{InsnBytes, IoBus, MachineConfig};

    fn machine_with(code: &[u8], at: u64) -> Machine {
        let mut m = Machine::new(MachineConfig::default(), IoBus::capturing()).unwrap();
        m.ram_mut().write(at, code).unwrap();
        m
    }

    fn context_of<'a>(machine: &'a Machine, state: &'a Result<CpuState, BackendError>) -> StopContext<'a> {
        static LIMITS: LimitOpts = LimitOpts { timeout: None, max_instructions: Some(7) };
        StopContext {
            backend: "interp",
            limits: &LIMITS,
            regs_printed: false,
            state,
            machine,
            history: History::default(),
            traced: Vec::new(),
            breaks: &[],
        }
    }

    #[test]
    fn disassembly() {
        assert_eq!(disassemble(0x7C00, &[0x0F, 0x01, 0xC1]), "vmcall");
        assert_eq!(disassemble(0, &[0x27]), "daa");
        assert_eq!(disassemble(0, &[]), "(no instruction bytes: CS:IP is outside guest RAM)");
        assert_eq!(disassemble(0, &[0x0F, 0xFF]), "(not a valid instruction)");
    }

    #[test]
    fn an_abnormal_stop_shows_at_next_registers_and_history() {
        // mov ax, 1; inc ax; daa; hlt at 0000:7c00
        let m = machine_with(&[0xB8, 0x01, 0x00, 0x40, 0x27, 0xF4], 0x7C00);
        let state = Ok(CpuState { eip: 0x7C04, ..CpuState::default() });
        let mut cx = context_of(&m, &state);
        cx.history.entries.push(HistoryEntry { cs: 0, ip: 0x7C00, bytes: 5, compiled: 0 });
        let stop = StopReason::Unsupported { cs: 0, ip: 0x7C04, bytes: InsnBytes::new(&[0x27]) };
        let text = stop_report(&stop, &cx);
        assert!(text.starts_with("picoqemu: interp backend: unsupported instruction at 0000:7c04"), "{text}");
        assert!(text.contains("\n  at   0000:7c04  27                   daa\n"), "{text}");
        assert!(text.contains("\n  next 0000:7c05  f4                   hlt\n"), "{text}");
        assert!(text.contains("EAX=00000000"), "{text}");
        let last = text.split("last instructions (oldest first").nth(1).expect("history shown");
        let lines: Vec<&str> = last.lines().skip(1).collect();
        assert_eq!(lines[0], "  0000:7c00  b8 01 00             mov ax, 1");
        assert_eq!(lines[1], "  0000:7c03  40                   inc ax");
        assert_eq!(lines[2], "  0000:7c04  27                   daa");
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn unknown_history_is_said_and_breakpoints_have_no_history() {
        let m = machine_with(&[0x90], 0x7C00);
        let state = Ok(CpuState { eip: 0x7C00, ..CpuState::default() });
        let cx = context_of(&m, &state);
        let text = stop_report(&StopReason::BudgetExhausted, &cx);
        assert!(text.contains("after 7 instructions"), "{text}");
        assert!(text.contains("last instructions: not known (interp does not record them"), "{text}");
        let text = stop_report(&StopReason::Breakpoint { cs: 0, ip: 0x7C00 }, &cx);
        assert!(text.contains("magic breakpoint"), "{text}");
        assert!(text.contains("  at   0000:7c00  90"), "{text}");
        assert!(!text.contains("last instructions"), "{text}");
    }

    #[test]
    fn compiled_entries_are_one_line() {
        let m = machine_with(&[0x90], 0x7C00);
        let h = History { entries: vec![HistoryEntry { cs: 0, ip: 0x7C00, bytes: 1, compiled: 99 }] };
        let lines = history_lines(&h, &m, &mut Disassembler::new(Syntax::Intel));
        assert_eq!(lines, ["0000:7c00  (compiled loop: 99 instructions)"]);
    }
}
