//! The VM: one KVM VM with the machine's RAM registered as memslots around the MMIO holes,
//! one vCPU with its `kvm_run` page (sync regs enabled) and, optionally, coalesced PIO zones
//! and one coalesced MMIO zone (the MMIO console's output-only data register), registered
//! lazily: a zone costs 13–17 ms at VM destruction on our hosts, so a port or register gets
//! one only once the guest has written to it (see [`Vm::coalesce_port`], [`Vm::coalesce_mmio`]).
use std::sync::OnceLock;

use kvm_bindings::{kvm_cpuid_entry2, kvm_userspace_memory_region, CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Cap, IoEventAddress, Kvm, SyncReg, VcpuFd, VmFd};

use picoqemu_core::RamHandle;

use crate::KvmError;

/// Page size used to align memslots.
const PAGE: u64 = 0x1000;
/// Where the (unused in real mode, required by VMX for it) TSS goes: just below 4 GiB, as QEMU does.
const TSS_ADDR: usize = 0xFFFB_D000;

/// Ports whose writes are coalesced (output only; reads still exit). Never 0xF4.
pub const COALESCED_PORTS: [u16; 2] = [picoqemu_core::devices::debugcon::DEBUGCON_PORT, COM1_THR];
/// COM1's transmit holding register (also DLL when DLAB is set).
const COM1_THR: u16 = picoqemu_core::devices::uart::COM1_BASE;
/// The zone bit of the coalesced MMIO zone (after the port bits).
const MMIO_ZONE_BIT: u8 = 1 << COALESCED_PORTS.len();

/// A guest-physical range backed by RAM: `[guest, guest + len)` at RAM offset `host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub guest: u64,
    pub len: u64,
    /// Offset into the machine's RAM mapping.
    pub host: u64,
}

/// With the A20 gate disabled, physical 0x100000-0x10FFFF aliases 0x00000-0x0FFFF.
const HMA: u64 = 0x10_0000;
const HMA_LEN: u64 = 0x1_0000;

/// The memslots of a machine: RAM around the MMIO holes, and with `a20_wrap` the high memory
/// area mapped as an alias of the first 64 KiB (so FFFF:0010 wraps to 0 as on an 8086).
pub fn machine_slots(ram_len: u64, holes: &[(u64, u64)], a20_wrap: bool) -> Vec<Slot> {
    if !a20_wrap || ram_len < HMA + HMA_LEN {
        return ram_slots(ram_len, holes);
    }
    let mut low = ram_slots(HMA, holes);
    let hma_holes: Vec<(u64, u64)> = holes.iter().map(|&(b, l)| (b.wrapping_sub(HMA), l)).collect();
    low.extend(ram_slots(HMA_LEN, &hma_holes).into_iter().map(|s| Slot { guest: s.guest + HMA, ..s }));
    low.extend(ram_slots(ram_len, holes).into_iter().filter(|s| s.guest + s.len > HMA + HMA_LEN).map(|s| {
        let start = s.guest.max(HMA + HMA_LEN);
        Slot { guest: start, len: s.guest + s.len - start, host: start }
    }));
    low
}

/// Splits `[0, ram_len)` into page-aligned RAM slots that leave out every MMIO hole.
/// Holes are widened to whole pages (KVM slots are page granular); holes outside RAM are
/// ignored. Overlapping holes are fine.
pub fn ram_slots(ram_len: u64, holes: &[(u64, u64)]) -> Vec<Slot> {
    let mut cut: Vec<(u64, u64)> = holes
        .iter()
        .filter(|&&(_, len)| len > 0)
        .map(|&(base, len)| {
            let start = base & !(PAGE - 1);
            let end = base.saturating_add(len).saturating_add(PAGE - 1) & !(PAGE - 1);
            (start.min(ram_len), end.min(ram_len))
        })
        .filter(|&(s, e)| s < e)
        .collect();
    cut.sort_unstable();
    let mut slots = Vec::new();
    let mut at = 0u64;
    for (s, e) in cut {
        if s > at {
            slots.push(Slot { guest: at, len: s - at, host: at });
        }
        at = at.max(e);
    }
    if at < ram_len {
        slots.push(Slot { guest: at, len: ram_len - at, host: at });
    }
    slots
}

/// Checks the capabilities every VM needs: user memory slots and sync regs.
pub fn check_capabilities(kvm: &Kvm) -> Result<(), KvmError> {
    for (cap, name) in [(Cap::UserMemory, "KVM_CAP_USER_MEMORY"), (Cap::SyncRegs, "KVM_CAP_SYNC_REGS")] {
        if !kvm.check_extension(cap) {
            return Err(KvmError::Unavailable(format!("the host lacks {name}")));
        }
    }
    Ok(())
}

