//! Guest RAM: one anonymous vm-memory mapping, starting at guest physical address 0.
//!
//! Both backends use this one allocation. Ownership and access rules, which make it impossible
//! for safe code to change bytes under a live Rust reference:
//! - [`GuestRam`] owns the mapping; it is not `Clone`, and the `GuestMemoryMmap` inside is never
//!   handed out (a clone of it would share the mapping).
//! - Byte views exist only through `&mut GuestRam` ([`GuestRam::as_mut_slice`],
//!   [`GuestRam::bytes`]): while one lives, nothing else can read or write the RAM.
//! - Through `&GuestRam` there are only copying accessors built on vm-memory's [`Bytes`] trait
//!   (volatile copies: [`GuestRam::read`], [`GuestRam::to_vec`], [`GuestRam::content_eq`]).
//! - [`RamHandle`] keeps the mapping alive for the KVM backend, which registers it as a memslot,
//!   and identifies it; it gives no access to the bytes. The kernel writes the mapping only
//!   inside `KVM_RUN`, which the backend enters while holding `&mut Machine` for this RAM.
//!
//! This module holds the only `unsafe` code of the core crate: the `&mut` byte view.
#![allow(unsafe_code)]

use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

use crate::error::CoreError;

/// Largest guest RAM we accept (real mode reaches 1 MiB + 64 KiB; more only costs memory).
pub const MAX_MEM_SIZE: usize = 1 << 30;

/// Bytes compared per chunk by [`GuestRam::content_eq`] (on the stack, no allocation).
const CHUNK: usize = 4096;

/// Guest physical memory `[0, len)`.
#[derive(Debug)]
pub struct GuestRam {
    /// The vm-memory view used for the copying accessors; its one region is `mapping`.
    mem: GuestMemoryMmap,
    /// The anonymous mapping itself, shared only with [`RamHandle`]s.
    mapping: Arc<MmapRegion>,
    len: usize,
}

/// Keeps a [`GuestRam`]'s mapping alive and names it, without access to its bytes.
///
/// The KVM backend holds one for as long as its VM exists (so the memslot never points at
/// unmapped or recycled memory) and accepts a machine only if its RAM is the one this handle
/// names ([`RamHandle::is_ram_of`]): identity, not host address, so a new machine whose RAM
/// happens to be mapped at the same address is refused.
#[derive(Debug, Clone)]
pub struct RamHandle {
    mapping: Arc<MmapRegion>,
}

impl RamHandle {
    /// Host virtual address of guest physical address 0 (page aligned), for registering a KVM
    /// memslot. The mapping stays valid while this handle lives. Writing through it is
    /// allowed only while no `&mut GuestRam` byte view exists, i.e. while the caller holds
    /// the owning machine exclusively.
    pub fn host_address(&self) -> *mut u8 {
        self.mapping.as_ptr()
    }

    /// Size of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.mapping.size()
    }

    /// Always false: guest RAM is at least [`crate::MIN_MEM_SIZE`] bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when `ram` is the RAM this handle keeps alive.
    pub fn is_ram_of(&self, ram: &GuestRam) -> bool {
        Arc::ptr_eq(&self.mapping, &ram.mapping)
    }
}

impl GuestRam {
    /// Maps `size` bytes of zeroed guest RAM. `size` must be a multiple of 4 KiB between
    /// [`crate::MIN_MEM_SIZE`] and [`MAX_MEM_SIZE`].
    pub fn new(size: usize) -> Result<Self, CoreError> {
        if !(crate::MIN_MEM_SIZE..=MAX_MEM_SIZE).contains(&size) || !size.is_multiple_of(4096) {
            return Err(CoreError::BadMemSize { size, min: crate::MIN_MEM_SIZE, max: MAX_MEM_SIZE });
        }
        let alloc = |reason: String| CoreError::RamAlloc { size, reason };
        let mapping = Arc::new(MmapRegion::new(size).map_err(|e| alloc(e.to_string()))?);
        let region = GuestRegionMmap::with_arc(Arc::clone(&mapping), GuestAddress(0))
            .ok_or_else(|| alloc("the mapping does not fit the guest address space".into()))?;
        let mem = GuestMemoryMmap::from_regions(vec![region]).map_err(|e| alloc(e.to_string()))?;
        Ok(GuestRam { mem, mapping, len: size })
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: guest RAM is at least [`crate::MIN_MEM_SIZE`] bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A handle that keeps this RAM's mapping alive and identifies it (for the KVM backend).
    pub fn handle(&self) -> RamHandle {
        RamHandle { mapping: Arc::clone(&self.mapping) }
    }

    /// All of guest RAM as mutable bytes.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `mapping` is a live anonymous mapping of `len` bytes, never unmapped or
        // resized while `self` (which holds an `Arc` of it) lives. Nothing else creates a Rust
        // reference into it: `&self` methods only make volatile copies through vm-memory, the
        // `GuestMemoryMmap` is private and never cloned out, and `RamHandle` gives no access.
        // The exclusive borrow of `self` therefore excludes every other access through Rust
        // while the slice lives; the KVM backend enters `KVM_RUN` (the only time the kernel
        // writes the mapping) only while it holds `&mut Machine`, hence `&mut` of this RAM.
        unsafe { std::slice::from_raw_parts_mut(self.mapping.as_ptr(), self.len) }
    }

