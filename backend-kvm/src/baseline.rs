//! A bare KVM runner with none of picoqemu's layers, used by the benchmarks as the "raw
//! baseline" against which the [`crate::KvmBackend`]'s overhead is measured as a ratio.
//!
//! It does what a minimal C runner (the article's) does and nothing more: its own anonymous
//! `mmap` for guest RAM, one memslot (two when an MMIO hole is requested), one vCPU, real-mode
//! segment registers through `KVM_SET_SREGS`/`KVM_SET_REGS`, and a `KVM_RUN` loop that handles
//! only HLT, port I/O (the debug-exit port 0xF4 ends the run, other writes are counted and
//! dropped, reads give all ones), MMIO (counted; reads give all ones) and, optionally, one
//! coalesced PIO port and a coalesced MMIO hole whose ring is drained at every exit. No bus,
//! no devices, no sync regs, no watchdog, no CPUID, no single step.
//!
//! Because there is no watchdog, a guest that never halts (or a `vmcall`, which hangs
//! `KVM_RUN` on PVM hosts) blocks [`RawVm::run`] for ever: run only guests known to stop,
//! such as the project's own benchmark programs.
use std::ptr::NonNull;

use kvm_bindings::{kvm_regs, kvm_sregs, kvm_userspace_memory_region};
use kvm_ioctls::{Cap, IoEventAddress, Kvm, VcpuExit, VcpuFd, VmFd};
use thiserror::Error;

/// The debug-exit port: a write there ends [`RawVm::run`] with [`RawEnd::DebugExit`].
pub const RAW_DEBUG_EXIT_PORT: u16 = 0xF4;
/// Size of the MMIO hole [`RawConfig::mmio_hole`] leaves unmapped.
pub const RAW_MMIO_HOLE_SIZE: u64 = 0x1000;
/// Where `KVM_SET_TSS_ADDR` puts the (unused in real mode, required by VMX) TSS.
const TSS_ADDR: usize = 0xFFFB_D000;
const PAGE: u64 = 0x1000;

/// Why the bare runner failed (host problems or an exit it does not handle).
#[derive(Debug, Error)]
pub enum BaselineError {
    /// /dev/kvm cannot be opened or lacks a capability the configuration needs.
    #[error("KVM is not available: {0}")]
    Unavailable(String),
    /// A KVM ioctl failed.
    #[error("{ioctl} failed: {source}")]
    Ioctl {
        ioctl: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    /// The anonymous mapping for guest RAM failed.
    #[error("mmap of {len} bytes of guest RAM failed: {source}")]
    Mmap {
        len: usize,
        #[source]
        source: std::io::Error,
    },
    /// The configuration or an argument does not fit the guest RAM.
    #[error("bad baseline parameter: {0}")]
    BadParameter(String),
    /// `KVM_RUN` returned an exit this runner does not handle.
    #[error("unhandled exit: {0}")]
    UnhandledExit(String),
}

fn ioctl(name: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> BaselineError {
    move |source| BaselineError::Ioctl { ioctl: name, source }
}

/// How to build a [`RawVm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawConfig {
    /// Guest RAM in bytes (a multiple of 4 KiB).
    pub mem_size: usize,
    /// Leave `[hole, hole + 4 KiB)` without a memslot, so accesses there exit as MMIO.
    pub mmio_hole: Option<u64>,
    /// Register the MMIO hole as a coalesced MMIO zone (writes go to the ring).
    pub coalesce_mmio_hole: bool,
    /// Register this port as a coalesced PIO zone of one byte (writes go to the ring).
    pub coalesced_port: Option<u16>,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig { mem_size: 2 << 20, mmio_hole: None, coalesce_mmio_hole: false, coalesced_port: None }
    }
}

/// How a [`RawVm::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawEnd {
    /// `KVM_EXIT_HLT`.
    Halted,
    /// A byte write to port 0xF4 with this value.
    DebugExit(u8),
}

/// Counters of one [`RawVm::run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRun {
    pub end: RawEnd,
    /// Returns of `KVM_RUN` (the final HLT or debug-exit one included).
    pub exits: u64,
    pub pio_exits: u64,
    pub mmio_exits: u64,
    /// Entries drained from the coalesced ring (writes that took no exit).
    pub coalesced: u64,
}