/// CPUID leaf 0 of picoqemu's CPU model: max leaf 1, vendor "PicoQEMU x86" (EBX, EDX, ECX).
const MODEL_LEAF0: (u32, [u8; 4], [u8; 4], [u8; 4]) = (1, *b"Pico", *b" x86", *b"QEMU");
/// CPUID leaf 1 EDX of the model: TSC (4), CX8 (8), CMOV (15).
pub const MODEL_FEATURES: u32 = (1 << 4) | (1 << 8) | (1 << 15);

/// picoqemu's own CPU model, the one the interpreter presents (`picoqemu-interp`'s `cpuid`):
/// leaf 0 gives max leaf 1 and the vendor "PicoQEMU x86"; leaf 1 gives family 5, model 2,
/// stepping 1 (`RESET_EDX`) with TSC, CX8 and CMOV. Built in user space: no
/// `KVM_GET_SUPPORTED_CPUID` (about 0.3 ms per process here, the whole difference between
/// `picoqemu run` and a bare KVM runner's start-up).
fn model_cpuid() -> Result<CpuId, KvmError> {
    let (max, ebx, ecx, edx) = MODEL_LEAF0;
    let le = u32::from_le_bytes;
    let entries = [
        kvm_cpuid_entry2 {
            function: 0,
            eax: max,
            ebx: le(ebx),
            ecx: le(ecx),
            edx: le(edx),
            ..Default::default()
        },
        kvm_cpuid_entry2 {
            function: 1,
            eax: picoqemu_core::loader::RESET_EDX,
            edx: MODEL_FEATURES,
            ..Default::default()
        },
    ];
    CpuId::from_entries(&entries)
        .map_err(|e| KvmError::Unavailable(format!("building the CPUID table: {e:?}")))
}

/// The host's supported CPUID, asked once per process (the ioctl costs about 0.3 ms here).
fn supported_cpuid(kvm: &Kvm) -> Result<CpuId, KvmError> {
    static CPUID: OnceLock<Result<CpuId, String>> = OnceLock::new();
    CPUID
        .get_or_init(|| kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| KvmError::Unavailable(format!("KVM_GET_SUPPORTED_CPUID failed: {e}")))
}

/// The KVM objects of one machine.
#[derive(Debug)]
pub struct Vm {
    /// The VM fd, owned so the VM with its memslots and coalesced zones lives as long as the
    /// vCPU (used after setup only to register coalesced zones).
    vm: VmFd,
    pub vcpu: VcpuFd,
    /// Whether writes to [`COALESCED_PORTS`] may be coalesced (the option, if the host
    /// supports it); each port gets its zone on its first write.
    pub coalesce: bool,
    /// The guest-physical range `(base, len)` whose writes may be coalesced (the MMIO
    /// console's output-only register), if the option is on, the host supports it and the
    /// machine has the console; it gets its zone on its first write.
    pub coalesce_mmio: Option<(u64, u64)>,
    /// Bit `i` set: [`COALESCED_PORTS`]`[i]` has a registered zone; [`MMIO_ZONE_BIT`]: the
    /// MMIO range has one.
    zones: u8,
    /// Size of the vCPU's `kvm_run` mapping (`KVM_GET_VCPU_MMAP_SIZE`): the port-I/O data
    /// area the kernel points at must lie inside it.
    pub run_size: usize,
    /// The guest RAM the memslots point at, kept mapped as long as the VM exists. Declared
    /// last, so the VM and vCPU fds close before the mapping can go.
    pub ram: RamHandle,
}

