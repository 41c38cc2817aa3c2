//! Executable memory for compiled blocks and the one call into them: the only `unsafe` code
//! in the interpreter crate.
//!
//! Why it exists: the interpreter tier tops out near 400 MIPS on the issue-6 compute loop
//! (`BENCHMARKS.md`, "Compiled blocks"); running hot loops as host code is what reaches the
//! 1,500 MIPS target. Everything that decides *what* the host code does is safe Rust in
//! `translate.rs`; this module only owns a mapping that is either writable or executable,
//! never both (W^X), and calls an entry point with a pointer to a [`JitCtx`].
#![allow(unsafe_code)]

use std::ptr::NonNull;

/// The state a compiled block reads at entry and writes at exit (layout shared with the
/// host code `translate.rs` emits: every offset it uses comes from `offset_of!`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct JitCtx {
    /// Guest EAX..EDI.
    pub regs: [u32; 8],
    /// Segment bases ES, CS, SS, DS, FS, GS (the block copies them and the tables after
    /// them into its stack frame at entry).
    pub seg_base: [u32; 6],
    /// Lookup tables copied into the frame: 24 bytes "offset wraps" by (end offset >> 12)
    /// at [`T_WRAP`], 16 bytes "read must exit" at [`T_READ`] and 16 bytes "write must exit"
    /// at [`T_WRITE`], both by page-flag value.
    pub tables: [u8; TABLES],
    /// In: guest EFLAGS status bits (plus bit 1). Out: the host RFLAGS at exit.
    pub flags: u64,
    /// Guest RAM base.
    pub ram: u64,
    /// Page-flag bytes, one per 4 KiB page, at least [`super::JIT_PAGES`] of them.
    pub pages: u64,
    /// In: instructions the block may retire. Out: what is left.
    pub budget: u64,
    /// Out: the next EIP as an offset from the block's first instruction.
    pub exit: u64,
    /// Per page, the 64-byte lines decoded code came from (a `u64` mask, one per page-flag
    /// byte): a store to a page whose only flag is `PG_CODE` may go ahead when it touches none.
    pub lines: u64,
}

/// Size of [`JitCtx::tables`].
pub const TABLES: usize = 56;
/// Offset of the "offset wraps" table in [`JitCtx::tables`] (24 entries).
pub const T_WRAP: usize = 0;
/// Offset of the "read must exit" table (16 entries, by page-flag value).
pub const T_READ: usize = 24;
/// Offset of the "write must exit" table (16 entries, by page-flag value): 0 go ahead, 1 exit,
/// [`W_CODE`] look at the page's code lines.
pub const T_WRITE: usize = 40;
/// "Write must exit" value of a page whose only flag is `PG_CODE`.
pub const W_CODE: u8 = 8;
const _: () = assert!(T_READ == T_WRAP + 24 && T_WRITE == T_READ + 16 && TABLES == T_WRITE + 16);

/// Why executable memory could not be set up or written.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("mmap of {0} bytes for compiled code failed: {1}")]
    Map(usize, std::io::Error),
    #[error("mprotect of the compiled-code buffer failed: {0}")]
    Protect(std::io::Error),
}

/// A fixed-size mapping holding compiled blocks back to back.
pub struct ExecBuf {
    ptr: NonNull<u8>,
    cap: usize,
    used: usize,
}

// SAFETY: the mapping is owned exclusively by this value (no aliasing pointers escape except
// entry addresses used through `&self`), so moving it to another thread is sound.
unsafe impl Send for ExecBuf {}

impl std::fmt::Debug for ExecBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecBuf").field("cap", &self.cap).field("used", &self.used).finish()
    }
}

