//! The data of the port-I/O or MMIO exit just taken, re-derived from a fresh `&mut kvm_run`.
//!
//! The run loop never keeps a pointer into `kvm_run` across another borrow of it (draining the
//! coalesced ring, reading registers): the exit it records is plain data, and the handler asks
//! here for the data area, as a slice that borrows the `kvm_run` it was derived from.
use kvm_bindings::{kvm_run, KVM_EXIT_IO, KVM_EXIT_MMIO};

use crate::exits;

/// The access width and the data area (`size * count` bytes at `kvm_run.io.data_offset`) of
/// the `KVM_EXIT_IO` just taken. `run_size` is the size of the vCPU's `kvm_run` mapping and
/// `len` the data length kvm-ioctls reported for the exit (both checked against
/// `kvm_run.io`; kvm-ioctls alone loses the width of string I/O, rust-vmm/kvm#371).
pub fn pio(run: &mut kvm_run, run_size: usize, len: usize) -> Result<(usize, &mut [u8]), String> {
    if run.exit_reason != KVM_EXIT_IO {
        return Err(format!("port-I/O data asked for after exit reason {}", run.exit_reason));
    }
    // SAFETY: the exit reason is KVM_EXIT_IO, so `io` is the active member of the exit union
    // (plain integers, any bit pattern valid).
    let io = unsafe { run.__bindgen_anon_1.io };
    let width = exits::io_width(io.size, io.count, len)?;
    let offset = usize::try_from(io.data_offset).unwrap_or(usize::MAX);
    if offset.checked_add(len).is_none_or(|end| end > run_size) || offset < std::mem::size_of::<kvm_run>() {
        return Err(format!(
            "KVM_EXIT_IO data at offset {offset:#x} (+{len:#x}) lies outside the {run_size:#x}-byte kvm_run mapping"
        ));
    }
    let base: *mut kvm_run = run;
    // SAFETY: `run` is the start of the vCPU's kvm_run mapping of `run_size` bytes (kvm-ioctls
    // maps `KVM_GET_VCPU_MMAP_SIZE` bytes and hands out `&mut kvm_run` to its start), and
    // `[offset, offset + len)` was checked to lie inside it, after the `kvm_run` struct, so
    // the slice overlaps no other field. It is derived from the exclusive borrow `run` and
    // borrows it, so nothing else can reach the mapping while the slice lives; the kernel
    // only touches the area inside the next KVM_RUN. Offsetting from `&mut kvm_run` into the
    // rest of the mapping is how kvm-ioctls' own `VcpuFd::run` builds this slice.
    let data = unsafe { std::slice::from_raw_parts_mut(base.cast::<u8>().add(offset), len) };
    Ok((width, data))
}

/// The guest-physical address and the data bytes (`kvm_run.mmio.data[..len]`, at most 8) of
/// the `KVM_EXIT_MMIO` read just taken; KVM hands the bytes to the guest on the next KVM_RUN.
pub fn mmio_read(run: &mut kvm_run) -> Result<(u64, &mut [u8]), String> {
    if run.exit_reason != KVM_EXIT_MMIO {
        return Err(format!("MMIO data asked for after exit reason {}", run.exit_reason));
    }
    // SAFETY: the exit reason is KVM_EXIT_MMIO, so `mmio` is the active member of the exit
    // union (plain integers and bytes, any bit pattern valid).
    let mmio = unsafe { &mut run.__bindgen_anon_1.mmio };
    let len = mmio.len as usize;
    match mmio.data.get_mut(..len) {
        Some(data) if mmio.is_write == 0 && len > 0 => Ok((mmio.phys_addr, data)),
        _ => Err(format!("KVM_EXIT_MMIO read of {len} bytes (write flag {}) is malformed", mmio.is_write)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_a_mismatched_exit() {
        let mut run = kvm_run { exit_reason: KVM_EXIT_MMIO, ..Default::default() };
        assert!(pio(&mut run, 4096, 1).unwrap_err().contains("exit reason"));
        run.exit_reason = KVM_EXIT_IO;
        assert!(mmio_read(&mut run).unwrap_err().contains("exit reason"));
    }

    #[test]
    fn mmio_read_bounds_its_length() {
        let mut run = kvm_run { exit_reason: KVM_EXIT_MMIO, ..Default::default() };
        run.__bindgen_anon_1.mmio.len = 9;
        run.__bindgen_anon_1.mmio.phys_addr = 0xD0004;
        assert!(mmio_read(&mut run).is_err());
        run.__bindgen_anon_1.mmio.len = 4;
        let (addr, data) = mmio_read(&mut run).unwrap();
        assert_eq!((addr, data.len()), (0xD0004, 4));
    }

    #[test]
    fn pio_checks_shape_and_bounds_before_touching_data() {
        let mut run = kvm_run { exit_reason: KVM_EXIT_IO, ..Default::default() };
        run.__bindgen_anon_1.io.size = 2;
        run.__bindgen_anon_1.io.count = 3;
        run.__bindgen_anon_1.io.data_offset = 4096;
        assert!(pio(&mut run, 8192, 5).unwrap_err().contains("does not match"));
        assert!(pio(&mut run, 4100, 6).unwrap_err().contains("outside"));
        // An offset inside the struct itself is refused.
        run.__bindgen_anon_1.io.data_offset = 8;
        assert!(pio(&mut run, 8192, 6).unwrap_err().contains("outside"));
    }
}
