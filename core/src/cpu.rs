//! Architectural CPU state shared by both backends: general registers, segments with their
//! hidden base/limit, EIP, EFLAGS, CR0 and the IDTR, with a readable dump and a field diff.
use std::fmt;

/// EFLAGS bits.
pub mod flags {
    /// Carry.
    pub const CF: u32 = 1 << 0;
    /// Bit 1 always reads as 1.
    pub const FIXED: u32 = 1 << 1;
    /// Parity (of the low byte).
    pub const PF: u32 = 1 << 2;
    /// Auxiliary carry (out of bit 3).
    pub const AF: u32 = 1 << 4;
    /// Zero.
    pub const ZF: u32 = 1 << 6;
    /// Sign.
    pub const SF: u32 = 1 << 7;
    /// Trap: single-step the next instruction.
    pub const TF: u32 = 1 << 8;
    /// Interrupt enable.
    pub const IF: u32 = 1 << 9;
    /// Direction: string instructions count down.
    pub const DF: u32 = 1 << 10;
    /// Overflow.
    pub const OF: u32 = 1 << 11;
    /// I/O privilege level (two bits).
    pub const IOPL: u32 = 3 << 12;
    /// Nested task.
    pub const NT: u32 = 1 << 14;
    /// Resume: suppress instruction breakpoints for one instruction.
    pub const RF: u32 = 1 << 16;
    /// Virtual-8086 mode.
    pub const VM: u32 = 1 << 17;
    /// Alignment check.
    pub const AC: u32 = 1 << 18;
    /// CPUID is available (toggleable on a 486 and later).
    pub const ID: u32 = 1 << 21;
    /// The six arithmetic status flags.
    pub const STATUS: u32 = CF | PF | AF | ZF | SF | OF;
}

/// General-purpose registers in x86 encoding order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gpr {
    /// Accumulator.
    Eax = 0,
    /// Counter.
    Ecx = 1,
    /// Data.
    Edx = 2,
    /// Base.
    Ebx = 3,
    /// Stack pointer.
    Esp = 4,
    /// Base pointer.
    Ebp = 5,
    /// Source index.
    Esi = 6,
    /// Destination index.
    Edi = 7,
}

impl Gpr {
    /// All eight, in encoding order.
    pub const ALL: [Gpr; 8] =
        [Gpr::Eax, Gpr::Ecx, Gpr::Edx, Gpr::Ebx, Gpr::Esp, Gpr::Ebp, Gpr::Esi, Gpr::Edi];
    /// The lower-case 32-bit name (`"eax"`).
    pub fn name(self) -> &'static str {
        ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"][self as usize]
    }
}

/// Segment registers in x86 encoding order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SegReg {
    /// Extra segment.
    Es = 0,
    /// Code segment.
    Cs = 1,
    /// Stack segment.
    Ss = 2,
    /// Data segment.
    Ds = 3,
    /// FS (386+).
    Fs = 4,
    /// GS (386+).
    Gs = 5,
}

impl SegReg {
    /// All six, in encoding order.
    pub const ALL: [SegReg; 6] = [SegReg::Es, SegReg::Cs, SegReg::Ss, SegReg::Ds, SegReg::Fs, SegReg::Gs];
    /// The lower-case name (`"es"`).
    pub fn name(self) -> &'static str {
        ["es", "cs", "ss", "ds", "fs", "gs"][self as usize]
    }
}

/// A segment register: the visible selector and the hidden descriptor cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Segment {
    /// The visible selector (real mode: base / 16).
    pub selector: u16,
    /// The hidden base address.
    pub base: u32,
    /// The hidden limit (0xFFFF in real mode unless a protected-mode descriptor left it larger).
    pub limit: u32,
}

impl Segment {
    /// The real-mode segment for `selector`: base = selector * 16, limit 64 KiB.
    pub const fn real(selector: u16) -> Segment {
        Segment { selector, base: (selector as u32) << 4, limit: 0xFFFF }
    }
}

impl Default for Segment {
    fn default() -> Self {
        Segment::real(0)
    }
}