impl ExecBuf {
    /// Maps `cap` bytes (read + execute until something is written).
    pub fn new(cap: usize) -> Result<ExecBuf, ExecError> {
        // SAFETY: an anonymous private mapping with no address hint touches no existing
        // memory; the result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                cap,
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(ExecError::Map(cap, std::io::Error::last_os_error()));
        }
        let ptr = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| ExecError::Map(cap, std::io::Error::last_os_error()))?;
        Ok(ExecBuf { ptr, cap, used: 0 })
    }

    /// Address the next appended code will have.
    pub fn next_addr(&self) -> u64 {
        self.ptr.as_ptr() as u64 + self.used as u64
    }

    /// Bytes still free.
    pub fn free(&self) -> usize {
        self.cap - self.used
    }

    /// Forgets every block (their entry offsets become invalid).
    pub fn clear(&mut self) {
        self.used = 0;
    }

    fn protect(&self, prot: libc::c_int) -> Result<(), ExecError> {
        // SAFETY: the range is exactly our own mapping.
        let r = unsafe { libc::mprotect(self.ptr.as_ptr().cast(), self.cap, prot) };
        if r != 0 {
            return Err(ExecError::Protect(std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Appends `code` (assembled for [`ExecBuf::next_addr`]) and returns its offset, or
    /// `Ok(None)` when it does not fit.
    pub fn append(&mut self, code: &[u8]) -> Result<Option<usize>, ExecError> {
        if code.len() > self.free() {
            return Ok(None);
        }
        self.protect(libc::PROT_READ | libc::PROT_WRITE)?;
        // SAFETY: `used + code.len() <= cap`, the mapping is writable now and nothing else
        // references these bytes (they were never handed out).
        unsafe {
            std::ptr::copy_nonoverlapping(code.as_ptr(), self.ptr.as_ptr().add(self.used), code.len());
        }
        // Leaving the buffer writable would break W^X; a failure here is reported.
        self.protect(libc::PROT_READ | libc::PROT_EXEC)?;
        let off = self.used;
        self.used += code.len();
        Ok(Some(off))
    }

    /// Runs the block at `off` on `ctx`.
    ///
    /// What the block does (guaranteed by `translate.rs`, which emits it): a System V function
    /// of one pointer argument that saves and restores every callee-saved register it uses,
    /// keeps the stack balanced, leaves DF clear, and touches only `*ctx`, its own stack
    /// frame, the flag bytes `ctx.pages[..JIT_PAGES]` (read) and guest RAM at
    /// `ctx.ram + linear` for linear addresses below `JIT_PAGES * 4096` whose page flag the
    /// tables in `ctx.tables` allow (read: not `PG_MMIO`/`PG_SLOW`; write: flag 0).
    ///
    /// # Safety
    /// The caller must guarantee that
    /// - `off` was returned by [`ExecBuf::append`] on `self` since the last [`ExecBuf::clear`];
    /// - `ctx.tables` is the table set `JitTier::new` builds (a slow or MMIO page always
    ///   exits);
    /// - `ctx.pages` points at at least `JIT_PAGES` readable flag bytes in which every page
    ///   that is not plain, in-bounds guest RAM carries `PG_SLOW` or `PG_MMIO` (a
    ///   `crate::pages::Pages` whose `ram_pages` RAM covers), and `ctx.ram` at that guest RAM,
    ///   writable;
    /// - nothing else reads or writes that RAM or those flag bytes during the call (the caller
    ///   holds them through `&mut`/`&` borrows that outlive it).
    pub unsafe fn call(&self, off: usize, ctx: &mut JitCtx) {
        debug_assert!(off < self.used);
        // SAFETY: by the caller's contract above, `off` starts a complete function emitted by
        // `translate.rs` in this mapping (executable, never written while mapped executable),
        // and every memory access it makes is inside `ctx`, its frame, the flag table or
        // plain guest RAM, none of which anything else touches during the call.
        unsafe {
            let f: extern "sysv64" fn(*mut JitCtx) =
                std::mem::transmute::<*const u8, extern "sysv64" fn(*mut JitCtx)>(self.ptr.as_ptr().add(off));
            f(ctx);
        }
    }
}

impl Drop for ExecBuf {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping this value owns; nothing uses it afterwards.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.cap);
        }
    }
}
