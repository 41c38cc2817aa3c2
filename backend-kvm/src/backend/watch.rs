//! Data watchpoints on KVM, by single step.
//!
//! KVM here (kvm_pvm, real mode run by KVM's instruction emulator) raises no data breakpoint
//! through DR7, so a run with watchpoints single-steps (about 150,000 instructions per second
//! here, against ~1.6 million free-running) and checks every instruction twice:
//! * before it runs, its memory operands are computed with iced-x86 from the registers
//!   (explicit operands, the stack of PUSH/POP/CALL/RET, both strings of a string
//!   instruction; a REP covers CX elements in the direction DF says) and compared with the
//!   watched bytes and the kind of access (read watchpoints are honest on KVM too);
//! * after it ran, the watched bytes are compared with their copy: a write no operand
//!   explains (an interrupt pushing its frame, a REP chunk) still reports a write watchpoint.
//!
//! The stop comes after the instruction, with CS:IP the next one (a REP chunk leaves IP on
//! the REP), like an x86 data breakpoint trap.
use iced_x86::{Decoder, DecoderOptions, Instruction, InstructionInfoFactory, OpAccess, OpKind, Register};
use picoqemu_core::{CpuState, SegReg, StopReason, WatchKind, Watchpoint};

/// The watchpoints of a [`super::KvmBackend`] and what checking them needs, reused per step.
pub struct Watches {
    list: Vec<Watchpoint>,
    /// The watched bytes before the step, in list order.
    before: Vec<u8>,
    info: InstructionInfoFactory,
    insn: Instruction,
}

impl Default for Watches {
    fn default() -> Self {
        Watches {
            list: Vec::new(),
            before: Vec::new(),
            info: InstructionInfoFactory::new(),
            insn: Instruction::default(),
        }
    }
}

impl std::fmt::Debug for Watches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watches").field("list", &self.list).finish_non_exhaustive()
    }
}

/// Reads byte `a` of `ram` (0 beyond it).
fn byte(ram: &[u8], a: u64) -> u8 {
    usize::try_from(a).ok().and_then(|a| ram.get(a)).copied().unwrap_or(0)
}