    /// All of guest RAM as bytes, for reading. It takes `&mut self` so that nothing can write
    /// the RAM while the view lives; with only `&self`, use the copying accessors.
    pub fn bytes(&mut self) -> &[u8] {
        self.as_mut_slice()
    }

    /// Copies guest bytes at `addr` into `buf` (vm-memory's [`Bytes::read_slice`]).
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), CoreError> {
        self.range(addr, buf.len())?;
        self.mem.read_slice(buf, GuestAddress(addr)).map_err(|_| CoreError::OutOfRange {
            addr,
            len: buf.len(),
            size: self.len,
        })
    }

    /// The guest byte at `addr`.
    pub fn read_u8(&self, addr: u64) -> Result<u8, CoreError> {
        let mut b = [0u8; 1];
        self.read(addr, &mut b)?;
        Ok(b[0])
    }

    /// A copy of `len` guest bytes at `addr`.
    pub fn read_vec(&self, addr: u64, len: usize) -> Result<Vec<u8>, CoreError> {
        let mut v = vec![0u8; len];
        self.read(addr, &mut v)?;
        Ok(v)
    }

    /// A copy of all of guest RAM (a snapshot, for comparing or rendering from `&self`).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.len];
        // The range is all of RAM: it cannot be out of bounds.
        let _ = self.read(0, &mut v);
        v
    }

    /// True when `self` and `other` hold the same bytes (sizes included). Compares chunk by
    /// chunk through two stack buffers: no allocation, however large the RAM.
    pub fn content_eq(&self, other: &GuestRam) -> bool {
        if self.len != other.len {
            return false;
        }
        let (mut a, mut b) = ([0u8; CHUNK], [0u8; CHUNK]);
        (0..self.len).step_by(CHUNK).all(|at| {
            let n = CHUNK.min(self.len - at);
            let ok = self.read(at as u64, &mut a[..n]).and(other.read(at as u64, &mut b[..n]));
            ok.is_ok() && a[..n] == b[..n]
        })
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
        assert_eq!(ram.handle().host_address() as usize % 4096, 0);
        ram.write(0x10_FFEF, &[0xAB]).unwrap();
        let mut b = [0u8; 1];
        ram.read(0x10_FFEF, &mut b).unwrap();
        assert_eq!(b[0], 0xAB);
        assert_eq!(ram.read_u8(0x10_FFEF).unwrap(), 0xAB);
        assert_eq!(ram.bytes()[0x10_FFEF], 0xAB);
        assert_eq!(ram.read_vec(0x10_FFEE, 2).unwrap(), [0, 0xAB]);
        assert!(ram.write(0x10_FFFF, &[1, 2]).is_err());
        assert!(ram.read(u64::MAX, &mut b).is_err());
        assert!(ram.read(0x10_FFFF, &mut [0u8; 2]).is_err());
        ram.clear();
        assert_eq!(ram.read_u8(0x10_FFEF).unwrap(), 0);
    }

    #[test]
    fn content_eq_and_snapshot() {
        let mut a = GuestRam::new(crate::MIN_MEM_SIZE).unwrap();
        let mut b = GuestRam::new(crate::MIN_MEM_SIZE).unwrap();
        assert!(a.content_eq(&b));
        a.write(0x10_FFFF, &[1]).unwrap();
        assert!(!a.content_eq(&b));
        b.write(0x10_FFFF, &[1]).unwrap();
        assert!(a.content_eq(&b));
        assert!(!a.content_eq(&GuestRam::new(crate::MIN_MEM_SIZE + 4096).unwrap()));
        let snap = a.to_vec();
        assert_eq!((snap.len(), snap[0x10_FFFF]), (a.len(), 1));
    }

    #[test]
    fn handle_names_its_ram_only() {
        let a = GuestRam::new(crate::MIN_MEM_SIZE).unwrap();
        let h = a.handle();
        assert!(h.is_ram_of(&a));
        assert_eq!(h.len(), a.len());
        let addr = h.host_address();
        drop(a);
        // The handle keeps the mapping: a new RAM cannot be mapped at the same address.
        let b = GuestRam::new(crate::MIN_MEM_SIZE).unwrap();
        assert!(!h.is_ram_of(&b));
        assert_ne!(b.handle().host_address(), addr);
    }
}
