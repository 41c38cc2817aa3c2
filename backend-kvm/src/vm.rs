//! The VM: one KVM VM with the machine's RAM registered as memslots around the MMIO holes,
//! one vCPU with its `kvm_run` page (sync regs enabled) and, optionally, coalesced PIO and
//! MMIO zones for the ranges the bus's devices declare coalescible
//! ([`picoqemu_core::IoBus::coalescible_ranges`]), registered lazily: a zone costs 13–17 ms at
//! VM destruction on our hosts, so a range gets one only once the guest has written to it (see
//! [`Vm::coalesce_port`], [`Vm::coalesce_mmio`]).
use std::sync::OnceLock;

use kvm_bindings::{kvm_cpuid_entry2, kvm_userspace_memory_region, CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Cap, IoEventAddress, Kvm, SyncReg, VcpuFd, VmFd};
use picoqemu_core::{CoalescibleRange, Space};

use picoqemu_core::RamHandle;

use crate::KvmError;

/// Page size used to align memslots.
const PAGE: u64 = 0x1000;
/// Where the (unused in real mode, required by VMX for it) TSS goes: just below 4 GiB, as QEMU does.
const TSS_ADDR: usize = 0xFFFB_D000;

/// Most coalescible ranges a VM tracks (bits of its registration mask); more are not coalesced.
const MAX_ZONES: usize = 32;

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
    /// The ranges whose writes may be coalesced (those the options allow and the host
    /// supports); each gets its zone on its first write.
    zones: Vec<CoalescibleRange>,
    /// Bit `i` set: `zones[i]` has a registered zone.
    registered: u32,
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
    /// `host_cpuid`) and enables sync regs. `zones` are the ranges whose writes may be
    /// coalesced; those the host cannot coalesce (no `KVM_CAP_COALESCED_PIO`/`_MMIO`) are
    /// dropped.
    pub fn new(
        ram: RamHandle,
        holes: &[(u64, u64)],
        a20_wrap: bool,
        zones: &[CoalescibleRange],
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
        let pio = kvm.check_extension(Cap::CoalescedPio);
        let mmio = kvm.check_extension(Cap::CoalescedMmio);
        let zones = zones
            .iter()
            .filter(|z| z.len > 0 && u32::try_from(z.len).is_ok())
            .filter(|z| match z.space {
                Space::Pio => pio,
                Space::Mmio => mmio,
            })
            .take(MAX_ZONES)
            .copied()
            .collect();
        let run_size = kvm.get_vcpu_mmap_size().map_err(KvmError::ioctl("KVM_GET_VCPU_MMAP_SIZE"))?;
        Ok(Vm { vm, vcpu, zones, registered: 0, run_size, ram })
    }

    /// Whether some port range may be coalesced.
    pub fn coalesces_pio(&self) -> bool {
        self.zones.iter().any(|z| z.space == Space::Pio)
    }

    /// Whether some MMIO range may be coalesced.
    pub fn coalesces_mmio(&self) -> bool {
        self.zones.iter().any(|z| z.space == Space::Mmio)
    }

    /// True when `port` lies in a coalescible port range that has no zone yet (cheap:
    /// checked on every port-write exit).
    #[inline]
    pub fn wants_zone(&self, port: u16) -> bool {
        unregistered_zone(&self.zones, self.registered, Space::Pio, u64::from(port), 1).is_some()
    }

    /// Registers the coalesced zone of `port`'s range (mapping the vCPU's ring first) when
    /// [`Vm::wants_zone`] says so; later writes that fit in it go to the ring instead of
    /// exiting. Returns whether a zone was registered now.
    pub fn coalesce_port(&mut self, port: u16) -> Result<bool, KvmError> {
        match unregistered_zone(&self.zones, self.registered, Space::Pio, u64::from(port), 1) {
            Some(i) => self.register(i).map(|()| true),
            None => Ok(false),
        }
    }

    /// True when `[addr, addr + len)` lies in a coalescible MMIO range that has no zone yet
    /// (cheap: checked on every MMIO-write exit).
    #[inline]
    pub fn wants_mmio_zone(&self, addr: u64, len: usize) -> bool {
        unregistered_zone(&self.zones, self.registered, Space::Mmio, addr, len).is_some()
    }

    /// Registers the coalesced MMIO zone that this write fits (mapping the vCPU's ring first)
    /// when [`Vm::wants_mmio_zone`] says so; later writes that fit inside the zone go to the
    /// ring instead of exiting (reads of it still exit). Returns whether a zone was
    /// registered now.
    pub fn coalesce_mmio(&mut self, addr: u64, len: usize) -> Result<bool, KvmError> {
        match unregistered_zone(&self.zones, self.registered, Space::Mmio, addr, len) {
            Some(i) => self.register(i).map(|()| true),
            None => Ok(false),
        }
    }

    fn register(&mut self, i: usize) -> Result<(), KvmError> {
        let z = self.zones[i];
        let size = u32::try_from(z.len)
            .map_err(|_| KvmError::Memory(format!("coalesced range of {:#x} bytes is too large", z.len)))?;
        self.vcpu.map_coalesced_mmio_ring().map_err(KvmError::ioctl("mmap of the coalesced MMIO ring"))?;
        let (addr, what) = match z.space {
            Space::Pio => (IoEventAddress::Pio(z.base), "KVM_REGISTER_COALESCED_MMIO (PIO)"),
            Space::Mmio => (IoEventAddress::Mmio(z.base), "KVM_REGISTER_COALESCED_MMIO"),
        };
        self.vm.register_coalesced_mmio(addr, size).map_err(KvmError::ioctl(what))?;
        self.registered |= 1 << i;
        Ok(())
    }

    /// The first registered coalesced MMIO zone `(base, len)`, if any.
    pub fn coalesced_mmio_zone(&self) -> Option<(u64, u64)> {
        self.registered_zones(Space::Mmio).next().map(|z| (z.base, z.len))
    }

    /// Whether any zone is registered (only then can the ring hold entries).
    #[inline]
    pub fn ring_active(&self) -> bool {
        self.registered != 0
    }

    /// The first ports of the port ranges that have a registered zone, in the bus's order.
    pub fn coalesced_zones(&self) -> Vec<u16> {
        self.registered_zones(Space::Pio).map(|z| z.base as u16).collect()
    }

    fn registered_zones(&self, space: Space) -> impl Iterator<Item = &CoalescibleRange> {
        let registered = self.registered;
        self.zones
            .iter()
            .enumerate()
            .filter(move |&(i, z)| z.space == space && registered & (1 << i) != 0)
            .map(|(_, z)| z)
    }
}