/// The complete architectural state a real-mode program can observe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CpuState {
    /// EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI (see [`Gpr`]).
    pub gpr: [u32; 8],
    /// Instruction pointer (real mode: only the low 16 bits address code).
    pub eip: u32,
    /// Flags (see [`flags`]).
    pub eflags: u32,
    /// ES, CS, SS, DS, FS, GS (see [`SegReg`]).
    pub segs: [Segment; 6],
    /// Control register 0 (PE = 0: real mode).
    pub cr0: u32,
    /// IDTR base: the interrupt vector table (0 after reset).
    pub idt_base: u32,
    /// IDTR limit (0x3FF after reset).
    pub idt_limit: u16,
}

/// CR0 after reset with the cache disabled bits as KVM reports them (PE = 0: real mode).
pub const CR0_RESET: u32 = 0x6000_0010;

impl Default for CpuState {
    /// All registers zero, EFLAGS = 2, every segment 0000 with a 64 KiB limit, IVT at 0.
    fn default() -> Self {
        CpuState {
            gpr: [0; 8],
            eip: 0,
            eflags: flags::FIXED,
            segs: [Segment::real(0); 6],
            cr0: CR0_RESET,
            idt_base: 0,
            idt_limit: 0x3FF,
        }
    }
}

impl CpuState {
    /// General register `r` (32 bits).
    pub fn reg(&self, r: Gpr) -> u32 {
        self.gpr[r as usize]
    }
    /// Sets general register `r` (32 bits).
    pub fn set_reg(&mut self, r: Gpr, v: u32) {
        self.gpr[r as usize] = v;
    }
    /// Segment register `s` with its hidden part.
    pub fn seg(&self, s: SegReg) -> Segment {
        self.segs[s as usize]
    }
    /// Loads a segment register the real-mode way (base = selector * 16).
    pub fn set_seg(&mut self, s: SegReg, selector: u16) {
        self.segs[s as usize] = Segment::real(selector);
    }
    /// The CS selector.
    pub fn cs(&self) -> u16 {
        self.segs[SegReg::Cs as usize].selector
    }
    /// The low 16 bits of EIP.
    pub fn ip(&self) -> u16 {
        self.eip as u16
    }
    /// Linear address of CS:EIP.
    pub fn pc_linear(&self) -> u32 {
        self.segs[SegReg::Cs as usize].base.wrapping_add(self.eip)
    }

    /// Lists every field that differs from `other`, as `name: self -> other`.
    /// An empty list means the states are equal.
    pub fn diff(&self, other: &CpuState) -> Vec<FieldDiff> {
        let mut out = Vec::new();
        for r in Gpr::ALL {
            push_diff(&mut out, r.name(), self.reg(r) as u64, other.reg(r) as u64, 8);
        }
        push_diff(&mut out, "eip", self.eip as u64, other.eip as u64, 8);
        push_diff(&mut out, "eflags", self.eflags as u64, other.eflags as u64, 8);
        for s in SegReg::ALL {
            let (a, b) = (self.seg(s), other.seg(s));
            let n = s.name();
            if a.selector != b.selector {
                out.push(FieldDiff::new(n.to_string(), a.selector as u64, b.selector as u64, 4));
            }
            if a.base != b.base {
                out.push(FieldDiff::new(format!("{n}.base"), a.base as u64, b.base as u64, 8));
            }
            if a.limit != b.limit {
                out.push(FieldDiff::new(format!("{n}.limit"), a.limit as u64, b.limit as u64, 8));
            }
        }
        push_diff(&mut out, "cr0", self.cr0 as u64, other.cr0 as u64, 8);
        push_diff(&mut out, "idt.base", self.idt_base as u64, other.idt_base as u64, 8);
        push_diff(&mut out, "idt.limit", self.idt_limit as u64, other.idt_limit as u64, 4);
        out
    }
}

fn push_diff(out: &mut Vec<FieldDiff>, name: &'static str, a: u64, b: u64, width: usize) {
    if a != b {
        out.push(FieldDiff::new(name.to_string(), a, b, width));
    }
}

/// One field that differs between two [`CpuState`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDiff {
    /// The field's name (`"eax"`, `"cs.base"`, `"eflags"`).
    pub field: String,
    /// Its value in the left state.
    pub left: u64,
    /// Its value in the right state.
    pub right: u64,
    width: usize,
}

