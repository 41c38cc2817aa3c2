//! Image loaders: put a program into guest RAM and give the CPU state it starts from.
//!
//! * [`ImageKind::Boot`] (default): exactly 512 bytes ending 0x55 0xAA, loaded at 0x7C00 and
//!   started at 0000:7C00 with DL = 0x80 and SP = 0x7C00, as a BIOS would.
//! * [`ImageKind::Raw`]: the article's layout: any file up to the RAM size at physical 0, all
//!   segment registers 0, IP = 0.
//! * [`ImageKind::Rom`]: 16 bytes to 64 KiB, placed to end at 0xFFFFF and started at
//!   F000:FFF0 like a CPU coming out of reset (EDX holds the CPU signature). Any length in
//!   that range is accepted; the reset vector must lie in the image's last 16 bytes.
use thiserror::Error;

use crate::{CpuState, Gpr, Machine, SegReg};

/// Physical address where a boot sector is loaded.
pub const BOOT_ADDR: u32 = 0x7C00;
/// Size of a boot sector.
pub const BOOT_SIZE: usize = 512;
/// Largest ROM image (one real-mode segment).
pub const MAX_ROM_SIZE: usize = 0x1_0000;
/// EDX after reset: family 5, model 2, stepping 1 (matches the interpreter's CPUID).
pub const RESET_EDX: u32 = 0x0000_0521;

/// How an image is placed in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageKind {
    #[default]
    /// A 512-byte boot sector with the 0x55 0xAA signature, loaded at 0000:7C00 and started there.
    Boot,
    /// The article's layout: the image at physical 0, started at 0000:0000.
    Raw,
    /// A ROM of 16 B to 64 KiB ending at 0xFFFFF, started at F000:FFF0.
    Rom,
}

/// Why an image cannot be loaded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LoadError {
    #[error("the image is empty")]
    /// A zero-length image.
    Empty,
    #[error(
        "a boot sector must be exactly 512 bytes, this image has {0} (use --raw or --rom for other layouts)"
    )]
    /// A boot sector of the wrong size (the size is given).
    BootSize(usize),
    #[error("the boot sector does not end with the signature 0x55 0xAA (bytes 510-511 are {0:#04x} {1:#04x}); use --raw to load it anyway")]
    /// A boot sector without the 0x55 0xAA signature (the two bytes found).
    NoSignature(u8, u8),
    #[error("the image has {len} bytes, more than the {max} bytes of guest RAM (raise --mem)")]
    /// A raw image larger than guest RAM.
    TooLarge {
        /// The image's length.
        /// Its length in bytes.
        len: usize,
        /// Guest RAM size.
        max: usize,
    },
    #[error("a ROM image must be 16 to 65536 bytes, this one has {0}")]
    /// A ROM image of the wrong size (the size is given).
    RomSize(usize),
}

/// Writes `image` into `machine`'s RAM as `kind` says and returns the start state.
/// RAM outside the image is left as it is.
pub fn load_image(machine: &mut Machine, image: &[u8], kind: ImageKind) -> Result<CpuState, LoadError> {
    if image.is_empty() {
        return Err(LoadError::Empty);
    }
    let ram_len = machine.ram().len();
    let (addr, mut state) = match kind {
        ImageKind::Boot => {
            if image.len() != BOOT_SIZE {
                return Err(LoadError::BootSize(image.len()));
            }
            if image[510] != 0x55 || image[511] != 0xAA {
                return Err(LoadError::NoSignature(image[510], image[511]));
            }
            let mut s = CpuState { eip: BOOT_ADDR, ..CpuState::default() };
            s.set_reg(Gpr::Edx, 0x80);
            s.set_reg(Gpr::Esp, BOOT_ADDR);
            (BOOT_ADDR as usize, s)
        }
        ImageKind::Raw => {
            if image.len() > ram_len {
                return Err(LoadError::TooLarge { len: image.len(), max: ram_len });
            }
            (0, CpuState::default())
        }
        ImageKind::Rom => {
            if !(16..=MAX_ROM_SIZE).contains(&image.len()) {
                return Err(LoadError::RomSize(image.len()));
            }
            let mut s = CpuState { eip: 0xFFF0, ..CpuState::default() };
            s.set_seg(SegReg::Cs, 0xF000);
            s.set_reg(Gpr::Edx, RESET_EDX);
            (0x10_0000 - image.len(), s)
        }
    };
    state.eflags = crate::flags::FIXED;
    machine.ram_mut().as_mut_slice()[addr..addr + image.len()].copy_from_slice(image);
    machine.mark_screen();
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IoBus, MachineConfig};

    fn machine() -> Machine {
        Machine::new(MachineConfig::default(), IoBus::capturing()).unwrap()
    }

    fn boot_sector() -> Vec<u8> {
        let mut b = vec![0x90u8; 512];
        b[0] = 0xF4;
        b[510] = 0x55;
        b[511] = 0xAA;
        b
    }

    #[test]
    fn boot_sector_placement() {
        let mut m = machine();
        let s = load_image(&mut m, &boot_sector(), ImageKind::Boot).unwrap();
        assert_eq!(m.ram().read_u8(0x7C00).unwrap(), 0xF4);
        assert_eq!(m.ram().read_u8(0x7DFF).unwrap(), 0xAA);
        assert_eq!((s.cs(), s.eip), (0, 0x7C00));
        assert_eq!(s.reg(Gpr::Edx), 0x80);
        assert_eq!(s.reg(Gpr::Esp), 0x7C00);
        assert_eq!(s.eflags, 2);
    }

    #[test]
    fn boot_sector_rejections() {
        let mut m = machine();
        assert_eq!(load_image(&mut m, &[], ImageKind::Boot), Err(LoadError::Empty));
        assert_eq!(load_image(&mut m, &[0; 511], ImageKind::Boot), Err(LoadError::BootSize(511)));
        assert_eq!(load_image(&mut m, &[0; 512], ImageKind::Boot), Err(LoadError::NoSignature(0, 0)));
    }

    #[test]
    fn raw_placement_and_size_limit() {
        let mut m = machine();
        let s = load_image(&mut m, &[0xB8, 0x34, 0x12, 0xF4], ImageKind::Raw).unwrap();
        assert_eq!(m.ram().read_vec(0, 4).unwrap(), &[0xB8, 0x34, 0x12, 0xF4]);
        assert_eq!(s, CpuState::default());
        let big = vec![0u8; m.ram().len() + 1];
        assert!(matches!(load_image(&mut m, &big, ImageKind::Raw), Err(LoadError::TooLarge { .. })));
    }

    #[test]
    fn rom_placement() {
        let mut m = machine();
        let mut rom = vec![0u8; 32];
        rom[16] = 0xEA; // at F000:FFF0
        rom[31] = 0x77;
        let s = load_image(&mut m, &rom, ImageKind::Rom).unwrap();
        assert_eq!(m.ram().read_u8(0xFFFF0).unwrap(), 0xEA);
        assert_eq!(m.ram().read_u8(0xFFFFF).unwrap(), 0x77);
        assert_eq!((s.cs(), s.eip, s.seg(SegReg::Cs).base), (0xF000, 0xFFF0, 0xF0000));
        assert_eq!(s.reg(Gpr::Edx), RESET_EDX);
        assert_eq!(load_image(&mut m, &[0; 15], ImageKind::Rom), Err(LoadError::RomSize(15)));
        assert_eq!(load_image(&mut m, &vec![0; 65537], ImageKind::Rom), Err(LoadError::RomSize(65537)));
    }
}
