//! The one backend and machine factory of the binary: `run`, `sst`, `diff` and `fuzz` all get
//! their KVM backend, interpreter and machine here, so `--jit`, `--mem`, `--a20-wrap` and
//! `--mmio-console` are applied the same way everywhere and every backend watches the Ctrl-C
//! flag ([`crate::signals::INTERRUPTED`]).
//!
//! KVM availability: [`kvm`] reports why `/dev/kvm` cannot be used, with advice for the three
//! usual causes (absent, permission denied, busy). Setting `PICOQEMU_FAKE_KVM_ERROR` to
//! `absent`, `denied` or `busy` makes the probe fail exactly as such a host would (the errno's
//! own message), so CI can test those paths on a machine where KVM works.
use std::io;
use std::ops::Range;

use picoqemu_core::devices::mmio_console::MMIO_CONSOLE_SIZE;
use picoqemu_core::devices::vga::{SCREEN_BYTES, TEXT_BASE};
use picoqemu_core::devices::{MmioConsole, Sink};
use picoqemu_core::loader::{BOOT_ADDR, BOOT_SIZE};
use picoqemu_core::{
    load_image, Backend, CoreError, CpuState, ImageKind, IoBus, LoadError, Machine, MachineConfig,
};
use picoqemu_interp::{InterpBackend, JitMode};
use picoqemu_kvm::{KvmBackend, KvmError};
use thiserror::Error;

use crate::options::{BackendChoice, MachineOpts};
use crate::signals::INTERRUPTED;

/// The environment switch that makes the KVM probe fail (`absent`, `denied` or `busy`).
pub const FAKE_KVM_ERROR_ENV: &str = "PICOQEMU_FAKE_KVM_ERROR";

/// The end of what real-mode code can address with A20 wrapping (1 MiB).
const REAL_MODE_END: u64 = 0x10_0000;
/// The real-mode interrupt vector table.
const IVT: Range<u64> = 0..0x400;

/// KVM cannot be used; the message says why and what to do.
#[derive(Debug, Clone, Error)]
#[error("{reason}{advice}")]
pub struct KvmUnavailable {
    /// What failed (the probe's or the VM creation's own message).
    pub reason: String,
    /// `; ` and advice for a recognised cause, or empty.
    pub advice: &'static str,
}

impl From<KvmError> for KvmUnavailable {
    fn from(e: KvmError) -> Self {
        let reason = match e {
            KvmError::Unavailable(m) => m,
            other => other.to_string(),
        };
        let advice = advice_for(&reason);
        KvmUnavailable { reason, advice }
    }
}

/// Advice for the errno a KVM message ends with (the message is the errno's `io::Error` text).
fn advice_for(reason: &str) -> &'static str {
    let is = |errno: i32| reason.ends_with(&io::Error::from_raw_os_error(errno).to_string());
    if is(libc::ENOENT) || is(libc::ENODEV) || is(libc::ENXIO) {
        "; /dev/kvm does not exist: the kvm module is not loaded or the host has no hardware virtualisation"
    } else if is(libc::EACCES) || is(libc::EPERM) {
        "; this user may not open /dev/kvm (add it to the kvm group, or ask the administrator)"
    } else if is(libc::EBUSY) {
        "; the CPU's virtualisation extensions are held by another hypervisor (e.g. VirtualBox)"
    } else {
        ""
    }
}

/// The failure `PICOQEMU_FAKE_KVM_ERROR` asks for, if it is set.
fn fake_kvm_error() -> Option<KvmError> {
    let value = std::env::var_os(FAKE_KVM_ERROR_ENV)?;
    let os = |errno| io::Error::from_raw_os_error(errno);
    Some(KvmError::Unavailable(match value.to_str() {
        Some("absent") => format!("cannot open /dev/kvm: {}", os(libc::ENOENT)),
        Some("denied") => format!("cannot open /dev/kvm: {}", os(libc::EACCES)),
        Some("busy") => format!("KVM_CREATE_VM failed: {}", os(libc::EBUSY)),
        _ => format!("{FAKE_KVM_ERROR_ENV}={value:?} is not one of absent, denied, busy"),
    }))
}

/// Checks that KVM can be used, without creating a VM.
pub fn kvm_probe() -> Result<(), KvmUnavailable> {
    if let Some(e) = fake_kvm_error() {
        return Err(e.into());
    }
    Ok(KvmBackend::probe()?)
}

/// A KVM backend (VM and vCPU) for `machine`, watching the Ctrl-C flag.
pub fn kvm(machine: &Machine) -> Result<KvmBackend, KvmUnavailable> {
    kvm_probe()?;
    Ok(KvmBackend::new(machine)?.with_interrupt(&INTERRUPTED))
}

/// An interpreter with its compiled tier in `jit` mode, watching the Ctrl-C flag.
pub fn interp(jit: JitMode) -> InterpBackend {
    InterpBackend::new().with_jit(jit).with_interrupt(&INTERRUPTED)
}

/// The backend `choice` asks for. With `Auto` and no usable KVM, the interpreter, after one
/// `picoqemu:` line on stderr saying why.
pub fn select(
    choice: BackendChoice,
    jit: JitMode,
    machine: &Machine,
) -> Result<Box<dyn Backend>, KvmUnavailable> {
    match choice {
        BackendChoice::Interp => Ok(Box::new(interp(jit))),
        BackendChoice::Kvm => Ok(Box::new(kvm(machine)?)),
        BackendChoice::Auto => match kvm(machine) {
            Ok(k) => Ok(Box::new(k)),
            Err(e) => {
                crate::cli::report(&format!("picoqemu: KVM unavailable ({e}); using the interpreter\n"));
                Ok(Box::new(interp(jit)))
            }
        },
    }
}

