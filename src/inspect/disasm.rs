//! Disassembly for traces and stop reports: one 16-bit instruction from guest bytes, in
//! Intel or AT&T syntax (iced-x86's `IntelFormatter` / `GasFormatter`), and reading the code
//! bytes at a CS:IP out of guest RAM.
use clap::ValueEnum;
use iced_x86::{Decoder, DecoderOptions, Formatter, GasFormatter, Instruction, IntelFormatter};
use picoqemu_core::Machine;

/// The longest x86 instruction.
pub const MAX_INSN: usize = 15;

/// Assembly syntax of `--trace` lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Syntax {
    /// Intel: `mov ax, 1`.
    #[default]
    Intel,
    /// AT&T (GNU as): `mov $0x1,%ax`.
    Att,
}

/// A formatter for one syntax, reused for every line.
pub struct Disassembler {
    formatter: Box<dyn Formatter>,
}

impl Disassembler {
    pub fn new(syntax: Syntax) -> Self {
        let formatter: Box<dyn Formatter> = match syntax {
            Syntax::Intel => {
                let mut f = IntelFormatter::new();
                f.options_mut().set_space_after_operand_separator(true);
                Box::new(f)
            }
            Syntax::Att => Box::new(GasFormatter::new()),
        };
        Disassembler { formatter }
    }

    /// Decodes the first instruction of `bytes` at `ip`: its length (0 when undecodable)
    /// and its text (an explanation in parentheses when there is none).
    pub fn decode(&mut self, ip: u32, bytes: &[u8]) -> (usize, String) {
        if bytes.is_empty() {
            return (0, "(no instruction bytes: CS:IP is outside guest RAM)".into());
        }
        let mut decoder = Decoder::with_ip(16, bytes, u64::from(ip), DecoderOptions::NONE);
        let mut insn = Instruction::default();
        decoder.decode_out(&mut insn);
        if insn.is_invalid() {
            return (0, "(not a valid instruction)".into());
        }
        let mut text = String::new();
        self.formatter.format(&insn, &mut text);
        (insn.len(), text)
    }
}

/// Up to [`MAX_INSN`] bytes of code at `cs_base + ip` (IP wrapping at 64 KiB as a real-mode
/// fetch does), stopping at the end of guest RAM. Returns the buffer and how many are valid.
pub fn code_at(machine: &Machine, cs_base: u32, ip: u32) -> ([u8; MAX_INSN], usize) {
    let mut buf = [0u8; MAX_INSN];
    let ram = machine.ram();
    let mut n = 0;
    while n < MAX_INSN {
        let off = if ip <= 0xFFFF { (ip + n as u32) & 0xFFFF } else { ip.wrapping_add(n as u32) };
        match ram.read_u8(u64::from(cs_base.wrapping_add(off))) {
            Ok(b) => buf[n] = b,
            Err(_) => break,
        }
        n += 1;
    }
    (buf, n)
}

/// `bytes` as lower-case hex pairs separated by spaces.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intel_and_att() {
        let mov = [0xB8, 0x01, 0x00];
        assert_eq!(Disassembler::new(Syntax::Intel).decode(0, &mov), (3, "mov ax, 1".into()));
        assert_eq!(Disassembler::new(Syntax::Att).decode(0, &mov), (3, "mov $1,%ax".into()));
        let xchg = [0x87, 0xDB];
        assert_eq!(Disassembler::new(Syntax::Intel).decode(0, &xchg).1, "xchg bx, bx");
        assert_eq!(Disassembler::new(Syntax::Att).decode(0, &xchg).1, "xchg %bx,%bx");
    }

    #[test]
    fn undecodable_bytes_are_explained() {
        let mut d = Disassembler::new(Syntax::Intel);
        assert_eq!(d.decode(0x7C00, &[0x0F, 0x01, 0xC1]), (3, "vmcall".into()));
        assert_eq!(d.decode(0, &[]).0, 0);
        assert_eq!(d.decode(0, &[0x0F, 0xFF]), (0, "(not a valid instruction)".into()));
    }

    #[test]
    fn hex_pairs() {
        assert_eq!(hex(&[0x87, 0xDB, 0x0]), "87 db 00");
        assert_eq!(hex(&[]), "");
    }
}