/// Guest RAM: an anonymous private mapping, unmapped on drop.
#[derive(Debug)]
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> Result<Mapping, BaselineError> {
        // SAFETY: an anonymous private mapping at an address the kernel chooses touches no
        // existing memory; the result is checked against MAP_FAILED before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(BaselineError::Mmap { len, source: std::io::Error::last_os_error() });
        }
        let ptr = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| BaselineError::BadParameter("mmap returned a null mapping".into()))?;
        Ok(Mapping { ptr, len })
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is a live mapping of `len` readable bytes owned by `self`; the guest may
        // write it concurrently only while `KVM_RUN` runs, which needs `&mut RawVm`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` is exactly the mapping created in `Mapping::new`, unmapped once.
        // `RawVm` declares the mapping after the VM and vCPU fds, so they are closed first.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// One bare VM with one vCPU and its own guest RAM.
#[derive(Debug)]
pub struct RawVm {
    vcpu: VcpuFd,
    _vm: VmFd,
    /// Declared last: dropped after the fds that reference it.
    mem: Mapping,
    /// The vCPU's special registers as created, with real-mode segments filled in by `start`.
    sregs: kvm_sregs,
    coalesced: bool,
}

impl RawVm {
    /// Creates the VM, its RAM mapping and memslots, and vCPU 0.
    pub fn new(config: RawConfig) -> Result<RawVm, BaselineError> {
        if config.mem_size == 0 || !(config.mem_size as u64).is_multiple_of(PAGE) {
            return Err(BaselineError::BadParameter(format!(
                "guest RAM size {:#x} must be a non-zero multiple of 4 KiB",
                config.mem_size
            )));
        }
        let len = config.mem_size as u64;
        let mut ranges = Vec::with_capacity(2);
        match config.mmio_hole {
            Some(h) => {
                if !h.is_multiple_of(PAGE) || h.saturating_add(RAW_MMIO_HOLE_SIZE) > len {
                    return Err(BaselineError::BadParameter(format!(
                        "MMIO hole {h:#x} must be 4 KiB aligned and inside guest RAM"
                    )));
                }
                ranges.push((0, h));
                ranges.push((h + RAW_MMIO_HOLE_SIZE, len - h - RAW_MMIO_HOLE_SIZE));
            }
            None => ranges.push((0, len)),
        }
        let kvm = Kvm::new().map_err(|e| BaselineError::Unavailable(format!("cannot open /dev/kvm: {e}")))?;
        let vm = kvm.create_vm().map_err(ioctl("KVM_CREATE_VM"))?;
        vm.set_tss_address(TSS_ADDR).map_err(ioctl("KVM_SET_TSS_ADDR"))?;
        let mem = Mapping::new(config.mem_size)?;
        for (slot, &(guest, size)) in ranges.iter().filter(|r| r.1 > 0).enumerate() {
            let region = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: guest,
                memory_size: size,
                userspace_addr: mem.ptr.as_ptr() as u64 + guest,
            };
            // SAFETY: `[guest, guest + size)` lies inside the mapping (checked above), which
            // `RawVm` owns and drops only after the VM fd is closed.
            unsafe { vm.set_user_memory_region(region) }.map_err(ioctl("KVM_SET_USER_MEMORY_REGION"))?;
        }
        let mut vcpu = vm.create_vcpu(0).map_err(ioctl("KVM_CREATE_VCPU"))?;
        let coalesced =
            config.coalesced_port.is_some() || (config.coalesce_mmio_hole && config.mmio_hole.is_some());
        if coalesced {
            if !kvm.check_extension(Cap::CoalescedMmio) {
                return Err(BaselineError::Unavailable("the host lacks KVM_CAP_COALESCED_MMIO".into()));
            }
            vcpu.map_coalesced_mmio_ring().map_err(ioctl("mmap of the coalesced MMIO ring"))?;
        }
        if let Some(port) = config.coalesced_port {
            if !kvm.check_extension(Cap::CoalescedPio) {
                return Err(BaselineError::Unavailable("the host lacks KVM_CAP_COALESCED_PIO".into()));
            }
            vm.register_coalesced_mmio(IoEventAddress::Pio(u64::from(port)), 1)
                .map_err(ioctl("KVM_REGISTER_COALESCED_MMIO (PIO)"))?;
        }
        if let (true, Some(h)) = (config.coalesce_mmio_hole, config.mmio_hole) {
            vm.register_coalesced_mmio(IoEventAddress::Mmio(h), RAW_MMIO_HOLE_SIZE as u32)
                .map_err(ioctl("KVM_REGISTER_COALESCED_MMIO"))?;
        }
        let sregs = vcpu.get_sregs().map_err(ioctl("KVM_GET_SREGS"))?;
        Ok(RawVm { vcpu, _vm: vm, mem, sregs, coalesced })
    }

    /// Guest RAM.
    pub fn memory(&self) -> &[u8] {
        self.mem.as_slice()
    }

    /// Guest RAM, writable (to reset it between runs).
    pub fn memory_mut(&mut self) -> &mut [u8] {
        self.mem.as_mut_slice()
    }

    /// Copies `image` into guest RAM at physical `addr`.
    pub fn load(&mut self, addr: usize, image: &[u8]) -> Result<(), BaselineError> {
        let dst = addr
            .checked_add(image.len())
            .and_then(|end| self.mem.as_mut_slice().get_mut(addr..end))
            .ok_or_else(|| {
                BaselineError::BadParameter(format!(
                    "{} bytes at {addr:#x} do not fit guest RAM",
                    image.len()
                ))
            })?;
        dst.copy_from_slice(image);
        Ok(())
    }

    /// Puts the vCPU in real mode at `cs:ip` with DS = ES = FS = GS = SS = `cs`, SP = `sp`
    /// and FLAGS = 0x2, with one `KVM_SET_SREGS` and one `KVM_SET_REGS` (as a C runner does).
    pub fn start(&mut self, cs: u16, ip: u16, sp: u16) -> Result<(), BaselineError> {
        for seg in [
            &mut self.sregs.cs,
            &mut self.sregs.ds,
            &mut self.sregs.es,
            &mut self.sregs.fs,
            &mut self.sregs.gs,
            &mut self.sregs.ss,
        ] {
            seg.selector = cs;
            seg.base = u64::from(cs) << 4;
        }
        self.vcpu.set_sregs(&self.sregs).map_err(ioctl("KVM_SET_SREGS"))?;
        let regs = kvm_regs { rip: u64::from(ip), rsp: u64::from(sp), rflags: 0x2, ..Default::default() };
        self.vcpu.set_regs(&regs).map_err(ioctl("KVM_SET_REGS"))
    }

    /// Runs until HLT or a write to port 0xF4. Allocates nothing unless it fails.
    pub fn run(&mut self) -> Result<RawRun, BaselineError> {
        let mut r = RawRun { end: RawEnd::Halted, exits: 0, pio_exits: 0, mmio_exits: 0, coalesced: 0 };
        loop {
            let exit = self.vcpu.run();
            r.exits += 1;
            let end = match exit {
                Ok(VcpuExit::Hlt) => Some(RawEnd::Halted),
                Ok(VcpuExit::IoOut(port, data)) => {
                    r.pio_exits += 1;
                    match (port, data.first()) {
                        (RAW_DEBUG_EXIT_PORT, Some(&v)) => Some(RawEnd::DebugExit(v)),
                        _ => None,
                    }
                }
                Ok(VcpuExit::IoIn(_, data)) => {
                    r.pio_exits += 1;
                    data.fill(0xFF);
                    None
                }
                Ok(VcpuExit::MmioWrite(..)) => {
                    r.mmio_exits += 1;
                    None
                }
                Ok(VcpuExit::MmioRead(_, data)) => {
                    r.mmio_exits += 1;
                    data.fill(0xFF);
                    None
                }
                Ok(other) => return Err(BaselineError::UnhandledExit(format!("{other:?}"))),
                Err(e) if e.errno() == libc::EINTR => None,
                Err(e) => return Err(BaselineError::Ioctl { ioctl: "KVM_RUN", source: e }),
            };
            if self.coalesced {
                while let Ok(Some(_)) = self.vcpu.coalesced_mmio_read() {
                    r.coalesced += 1;
                }
            }
            if let Some(end) = end {
                r.end = end;
                return Ok(r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `RawVm`, or `None` (with a printed reason) when /dev/kvm is unusable and
    /// `PICOQEMU_REQUIRE_KVM` is not 1.
    fn vm(test: &str, config: RawConfig) -> Option<RawVm> {
        match RawVm::new(config) {
            Ok(v) => Some(v),
            Err(e) => {
                assert!(
                    std::env::var("PICOQEMU_REQUIRE_KVM").as_deref() != Ok("1"),
                    "{test}: PICOQEMU_REQUIRE_KVM=1 but KVM is unusable: {e}"
                );
                eprintln!("SKIP: {test}: KVM is unusable: {e}");
                None
            }
        }
    }

    /// ```text
    /// 0000 BA 80 00   mov dx, 0x80
    /// 0003 B9 05 00   mov cx, 5
    /// 0006 EE         out dx, al
    /// 0007 FE C0      inc al
    /// 0009 49         dec cx
    /// 000A 75 FA      jnz 0006
    /// 000C F4         hlt
    /// ```
    const OUT_LOOP_5: [u8; 13] =
        [0xBA, 0x80, 0x00, 0xB9, 0x05, 0x00, 0xEE, 0xFE, 0xC0, 0x49, 0x75, 0xFA, 0xF4];

    #[test]
    fn out_loop_exits_once_per_out() {
        let Some(mut v) = vm("out_loop_exits_once_per_out", RawConfig::default()) else { return };
        v.load(0x7C00, &OUT_LOOP_5).unwrap();
        for _ in 0..2 {
            v.start(0, 0x7C00, 0x7C00).unwrap();
            let r = v.run().unwrap();
            assert_eq!(
                r,
                RawRun { end: RawEnd::Halted, exits: 6, pio_exits: 5, mmio_exits: 0, coalesced: 0 }
            );
        }
    }

    #[test]
    fn coalesced_port_takes_no_exits() {
        let cfg = RawConfig { coalesced_port: Some(0x80), ..RawConfig::default() };
        let Some(mut v) = vm("coalesced_port_takes_no_exits", cfg) else { return };
        v.load(0x7C00, &OUT_LOOP_5).unwrap();
        v.start(0, 0x7C00, 0x7C00).unwrap();
        let r = v.run().unwrap();
        assert_eq!((r.end, r.exits, r.pio_exits, r.coalesced), (RawEnd::Halted, 1, 0, 5));
    }

    /// ```text
    /// 0000 B8 00 D0   mov ax, 0xD000
    /// 0003 8E C0      mov es, ax
    /// 0005 26 C6 06 00 00 2A   mov byte [es:0], 0x2A
    /// 000B 26 A0 00 00         mov al, [es:0]
    /// 000F E6 F4               out 0xF4, al
    /// ```
    const MMIO_STORE_LOAD: [u8; 17] = [
        0xB8, 0x00, 0xD0, 0x8E, 0xC0, 0x26, 0xC6, 0x06, 0x00, 0x00, 0x2A, 0x26, 0xA0, 0x00, 0x00, 0xE6, 0xF4,
    ];

    #[test]
    fn mmio_hole_exits_and_reads_all_ones() {
        let cfg = RawConfig { mmio_hole: Some(0xD_0000), ..RawConfig::default() };
        let Some(mut v) = vm("mmio_hole_exits_and_reads_all_ones", cfg) else { return };
        v.load(0x7C00, &MMIO_STORE_LOAD).unwrap();
        v.start(0, 0x7C00, 0x7C00).unwrap();
        let r = v.run().unwrap();
        assert_eq!(r.end, RawEnd::DebugExit(0xFF));
        assert_eq!((r.mmio_exits, r.pio_exits), (2, 1));
    }

    #[test]
    fn guest_writes_reach_the_mapping() {
        // mov byte [0x500], 0x5A / hlt  (C6 06 00 05 5A / F4)
        let Some(mut v) = vm("guest_writes_reach_the_mapping", RawConfig::default()) else { return };
        v.load(0x7C00, &[0xC6, 0x06, 0x00, 0x05, 0x5A, 0xF4]).unwrap();
        v.start(0, 0x7C00, 0x7C00).unwrap();
        assert_eq!(v.run().unwrap().end, RawEnd::Halted);
        assert_eq!(v.memory()[0x500], 0x5A);
    }

    #[test]
    fn bad_parameters_are_errors() {
        assert!(matches!(
            RawVm::new(RawConfig { mem_size: 100, ..RawConfig::default() }),
            Err(BaselineError::BadParameter(_))
        ));
        let cfg = RawConfig { mmio_hole: Some(0xD_0800), ..RawConfig::default() };
        assert!(matches!(RawVm::new(cfg), Err(BaselineError::BadParameter(_))));
        let Some(mut v) = vm("bad_parameters_are_errors", RawConfig::default()) else { return };
        assert!(matches!(v.load(2 << 20, &[1]), Err(BaselineError::BadParameter(_))));
    }
}
