//! Decoding and formatting of guest instructions for reports: bytes at a linear address,
//! iced-x86 decoding in 16-bit mode and the Intel-syntax formatter.
use iced_x86::{Decoder, DecoderOptions, Formatter, Instruction, IntelFormatter};
use picoqemu_core::InsnBytes;

/// Up to 15 bytes of guest memory at linear address `addr` (fewer at the end of RAM).
pub fn fetch(ram: &[u8], addr: u32) -> InsnBytes {
    let start = (addr as usize).min(ram.len());
    let end = start.saturating_add(15).min(ram.len());
    InsnBytes::new(&ram[start..end])
}

/// Decodes the first instruction of `bytes` as 16-bit code at `ip`.
pub fn decode(bytes: &[u8], ip: u32) -> Instruction {
    let mut d = Decoder::with_ip(16, bytes, ip as u64, DecoderOptions::NONE);
    d.decode()
}

/// Intel syntax of one instruction, e.g. `add ax,[bx+si]`.
pub fn format(instr: &Instruction) -> String {
    let mut f = IntelFormatter::new();
    let mut out = String::new();
    f.format(instr, &mut out);
    out
}

/// `bytes` of the first instruction only, as hex, and its disassembly.
pub fn describe(bytes: &[u8], ip: u32) -> (String, String) {
    let instr = decode(bytes, ip);
    let len = instr.len().min(bytes.len());
    let hex = InsnBytes::new(&bytes[..len]).to_string();
    if instr.is_invalid() {
        (InsnBytes::new(bytes).to_string(), "(invalid or truncated instruction)".to_string())
    } else {
        (hex, format(&instr))
    }
}

/// The mnemonic of the first instruction in `bytes`, lower case (`"daa"`, `"(bad)"`).
pub fn mnemonic(bytes: &[u8]) -> String {
    let instr = decode(bytes, 0);
    if instr.is_invalid() {
        return "(bad)".to_string();
    }
    format!("{:?}", instr.mnemonic()).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_instructions() {
        assert_eq!(describe(&[0x01, 0xD8, 0x90], 0), ("01 d8".to_string(), "add ax,bx".to_string()));
        assert_eq!(mnemonic(&[0x27]), "daa");
        assert_eq!(mnemonic(&[0x0F]), "(bad)");
        assert_eq!(fetch(&[1, 2, 3], 1).as_slice(), &[2, 3]);
        assert_eq!(fetch(&[1, 2, 3], 9).as_slice(), &[] as &[u8]);
    }
}