/// Why a machine could not be built and loaded.
#[derive(Debug, Error)]
pub enum BuildError {
    /// An option asks for an impossible layout (the message names it and what to do).
    #[error("{0}")]
    Placement(String),
    #[error(transparent)]
    Machine(#[from] CoreError),
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// Builds a machine for `opts` on `bus` (the MMIO console, if asked for, writes to `console`),
/// loads `image` as `kind` and returns it with the start state.
pub fn machine(
    opts: &MachineOpts,
    mut bus: IoBus,
    console: Sink,
    image: &[u8],
    kind: ImageKind,
) -> Result<(Machine, CpuState), BuildError> {
    if let Some(base) = opts.mmio_console {
        check_mmio_console(base)?;
        bus.mmio_console = Some(MmioConsole::new(base, console));
    }
    let config = MachineConfig { mem_size: opts.mem, a20_wrap: opts.a20_wrap, ..MachineConfig::default() };
    let mut m = Machine::new(config, bus)?;
    let start = load_image(&mut m, image, kind)?;
    if let Some(base) = opts.mmio_console {
        check_console_clear_of_image(base, image_range(kind, image.len()))?;
    }
    Ok((m, start))
}

/// Where `load_image` puts an image of `len` bytes.
fn image_range(kind: ImageKind, len: usize) -> Range<u64> {
    let len = len as u64;
    match kind {
        ImageKind::Boot => u64::from(BOOT_ADDR)..u64::from(BOOT_ADDR) + BOOT_SIZE as u64,
        ImageKind::Raw => 0..len,
        ImageKind::Rom => REAL_MODE_END - len..REAL_MODE_END,
    }
}

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

/// The MMIO console's own rules: aligned, reachable from real mode, clear of the IVT and the
/// VGA text buffer.
pub fn check_mmio_console(base: u64) -> Result<(), BuildError> {
    let bad = |why: String| Err(BuildError::Placement(format!("--mmio-console {base:#x} {why}")));
    if !base.is_multiple_of(MMIO_CONSOLE_SIZE) {
        return bad("is not 4 KiB-aligned; pick an address such as 0xd0000".into());
    }
    let console = base..base.saturating_add(MMIO_CONSOLE_SIZE);
    if console.end > REAL_MODE_END {
        return bad(
            "is beyond the 1 MiB a real-mode guest can address; pick an address such as 0xd0000".into()
        );
    }
    if overlaps(&console, &IVT) {
        return bad(
            "would cover the interrupt vector table at 0x0-0x3ff; pick an address such as 0xd0000".into()
        );
    }
    let text = TEXT_BASE as u64..(TEXT_BASE + SCREEN_BYTES) as u64;
    if overlaps(&console, &text) {
        return bad(format!(
            "would cover the VGA text buffer at {TEXT_BASE:#x}; pick an address such as 0xd0000"
        ));
    }
    Ok(())
}

/// The console must not hide the loaded image (its code would become MMIO).
fn check_console_clear_of_image(base: u64, image: Range<u64>) -> Result<(), BuildError> {
    let console = base..base + MMIO_CONSOLE_SIZE;
    if overlaps(&console, &image) {
        return Err(BuildError::Placement(format!(
            "--mmio-console {base:#x} would cover the image loaded at {:#x}-{:#x}; pick an address such as 0xd0000",
            image.start,
            image.end - 1
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_placement_rules() {
        assert!(check_mmio_console(0xD0000).is_ok());
        assert!(check_mmio_console(0xFF000).is_ok());
        for bad in [0xD0010, 0xB8000, 0x0, 0x100000, 1 << 32, u64::MAX - 0xFFF] {
            assert!(check_mmio_console(bad).is_err(), "{bad:#x}");
        }
        let e = check_mmio_console(0).unwrap_err().to_string();
        assert!(e.contains("interrupt vector table"), "{e}");
        let e = check_mmio_console(0x100000).unwrap_err().to_string();
        assert!(e.contains("beyond the 1 MiB"), "{e}");
    }

    #[test]
    fn console_must_not_cover_the_image() {
        let boot = image_range(ImageKind::Boot, 512);
        assert_eq!(boot, 0x7C00..0x7E00);
        assert!(check_console_clear_of_image(0x7000, boot.clone()).is_err());
        assert!(check_console_clear_of_image(0x8000, boot).is_ok());
        assert!(check_console_clear_of_image(0xF000, image_range(ImageKind::Raw, 0x10000)).is_err());
        assert!(check_console_clear_of_image(0xF000, image_range(ImageKind::Rom, 0x1000)).is_ok());
        assert!(check_console_clear_of_image(0xFF000, image_range(ImageKind::Rom, 16)).is_err());
    }

    #[test]
    fn kvm_errors_get_advice_by_errno() {
        let msg = |errno| format!("cannot open /dev/kvm: {}", io::Error::from_raw_os_error(errno));
        assert!(advice_for(&msg(libc::ENOENT)).contains("does not exist"));
        assert!(advice_for(&msg(libc::EACCES)).contains("kvm group"));
        assert!(advice_for(&msg(libc::EBUSY)).contains("another hypervisor"));
        assert_eq!(advice_for("the host lacks KVM_CAP_SYNC_REGS"), "");
    }
}