impl Vm {
    /// Creates the VM, maps the guest RAM `ram` keeps alive around `holes`, creates
    /// vCPU 0 with picoqemu's CPU model as its CPUID (the host's supported CPUID with
    /// `host_cpuid`) and enables sync regs.
    pub fn new(
        ram: RamHandle,
        holes: &[(u64, u64)],
        a20_wrap: bool,
        coalesce: bool,
        coalesce_mmio: Option<(u64, u64)>,
        host_cpuid: bool,
    ) -> Result<Vm, KvmError> {
        let kvm = Kvm::new().map_err(|e| KvmError::Unavailable(format!("cannot open /dev/kvm: {e}")))?;
        check_capabilities(&kvm)?;
        let (host, ram_len) = (ram.host_address(), ram.len());
        if (host as usize) & (PAGE as usize - 1) != 0 {
            return Err(KvmError::Memory(format!("guest RAM at host address {host:p} is not page aligned")));
        }
        let vm = kvm.create_vm().map_err(|e| KvmError::Unavailable(format!("KVM_CREATE_VM failed: {e}")))?;
        vm.set_tss_address(TSS_ADDR).map_err(KvmError::ioctl("KVM_SET_TSS_ADDR"))?;
        for (i, slot) in machine_slots(ram_len as u64, holes, a20_wrap).iter().enumerate() {
            let region = kvm_userspace_memory_region {
                slot: i as u32,
                flags: 0,
                guest_phys_addr: slot.guest,
                memory_size: slot.len,
                userspace_addr: host as u64 + slot.host,
            };
            // SAFETY: `[host + slot.host, host + slot.host + slot.len)` lies inside the
            // machine's RAM mapping (`machine_slots` never goes past `ram_len`). The mapping
            // stays alive as long as this VM: the `Vm` owns `ram`, a handle that keeps it
            // mapped, and drops it after the VM fd. The kernel writes it only inside
            // `KVM_RUN`, which `KvmBackend` enters only while it holds `&mut Machine` of the
            // machine whose RAM `ram` names, so no Rust reference into it is alive then.
            unsafe { vm.set_user_memory_region(region) }
                .map_err(KvmError::ioctl("KVM_SET_USER_MEMORY_REGION"))?;
        }
        let mut vcpu = vm.create_vcpu(0).map_err(KvmError::ioctl("KVM_CREATE_VCPU"))?;
        let cpuid = if host_cpuid { supported_cpuid(&kvm)? } else { model_cpuid()? };
        vcpu.set_cpuid2(&cpuid).map_err(KvmError::ioctl("KVM_SET_CPUID2"))?;
        vcpu.set_sync_valid_reg(SyncReg::Register);
        vcpu.set_sync_valid_reg(SyncReg::SystemRegister);
        let coalesce = coalesce && kvm.check_extension(Cap::CoalescedPio);
        let coalesce_mmio =
            coalesce_mmio.filter(|&(_, len)| len > 0 && kvm.check_extension(Cap::CoalescedMmio));
        let run_size = kvm.get_vcpu_mmap_size().map_err(KvmError::ioctl("KVM_GET_VCPU_MMAP_SIZE"))?;
        Ok(Vm { vm, vcpu, coalesce, coalesce_mmio, zones: 0, run_size, ram })
    }

    /// True when `port` is one of [`COALESCED_PORTS`], coalescing is on and the port has no
    /// zone yet (cheap: checked on every port-write exit).
    #[inline]
    pub fn wants_zone(&self, port: u16) -> bool {
        self.coalesce && zone_bit(port).is_some_and(|b| self.zones & b == 0)
    }

    /// Registers a one-byte coalesced zone for `port` (mapping the vCPU's ring first) when
    /// [`Vm::wants_zone`] says so; later byte writes to it go to the ring instead of exiting.
    /// Returns whether a zone was registered now.
    pub fn coalesce_port(&mut self, port: u16) -> Result<bool, KvmError> {
        let Some(bit) = zone_bit(port).filter(|_| self.wants_zone(port)) else {
            return Ok(false);
        };
        self.vcpu.map_coalesced_mmio_ring().map_err(KvmError::ioctl("mmap of the coalesced MMIO ring"))?;
        self.vm
            .register_coalesced_mmio(IoEventAddress::Pio(u64::from(port)), 1)
            .map_err(KvmError::ioctl("KVM_REGISTER_COALESCED_MMIO (PIO)"))?;
        self.zones |= bit;
        Ok(true)
    }

    /// True when `[addr, addr + len)` lies in the coalescible MMIO range and that range has
    /// no zone yet (cheap: checked on every MMIO-write exit).
    #[inline]
    pub fn wants_mmio_zone(&self, addr: u64, len: usize) -> bool {
        self.zones & MMIO_ZONE_BIT == 0 && self.coalesce_mmio.is_some_and(|zone| fits(zone, addr, len))
    }

    /// Registers the coalesced MMIO zone (mapping the vCPU's ring first) when
    /// [`Vm::wants_mmio_zone`] says so for this write; later writes that fit inside the zone go
    /// to the ring instead of exiting (reads of it still exit). Returns whether a zone was
    /// registered now.
    pub fn coalesce_mmio(&mut self, addr: u64, len: usize) -> Result<bool, KvmError> {
        let Some((base, size)) = self.coalesce_mmio.filter(|_| self.wants_mmio_zone(addr, len)) else {
            return Ok(false);
        };
        let size = u32::try_from(size)
            .map_err(|_| KvmError::Memory(format!("coalesced MMIO range of {size:#x} bytes is too large")))?;
        self.vcpu.map_coalesced_mmio_ring().map_err(KvmError::ioctl("mmap of the coalesced MMIO ring"))?;
        self.vm
            .register_coalesced_mmio(IoEventAddress::Mmio(base), size)
            .map_err(KvmError::ioctl("KVM_REGISTER_COALESCED_MMIO"))?;
        self.zones |= MMIO_ZONE_BIT;
        Ok(true)
    }

