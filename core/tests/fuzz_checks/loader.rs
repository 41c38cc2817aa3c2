//! Invariants of the image loaders on arbitrary images. Shared by the cargo-fuzz target
//! `fuzz/fuzz_targets/loader.rs` and the proptest in `core/tests/fuzz_props.rs`.
//!
//! Input: byte 0 picks the layout (boot, raw, ROM) and a shape (as given; a 512-byte sector
//! with the signature; an image sized around guest RAM; an image sized around the ROM limit),
//! byte 1 a size offset, the rest is the image's content. The expected result is computed from
//! the documented rules independently of the loader; on success the image must sit where the
//! layout says with the documented start state and every other byte of RAM untouched, on
//! failure RAM must be untouched; the load never counts as a guest screen write.
use picoqemu_core::flags::FIXED;
use picoqemu_core::loader::{
    load_image, ImageKind, LoadError, BOOT_ADDR, BOOT_SIZE, MAX_ROM_SIZE, RESET_EDX,
};
use picoqemu_core::{CpuState, Gpr, IoBus, Machine, MachineConfig, SegReg, MIN_MEM_SIZE};

/// What RAM holds before the load, so that untouched bytes are recognisable.
const PATTERN: u8 = 0xCC;

/// Builds the image `data` describes: `(kind, image)`; `None` for inputs under 2 bytes.
pub fn decode(data: &[u8]) -> Option<(ImageKind, Vec<u8>)> {
    let (&sel, rest) = data.split_first()?;
    let (&delta, content) = rest.split_first()?;
    let kind = [ImageKind::Boot, ImageKind::Raw, ImageKind::Rom][usize::from(sel % 3)];
    let delta = i64::from(delta as i8);
    let sized = |len: i64| {
        let len = len.max(0) as usize;
        let mut v: Vec<u8> = content.iter().copied().cycle().take(len).collect();
        v.resize(len, 0);
        v
    };
    let image = match (sel >> 2) & 3 {
        0 => content.to_vec(),
        1 => {
            let mut v = sized(BOOT_SIZE as i64);
            if sel & 0x10 == 0 {
                v[510] = 0x55;
                v[511] = 0xAA;
            }
            v
        }
        2 => sized(MIN_MEM_SIZE as i64 + delta),
        _ => sized(MAX_ROM_SIZE as i64 + delta),
    };
    Some((kind, image))
}

/// Where `image` must land and the state it must start with, by the documented rules.
fn expected(kind: ImageKind, image: &[u8], ram_len: usize) -> Result<(usize, CpuState), LoadError> {
    if image.is_empty() {
        return Err(LoadError::Empty);
    }
    let mut s = CpuState { eflags: FIXED, ..CpuState::default() };
    match kind {
        ImageKind::Boot if image.len() != BOOT_SIZE => Err(LoadError::BootSize(image.len())),
        ImageKind::Boot if image[510..] != [0x55, 0xAA] => {
            Err(LoadError::NoSignature(image[510], image[511]))
        }
        ImageKind::Boot => {
            s.eip = BOOT_ADDR;
            s.set_reg(Gpr::Edx, 0x80);
            s.set_reg(Gpr::Esp, BOOT_ADDR);
            Ok((BOOT_ADDR as usize, s))
        }
        ImageKind::Raw if image.len() > ram_len => {
            Err(LoadError::TooLarge { len: image.len(), max: ram_len })
        }
        ImageKind::Raw => Ok((0, s)),
        ImageKind::Rom if !(16..=MAX_ROM_SIZE).contains(&image.len()) => Err(LoadError::RomSize(image.len())),
        ImageKind::Rom => {
            s.eip = 0xFFF0;
            s.set_seg(SegReg::Cs, 0xF000);
            s.set_reg(Gpr::Edx, RESET_EDX);
            Ok((0x10_0000 - image.len(), s))
        }
    }
}

/// Loads the image `data` describes and asserts every invariant.
pub fn check(data: &[u8]) {
    let Some((kind, image)) = decode(data) else { return };
    check_image(kind, &image);
}

/// Loads `image` as `kind` into a pattern-filled machine and checks the result.
pub fn check_image(kind: ImageKind, image: &[u8]) {
    let config = MachineConfig { mem_size: MIN_MEM_SIZE, a20_wrap: false, ..MachineConfig::default() };
    let mut m = Machine::new(config, IoBus::capturing()).expect("a minimal machine");
    m.ram_mut().as_mut_slice().fill(PATTERN);
    m.mark_screen();
    let got = load_image(&mut m, image, kind);
    let want = expected(kind, image, m.ram().len());
    let ram = m.ram_mut().bytes();
    match (got, want) {
        (Ok(state), Ok((addr, want_state))) => {
            assert_eq!(state, want_state, "{kind:?} start state");
            assert!(ram[addr..addr + image.len()] == *image, "{kind:?} image is not at {addr:#x}");
            assert!(ram[..addr].iter().all(|&b| b == PATTERN), "{kind:?} wrote below the image");
            assert!(ram[addr + image.len()..].iter().all(|&b| b == PATTERN), "{kind:?} wrote past the image");
        }
        (Err(e), Err(w)) => {
            assert_eq!(e, w, "{kind:?} rejected a {}-byte image for another reason", image.len());
            assert!(!e.to_string().is_empty());
            assert!(ram.iter().all(|&b| b == PATTERN), "a rejected {kind:?} image changed RAM");
        }
        (g, w) => panic!("{kind:?} image of {} bytes: loader says {g:?}, rules say {w:?}", image.len()),
    }
    assert!(!m.screen_written(), "loading an image counts as a guest write to the screen");
}