impl Watches {
    /// Replaces the set.
    pub fn set(&mut self, list: &[Watchpoint]) {
        self.list = list.to_vec();
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Before a step at `state`: copies the watched bytes and returns the watchpoint the
    /// instruction's operands trigger, if any.
    pub fn before_step(&mut self, ram: &[u8], state: &CpuState) -> Option<(u32, WatchKind)> {
        self.before.clear();
        for w in &self.list {
            for i in 0..w.len.max(1) {
                self.before.push(byte(ram, u64::from(w.linear) + u64::from(i)));
            }
        }
        let cs_base = state.segs[SegReg::Cs as usize].base;
        let (bytes, n) = crate::exits::fetch(ram, cs_base, state.eip as u16);
        let mut decoder = Decoder::with_ip(16, &bytes[..n], u64::from(state.eip), DecoderOptions::NONE);
        decoder.decode_out(&mut self.insn);
        if self.insn.is_invalid() {
            return None;
        }
        let elements = rep_elements(&self.insn, state);
        let info = self.info.info(&self.insn);
        for m in info.used_memory() {
            let Some(addr) = m.virtual_address(0, |r, _, _| register_value(state, r)) else { continue };
            let size = m.memory_size().size().max(1) as u64;
            let (lo, len) = span(addr, size, elements, state.eflags & 0x400 != 0);
            let (read, write) = access_kinds(m.access());
            for w in &self.list {
                let hit = (read && w.triggers_on(false)) || (write && w.triggers_on(true));
                if hit && w.overlaps(lo as u32, len.min(u64::from(u32::MAX)) as u32) {
                    return Some((w.linear, w.kind));
                }
            }
        }
        None
    }

    /// After the step: the first write watchpoint whose bytes changed.
    pub fn after_step(&self, ram: &[u8]) -> Option<(u32, WatchKind)> {
        let mut k = 0;
        for w in &self.list {
            let n = w.len.max(1) as usize;
            let changed = (0..n).any(|i| byte(ram, u64::from(w.linear) + i as u64) != self.before[k + i]);
            if changed && w.triggers_on(true) {
                return Some((w.linear, w.kind));
            }
            k += n;
        }
        None
    }
}

/// How many elements a string instruction touches in this step: CX (ECX with a 32-bit
/// address size) under a REP prefix, otherwise 1.
fn rep_elements(insn: &Instruction, state: &CpuState) -> u64 {
    if !(insn.has_rep_prefix() || insn.has_repne_prefix()) || !insn.is_string_instruction() {
        return 1;
    }
    let ecx = state.gpr[1];
    let wide = (0..insn.op_count()).any(|i| {
        matches!(insn.op_kind(i), OpKind::MemorySegESI | OpKind::MemorySegEDI | OpKind::MemoryESEDI)
    });
    let count = if wide { ecx } else { ecx & 0xFFFF };
    u64::from(count).max(1)
}

/// The linear range `[lo, lo+len)` of `elements` accesses of `size` bytes from `addr`,
/// going down when `down` (DF set).
fn span(addr: u64, size: u64, elements: u64, down: bool) -> (u64, u64) {
    let len = size * elements;
    if down && elements > 1 {
        let lo = (addr + size).saturating_sub(len);
        (lo, len)
    } else {
        (addr, len)
    }
}

/// (reads, writes) for an operand access.
fn access_kinds(a: OpAccess) -> (bool, bool) {
    match a {
        OpAccess::Read | OpAccess::CondRead => (true, false),
        OpAccess::Write | OpAccess::CondWrite => (false, true),
        OpAccess::ReadWrite | OpAccess::ReadCondWrite => (true, true),
        _ => (false, false),
    }
}

/// A register's value for address computation (segment registers give their base).
fn register_value(s: &CpuState, r: Register) -> Option<u64> {
    let seg = |g: SegReg| Some(u64::from(s.segs[g as usize].base));
    match r {
        Register::ES => seg(SegReg::Es),
        Register::CS => seg(SegReg::Cs),
        Register::SS => seg(SegReg::Ss),
        Register::DS => seg(SegReg::Ds),
        Register::FS => seg(SegReg::Fs),
        Register::GS => seg(SegReg::Gs),
        Register::None => Some(0),
        _ if r.is_gpr32() => Some(u64::from(s.gpr[r.number()])),
        _ if r.is_gpr16() => Some(u64::from(s.gpr[r.number()] & 0xFFFF)),
        _ if r.is_gpr8() => {
            let n = r.number();
            Some(u64::from(if n < 4 { s.gpr[n] & 0xFF } else { (s.gpr[n - 4] >> 8) & 0xFF }))
        }
        _ => None,
    }
}

/// The stop for a watchpoint hit, at the CPU's CS:IP after the step.
pub fn stop(state: &CpuState, (addr, kind): (u32, WatchKind)) -> StopReason {
    StopReason::Watchpoint { cs: state.cs(), ip: state.eip, addr, kind }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(code: &[u8], setup: impl FnOnce(&mut CpuState)) -> (Vec<u8>, CpuState) {
        let mut ram = vec![0u8; 0x10000];
        ram[0x7C00..0x7C00 + code.len()].copy_from_slice(code);
        let mut s = CpuState { eip: 0x7C00, ..CpuState::default() };
        setup(&mut s);
        (ram, s)
    }

    fn watch(linear: u32, kind: WatchKind) -> Watches {
        let mut w = Watches::default();
        w.set(&[Watchpoint { linear, len: 1, kind }]);
        w
    }

    #[test]
    fn operands_give_reads_and_writes_with_segments() {
        // mov [bx+2], al with DS=0x50, BX=0x10: writes 0x512.
        let (ram, s) = at(&[0x88, 0x47, 0x02], |s| {
            s.set_seg(SegReg::Ds, 0x50);
            s.gpr[3] = 0x10;
        });
        assert_eq!(watch(0x512, WatchKind::Write).before_step(&ram, &s), Some((0x512, WatchKind::Write)));
        assert_eq!(watch(0x512, WatchKind::Read).before_step(&ram, &s), None);
        assert_eq!(watch(0x513, WatchKind::Access).before_step(&ram, &s), None);
        // push ax with SS:SP = 0:0x100 writes 0xFE-0xFF.
        let (ram, s) = at(&[0x50], |s| s.gpr[4] = 0x100);
        assert!(watch(0xFF, WatchKind::Write).before_step(&ram, &s).is_some());
        // rep lodsb with CX=0x20, DS:SI = 0:0x300 reads up to 0x31F.
        let (ram, s) = at(&[0xF3, 0xAC], |s| {
            s.gpr[1] = 0x20;
            s.gpr[6] = 0x300;
        });
        assert!(watch(0x31F, WatchKind::Read).before_step(&ram, &s).is_some());
        assert!(watch(0x320, WatchKind::Read).before_step(&ram, &s).is_none());
    }

    #[test]
    fn changed_bytes_report_write_watchpoints() {
        let mut w = watch(0x600, WatchKind::Write);
        let (mut ram, s) = at(&[0x90], |_| {});
        assert_eq!(w.before_step(&ram, &s), None);
        assert_eq!(w.after_step(&ram), None);
        ram[0x600] = 1;
        assert_eq!(w.after_step(&ram), Some((0x600, WatchKind::Write)));
    }
}