    /// The coalesced MMIO zone `(base, len)`, once registered.
    pub fn coalesced_mmio_zone(&self) -> Option<(u64, u64)> {
        self.coalesce_mmio.filter(|_| self.zones & MMIO_ZONE_BIT != 0)
    }

    /// Whether any zone is registered (only then can the ring hold entries).
    #[inline]
    pub fn ring_active(&self) -> bool {
        self.zones != 0
    }

    /// The ports that have a registered coalesced zone, in [`COALESCED_PORTS`] order.
    pub fn coalesced_zones(&self) -> Vec<u16> {
        COALESCED_PORTS
            .iter()
            .enumerate()
            .filter(|&(i, _)| self.zones & (1 << i) != 0)
            .map(|(_, &p)| p)
            .collect()
    }
}

/// Whether a write of `len` bytes at `addr` lies entirely inside `zone` = `(base, size)`:
/// only then does KVM put it in the ring (the kernel's `coalesced_mmio_in_range`).
#[inline]
fn fits((base, size): (u64, u64), addr: u64, len: usize) -> bool {
    match (addr.checked_add(len as u64), base.checked_add(size)) {
        (Some(end), Some(zone_end)) => addr >= base && end <= zone_end,
        _ => false,
    }
}

/// The bit of `port` in [`Vm`]'s zone mask, if it is one of [`COALESCED_PORTS`].
#[inline]
fn zone_bit(port: u16) -> Option<u8> {
    COALESCED_PORTS.iter().position(|&p| p == port).map(|i| 1u8 << i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_coalesced_ports_have_zone_bits() {
        assert_eq!(zone_bit(0xE9), Some(1));
        assert_eq!(zone_bit(0x3F8), Some(2));
        for port in [0xF4, 0x3F9, 0x3FD, 0x80, 0xE8] {
            assert_eq!(zone_bit(port), None, "{port:#x}");
        }
    }

    #[test]
    fn mmio_writes_fit_the_zone_only_when_entirely_inside() {
        let zone = (0xD0000, 4);
        for (addr, len) in [(0xD0000, 1), (0xD0000, 2), (0xD0000, 4), (0xD0003, 1), (0xD0002, 2)] {
            assert!(fits(zone, addr, len), "{addr:#x}/{len}");
        }
        for (addr, len) in [(0xD0004, 1), (0xD0003, 2), (0xD0002, 4), (0xCFFFF, 2), (0xD0000, 8)] {
            assert!(!fits(zone, addr, len), "{addr:#x}/{len}");
        }
        assert!(!fits((u64::MAX - 1, 4), u64::MAX, 2), "no wrap-around at the top");
        assert_eq!(MMIO_ZONE_BIT & (zone_bit(0xE9).unwrap() | zone_bit(0x3F8).unwrap()), 0);
    }

    #[test]
    fn no_holes_is_one_slot() {
        assert_eq!(ram_slots(0x20_0000, &[]), vec![Slot { guest: 0, len: 0x20_0000, host: 0 }]);
    }

    #[test]
    fn holes_are_cut_out_page_aligned() {
        let s = ram_slots(0x20_0000, &[(0xD0000, 0x1000), (0xE0010, 0x10)]);
        assert_eq!(
            s,
            vec![
                Slot { guest: 0, len: 0xD0000, host: 0 },
                Slot { guest: 0xD1000, len: 0xE0000 - 0xD1000, host: 0xD1000 },
                Slot { guest: 0xE1000, len: 0x20_0000 - 0xE1000, host: 0xE1000 },
            ]
        );
    }

    #[test]
    fn holes_at_edges_overlapping_or_outside() {
        let s =
            ram_slots(0x10_0000, &[(0, 0x1000), (0x800, 0x1000), (0xFF000, 0x5000), (0x4000_0000, 0x1000)]);
        assert_eq!(s, vec![Slot { guest: 0x2000, len: 0xFF000 - 0x2000, host: 0x2000 }]);
        assert!(ram_slots(0x1000, &[(0, u64::MAX)]).is_empty());
    }

    #[test]
    fn a20_wrap_aliases_the_hma() {
        let s = machine_slots(0x20_0000, &[(0xD0000, 0x1000)], true);
        assert_eq!(
            s,
            vec![
                Slot { guest: 0, len: 0xD0000, host: 0 },
                Slot { guest: 0xD1000, len: 0x10_0000 - 0xD1000, host: 0xD1000 },
                Slot { guest: 0x10_0000, len: 0x1_0000, host: 0 },
                Slot { guest: 0x11_0000, len: 0x20_0000 - 0x11_0000, host: 0x11_0000 },
            ]
        );
        assert_eq!(machine_slots(0x20_0000, &[], false), ram_slots(0x20_0000, &[]));
    }
}
