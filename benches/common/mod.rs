//! Shared helpers of the benchmarks: machines with silent devices, loading and running a
//! guest with its result checked, the KVM availability check (benches skip KVM with a printed
//! reason when /dev/kvm is unusable), and the few guests `picoqemu::guests` lacks
//! (`hlt` alone, an `out dx, al` loop on any port).
#![allow(dead_code)]

use std::sync::OnceLock;

use picoqemu::guests::{self, GuestError, BOOT_ORIGIN};
use picoqemu_core::devices::sink::{Sink, SinkTarget};
use picoqemu_core::devices::MmioConsole;
use picoqemu_core::{
    load_image, Backend, CpuState, ImageKind, IoBus, Machine, MachineConfig, RunLimits, StopReason,
};
use picoqemu_kvm::{KvmBackend, KvmOptions};

/// KVM options with neither coalesced PIO nor coalesced MMIO: every access exits.
pub const EVERY_ACCESS_EXITS: KvmOptions =
    KvmOptions { coalesced_pio: false, coalesced_mmio: false, host_cpuid: false };

/// Where the MMIO benchmarks map the MMIO console.
pub const MMIO_BASE: u32 = guests::DEFAULT_MMIO_CONSOLE_BASE;

/// True when /dev/kvm can be used; the first call prints why not (`SKIP: ...`) otherwise.
pub fn kvm_usable() -> bool {
    static USABLE: OnceLock<bool> = OnceLock::new();
    *USABLE.get_or_init(|| match KvmBackend::probe() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("SKIP: KVM benchmarks: /dev/kvm is unusable: {e}");
            false
        }
    })
}

/// A bus whose character devices drop their output (nothing captured, nothing printed).
pub fn silent_bus(mmio_console: Option<u32>) -> IoBus {
    let mut bus = IoBus::new(Sink::new(SinkTarget::Null), Sink::new(SinkTarget::Null));
    bus.mmio_console =
        mmio_console.map(|base| MmioConsole::new(u64::from(base), Sink::new(SinkTarget::Null)));
    bus
}

/// A default machine (2 MiB) with a silent bus, `image` loaded as `kind`, and its start state.
pub fn machine_with(image: &[u8], kind: ImageKind, mmio_console: Option<u32>) -> (Machine, CpuState) {
    let mut m = Machine::new(MachineConfig::default(), silent_bus(mmio_console)).expect("guest RAM");
    let start = load_image(&mut m, image, kind).expect("the benchmark guest loads");
    (m, start)
}

/// A boot-sector machine (see [`machine_with`]).
pub fn boot_machine(image: &[u8]) -> (Machine, CpuState) {
    machine_with(image, ImageKind::Boot, None)
}

/// Loads `start` and runs to the end; panics (the benchmark is wrong) unless the guest halted.
pub fn run_to_halt(b: &mut dyn Backend, m: &mut Machine, start: &CpuState) {
    b.set_state(start).expect("set_state");
    let stop = b.run(m, RunLimits::UNBOUNDED).unwrap_or_else(picoqemu_core::StopReason::from);
    assert_eq!(stop, StopReason::Halted, "{} backend: the benchmark guest did not halt", b.name());
}

/// Runs `image` once on the interpreter and checks it retires `expected` instructions.
pub fn check_interp_count(image: &[u8], expected: u64) {
    let (mut m, start) = boot_machine(image);
    let mut b = picoqemu_interp::InterpBackend::new();
    run_to_halt(&mut b, &mut m, &start);
    assert_eq!(b.stats().instructions, Some(expected), "interp: wrong dynamic instruction count");
}

/// `hlt`: the smallest guest, for start-up and VM lifecycle costs.
pub fn hlt_sector() -> Result<Vec<u8>, GuestError> {
    guests::boot_sector(&[0xF4])
}

/// A bare-KVM VM ([`picoqemu_kvm::baseline`]) with the boot sector `image` at 0x7C00.
pub fn raw_vm(image: &[u8], config: picoqemu_kvm::baseline::RawConfig) -> picoqemu_kvm::baseline::RawVm {
    let mut v = picoqemu_kvm::baseline::RawVm::new(config).expect("bare KVM VM");
    v.load(usize::from(BOOT_ORIGIN), image).expect("the benchmark guest fits");
    v
}

/// Starts the bare VM at 0000:7C00 and runs it; panics unless the guest halted.
pub fn raw_run(v: &mut picoqemu_kvm::baseline::RawVm) -> picoqemu_kvm::baseline::RawRun {
    v.start(0, BOOT_ORIGIN, BOOT_ORIGIN).expect("KVM_SET_SREGS/REGS");
    let r = v.run().expect("bare KVM run");
    assert_eq!(r.end, picoqemu_kvm::baseline::RawEnd::Halted, "bare KVM: the benchmark guest did not halt");
    r
}
