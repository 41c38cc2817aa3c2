//! Pure helpers of exit handling: checking the shape of a port-I/O exit, fetching and
//! trimming instruction bytes for an emulation failure, and decoding the instruction at CS:IP
//! (used by single-step to recognise HLT, REP string chunks and faults).
use iced_x86::{Code, Decoder, DecoderOptions, FlowControl, Instruction};
use picoqemu_core::InsnBytes;

/// Longest x86 instruction.
pub const MAX_INSN: usize = 15;

/// Checks a `KVM_EXIT_IO`: `size` must be 1, 2 or 4 and `size * count` must equal the data
/// slice kvm-ioctls gave us. Returns the access width.
pub fn io_width(size: u8, count: u32, data_len: usize) -> Result<usize, String> {
    let size = usize::from(size);
    if !matches!(size, 1 | 2 | 4) || count == 0 || (count as usize).checked_mul(size) != Some(data_len) {
        return Err(format!(
            "KVM_EXIT_IO with size {size} and count {count} does not match its {data_len} data bytes"
        ));
    }
    Ok(size)
}

/// Physical address of `cs_base + ((ip + i) & 0xFFFF)` (IP wraps inside the segment), or
/// `None` when it is outside RAM.
fn linear(cs_base: u32, ip: u16, i: usize, ram_len: usize) -> Option<usize> {
    let a = cs_base as usize + usize::from(ip.wrapping_add(i as u16));
    (a < ram_len).then_some(a)
}

/// Copies up to 15 bytes at CS:IP out of guest RAM (stopping at the end of RAM).
pub fn fetch(ram: &[u8], cs_base: u32, ip: u16) -> ([u8; MAX_INSN], usize) {
    let mut buf = [0u8; MAX_INSN];
    let mut n = 0;
    while n < MAX_INSN {
        match linear(cs_base, ip, n, ram.len()) {
            Some(a) => buf[n] = ram[a],
            None => break,
        }
        n += 1;
    }
    (buf, n)
}

/// Decodes one 16-bit instruction from `bytes` at `ip`; `None` if the bytes are not a
/// complete valid instruction.
pub fn decode(bytes: &[u8], ip: u16) -> Option<Instruction> {
    let mut d = Decoder::with_ip(16, bytes, u64::from(ip), DecoderOptions::NONE);
    let mut insn = Instruction::default();
    d.decode_out(&mut insn);
    (!insn.is_invalid()).then_some(insn)
}

/// The bytes of the instruction that starts `bytes`: trimmed to its decoded length, or all
/// of them when they do not decode (KVM's emulator may know instructions iced does not).
pub fn insn_bytes(bytes: &[u8], ip: u16) -> InsnBytes {
    match decode(bytes, ip) {
        Some(i) if i.len() <= bytes.len() => InsnBytes::new(&bytes[..i.len()]),
        _ => InsnBytes::new(bytes),
    }
}

/// True when `bytes` at `ip` start with an instruction that hangs `KVM_RUN` on our hosts
/// (`vmcall`: KVM spins on it without returning; `kvm-on-our-hosts.md` §4). The free-run
/// hang check stops a run that stays on one of these.
pub fn hangs_kvm(bytes: &[u8], ip: u16) -> bool {
    decode(bytes, ip).is_some_and(|i| i.code() == Code::Vmcall)
}

/// What single-step needs to know about the instruction it is about to execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InsnKind {
    /// Decoded length (0 when it did not decode).
    pub len: u16,
    pub hlt: bool,
    /// A string instruction with a REP/REPE/REPNE prefix.
    pub rep_string: bool,
    /// The instruction never changes CS:IP except by falling through (or faulting).
    pub falls_through: bool,
    /// A jump (direct, conditional or indirect) that may legitimately target itself.
    pub jump: bool,
}

impl InsnKind {
    pub fn of(bytes: &[u8], ip: u16) -> InsnKind {
        match decode(bytes, ip) {
            Some(i) => InsnKind {
                len: i.len() as u16,
                hlt: i.code() == Code::Hlt,
                rep_string: i.is_string_instruction() && (i.has_rep_prefix() || i.has_repne_prefix()),
                falls_through: i.flow_control() == FlowControl::Next && i.code() != Code::Hlt,
                jump: matches!(
                    i.flow_control(),
                    FlowControl::UnconditionalBranch
                        | FlowControl::ConditionalBranch
                        | FlowControl::IndirectBranch
                ),
            },
            None => InsnKind { len: 0, hlt: false, rep_string: false, falls_through: false, jump: false },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_width_checks_shape() {
        assert_eq!(io_width(2, 3, 6), Ok(2));
        assert_eq!(io_width(1, 1, 1), Ok(1));
        assert!(io_width(3, 1, 3).is_err());
        assert!(io_width(2, 3, 4).is_err());
        assert!(io_width(4, 0, 0).is_err());
        assert!(io_width(4, u32::MAX, 4).is_err());
    }

    #[test]
    fn fetch_wraps_ip_and_stops_at_ram_end() {
        let mut ram = vec![0u8; 0x20000];
        ram[0x1FFFF] = 0xAA;
        ram[0x10000] = 0xBB;
        // CS base 0x10000, IP 0xFFFF: the second byte wraps to offset 0.
        let (b, n) = fetch(&ram, 0x10000, 0xFFFF);
        assert_eq!((n, b[0], b[1]), (15, 0xAA, 0xBB));
        let (_, n) = fetch(&ram, 0x1FFF0, 0x8);
        assert_eq!(n, 8);
    }

    #[test]
    fn insn_bytes_trims_to_length() {
        assert_eq!(insn_bytes(&[0x27, 0x90, 0x90], 0).as_slice(), &[0x27]);
        assert_eq!(insn_bytes(&[0xB8, 0x34, 0x12, 0xF4], 0).as_slice(), &[0xB8, 0x34, 0x12]);
        // Truncated: keep what we have.
        assert_eq!(insn_bytes(&[0xB8, 0x34], 0).as_slice(), &[0xB8, 0x34]);
    }

    #[test]
    fn hanging_instructions() {
        assert!(hangs_kvm(&[0x0F, 0x01, 0xC1, 0xF4], 0));
        assert!(!hangs_kvm(&[0x0F, 0x01, 0xD9], 0), "vmmcall raises #UD");
        assert!(!hangs_kvm(&[0xEB, 0xFE], 0));
        assert!(!hangs_kvm(&[0x0F, 0x01], 0), "truncated");
    }

    #[test]
    fn kinds() {
        assert!(InsnKind::of(&[0xF4], 0).hlt);
        let rep = InsnKind::of(&[0xF3, 0xA4], 0);
        assert!(rep.rep_string && rep.falls_through);
        assert!(!InsnKind::of(&[0xA4], 0).rep_string);
        assert!(!InsnKind::of(&[0xEB, 0xFE], 0).falls_through);
        assert!(!InsnKind::of(&[0xCD, 0x10], 0).falls_through);
        assert_eq!(InsnKind::of(&[0xF6, 0xF3], 0).len, 2); // div bl
        let vmcall = InsnKind::of(&[0x0F, 0x01, 0xC1], 0);
        assert!(!vmcall.falls_through && !vmcall.jump);
        assert!(InsnKind::of(&[0xEB, 0xFE], 0).jump);
        assert!(InsnKind::of(&[0x74, 0xFE], 0).jump);
        assert!(InsnKind::of(&[0xFF, 0xE0], 0).jump); // jmp ax
    }
}
