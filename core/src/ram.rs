//! Guest RAM: one anonymous mapping from vm-memory, starting at guest physical address 0.
//!
//! Both backends use this one allocation: the KVM backend registers it as a memslot (through
//! [`GuestRam::host_address`]) and the interpreter indexes it directly as a byte slice. This
//! module holds the only `unsafe` code of the core crate: the two byte views of the mapping.
#![allow(unsafe_code)]

use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::error::CoreError;

/// Largest guest RAM we accept (real mode reaches 1 MiB + 64 KiB; more only costs memory).
pub const MAX_MEM_SIZE: usize = 1 << 30;

/// Guest physical memory `[0, len)`.
#[derive(Debug)]
pub struct GuestRam {
    mem: GuestMemoryMmap,
    host: *mut u8,
    len: usize,
}

// SAFETY-relevant note for reviewers: `GuestRam` is not `Sync`/`Send` automatically because of
// the raw pointer; it does not need to be shared across threads.

impl GuestRam {
    /// Maps `size` bytes of zeroed guest RAM. `size` must be a multiple of 4 KiB between
    /// [`crate::MIN_MEM_SIZE`] and [`MAX_MEM_SIZE`].
    pub fn new(size: usize) -> Result<Self, CoreError> {
        if !(crate::MIN_MEM_SIZE..=MAX_MEM_SIZE).contains(&size) || !size.is_multiple_of(4096) {
            return Err(CoreError::BadMemSize { size, min: crate::MIN_MEM_SIZE, max: MAX_MEM_SIZE });
        }
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), size)])
            .map_err(|e| CoreError::RamAlloc { size, reason: e.to_string() })?;
        let host = {
            let region = mem
                .iter()
                .next()
                .ok_or_else(|| CoreError::RamAlloc { size, reason: "no region was mapped".into() })?;
            region
                .get_host_address(vm_memory::MemoryRegionAddress(0))
                .map_err(|e| CoreError::RamAlloc { size, reason: e.to_string() })?
        };
        Ok(GuestRam { mem, host, len: size })
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: guest RAM is at least [`crate::MIN_MEM_SIZE`] bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Host virtual address of guest physical address 0, for registering a KVM memslot.
    /// The mapping is page aligned and stays valid as long as `self` lives.
    pub fn host_address(&self) -> *mut u8 {
        self.host
    }

    /// The vm-memory object behind this RAM.
    pub fn guest_memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// All of guest RAM as bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `host` points at the start of a live anonymous mapping of `len` bytes owned
        // by `self.mem`, which is neither unmapped nor resized while `self` lives. The shared
        // borrow of `self` ends before any `&mut self` method (including the KVM backend's run,
        // which takes `&mut Machine`) can write through the mapping.
        unsafe { std::slice::from_raw_parts(self.host, self.len) }
    }

    /// All of guest RAM as mutable bytes.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; the exclusive borrow of `self` guarantees that no other
        // Rust reference into the mapping exists while the returned slice lives. The KVM
        // backend only enters KVM_RUN while it holds `&mut Machine`, so the kernel never
        // writes the mapping while this slice is alive.
        unsafe { std::slice::from_raw_parts_mut(self.host, self.len) }
    }

    /// Copies guest bytes at `addr` into `buf`.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), CoreError> {
        let r = self.range(addr, buf.len())?;
        buf.copy_from_slice(&self.as_slice()[r]);
        Ok(())
    }

    /// Copies `buf` into guest RAM at `addr`.
    pub fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), CoreError> {
        let r = self.range(addr, buf.len())?;
        self.as_mut_slice()[r].copy_from_slice(buf);
        Ok(())
    }

    /// Zeroes all of guest RAM.
    pub fn clear(&mut self) {
        self.as_mut_slice().fill(0);
    }

    fn range(&self, addr: u64, len: usize) -> Result<std::ops::Range<usize>, CoreError> {
        let start = usize::try_from(addr).ok();
        match start.and_then(|s| s.checked_add(len).map(|e| (s, e))) {
            Some((s, e)) if e <= self.len => Ok(s..e),
            _ => Err(CoreError::OutOfRange { addr, len, size: self.len }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_sizes() {
        assert!(GuestRam::new(4096).is_err());
        assert!(GuestRam::new(crate::MIN_MEM_SIZE + 1).is_err());
        assert!(GuestRam::new(MAX_MEM_SIZE + 4096).is_err());
    }

    #[test]
    fn read_write_and_bounds() {
        let mut ram = GuestRam::new(crate::MIN_MEM_SIZE).unwrap();
        assert_eq!(ram.len(), 0x11_0000);
        assert_eq!(ram.host_address() as usize % 4096, 0);
        ram.write(0x10_FFEF, &[0xAB]).unwrap();
        let mut b = [0u8; 1];
        ram.read(0x10_FFEF, &mut b).unwrap();
        assert_eq!(b[0], 0xAB);
        assert_eq!(ram.as_slice()[0x10_FFEF], 0xAB);
        assert!(ram.write(0x10_FFFF, &[1, 2]).is_err());
        assert!(ram.read(u64::MAX, &mut b).is_err());
        ram.clear();
        assert_eq!(ram.as_slice()[0x10_FFEF], 0);
    }
}