impl FieldDiff {
    fn new(field: String, left: u64, right: u64, width: usize) -> Self {
        FieldDiff { field, left, right, width }
    }
}

impl fmt::Display for FieldDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.width;
        write!(f, "{}: {:0w$x} -> {:0w$x}", self.field, self.left, self.right)?;
        if self.field == "eflags" {
            write!(f, " ({} -> {})", flag_string(self.left as u32), flag_string(self.right as u32))?;
        }
        Ok(())
    }
}

/// Flags as letters, upper case when set: `o d i t s z a p c`.
pub fn flag_string(eflags: u32) -> String {
    const NAMES: [(u32, char); 9] = [
        (flags::OF, 'o'),
        (flags::DF, 'd'),
        (flags::IF, 'i'),
        (flags::TF, 't'),
        (flags::SF, 's'),
        (flags::ZF, 'z'),
        (flags::AF, 'a'),
        (flags::PF, 'p'),
        (flags::CF, 'c'),
    ];
    NAMES.iter().map(|&(bit, c)| if eflags & bit != 0 { c.to_ascii_uppercase() } else { c }).collect()
}

impl fmt::Display for CpuState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = |r: Gpr| self.reg(r);
        writeln!(
            f,
            "EAX={:08x} EBX={:08x} ECX={:08x} EDX={:08x}",
            g(Gpr::Eax),
            g(Gpr::Ebx),
            g(Gpr::Ecx),
            g(Gpr::Edx)
        )?;
        writeln!(
            f,
            "ESI={:08x} EDI={:08x} EBP={:08x} ESP={:08x}",
            g(Gpr::Esi),
            g(Gpr::Edi),
            g(Gpr::Ebp),
            g(Gpr::Esp)
        )?;
        writeln!(
            f,
            "EIP={:08x} EFL={:08x} [{}] CS:IP={:04x}:{:04x} (linear {:05x})",
            self.eip,
            self.eflags,
            flag_string(self.eflags),
            self.cs(),
            self.eip & 0xFFFF,
            self.pc_linear()
        )?;
        for s in SegReg::ALL {
            let seg = self.seg(s);
            writeln!(
                f,
                "{}={:04x} base={:08x} limit={:08x}",
                s.name().to_ascii_uppercase(),
                seg.selector,
                seg.base,
                seg.limit
            )?;
        }
        write!(f, "CR0={:08x} IDT={:08x}+{:04x}", self.cr0, self.idt_base, self.idt_limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_real_mode_reset_like() {
        let s = CpuState::default();
        assert_eq!(s.eflags, 2);
        assert_eq!(s.seg(SegReg::Cs), Segment { selector: 0, base: 0, limit: 0xFFFF });
        assert!(s.diff(&s).is_empty());
    }

    #[test]
    fn diff_lists_changed_fields() {
        let a = CpuState::default();
        let mut b = a;
        b.set_reg(Gpr::Ebx, 0x1234);
        b.set_seg(SegReg::Ds, 0xB800);
        b.eflags |= flags::CF | flags::ZF;
        let d = a.diff(&b);
        let names: Vec<_> = d.iter().map(|x| x.field.as_str()).collect();
        assert_eq!(names, ["ebx", "eflags", "ds", "ds.base"]);
        assert_eq!(d[0].to_string(), "ebx: 00000000 -> 00001234");
        assert_eq!(d[1].to_string(), "eflags: 00000002 -> 00000043 (oditszapc -> oditsZapC)");
        assert_eq!(d[3].right, 0xB8000);
    }

    #[test]
    fn display_shows_registers() {
        let mut s = CpuState::default();
        s.set_reg(Gpr::Eax, 0xDEADBEEF);
        s.set_seg(SegReg::Cs, 0x07C0);
        s.eip = 0x10;
        let text = s.to_string();
        assert!(text.contains("EAX=deadbeef"));
        assert!(text.contains("CS:IP=07c0:0010 (linear 07c10)"));
        assert_eq!(flag_string(flags::CF | flags::IF), "odItszapC");
    }
}