/// The index of the zone of `space` that a write of `len` bytes at `addr` fits entirely and
/// that is not in `registered` yet.
#[inline]
fn unregistered_zone(
    zones: &[CoalescibleRange],
    registered: u32,
    space: Space,
    addr: u64,
    len: usize,
) -> Option<usize> {
    zones
        .iter()
        .enumerate()
        .position(|(i, z)| registered & (1 << i) == 0 && z.space == space && fits((z.base, z.len), addr, len))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_come_from_the_bus_and_register_once() {
        let zones = picoqemu_core::IoBus::capturing().coalescible_ranges();
        let pio = |port: u16, reg| unregistered_zone(&zones, reg, Space::Pio, u64::from(port), 1);
        assert_eq!((pio(0xE9, 0), pio(0x3F8, 0)), (Some(0), Some(1)), "the debug console, then COM1's THR");
        for port in [0xF4, 0x3F9, 0x3FD, 0x80, 0xE8] {
            assert_eq!(pio(port, 0), None, "{port:#x}");
        }
        assert_eq!((pio(0xE9, 1), pio(0x3F8, 1)), (None, Some(1)), "a registered zone is not wanted again");
        assert_eq!(unregistered_zone(&zones, 0, Space::Pio, 0xE9, 2), None, "a word write does not fit");
        assert_eq!(unregistered_zone(&zones, 0, Space::Mmio, 0xE9, 1), None, "spaces differ");
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
