//! Where a character device's output goes: the host's stdout/stderr, a capture buffer, or
//! nowhere. Every sink also keeps a copy of what it was given when capture is on, so tests
//! and the differential tester can compare device output. The copy is bounded: the first
//! [`CAPTURE_CAP`] bytes are kept, and a count and a 64-bit hash of *everything* let two
//! captures be compared exactly ([`Sink::capture_digest`]) however much a guest writes.
use std::io::Write;

/// How many bytes a capturing sink keeps (later bytes are only counted and hashed).
pub const CAPTURE_CAP: usize = 1 << 20;

/// The length and a 64-bit FNV-1a hash of everything a capturing sink was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CaptureDigest {
    /// Bytes written in all (kept or not).
    pub len: u64,
    /// FNV-1a 64 hash of every byte written.
    pub hash: u64,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Default for CaptureDigest {
    fn default() -> Self {
        CaptureDigest { len: 0, hash: FNV_OFFSET }
    }
}

/// A bounded record of a sink's output.
#[derive(Debug, Default)]
struct Capture {
    head: Vec<u8>,
    cap: usize,
    digest: CaptureDigest,
}

impl Capture {
    fn new(cap: usize) -> Self {
        Capture { head: Vec::new(), cap, digest: CaptureDigest::default() }
    }
    fn push(&mut self, byte: u8) {
        if self.head.len() < self.cap {
            self.head.push(byte);
        }
        self.digest.len += 1;
        self.digest.hash = (self.digest.hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME);
    }
    fn clear(&mut self) {
        self.head.clear();
        self.digest = CaptureDigest::default();
    }
}

/// A byte destination for device output.
#[derive(Debug, Default)]
pub struct Sink {
    target: SinkTarget,
    captured: Option<Capture>,
    pending: Vec<u8>,
    /// The first error writing to the host; once set, host output stops (it would fail again).
    error: Option<String>,
}

/// The host side of a [`Sink`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum SinkTarget {
    /// Dropped (still captured when capture is on).
    #[default]
    Null,
    /// The process's standard output.
    Stdout,
    /// The process's standard error.
    Stderr,
}

impl Sink {
    /// A sink writing to `target`.
    pub fn new(target: SinkTarget) -> Self {
        Sink { target, captured: None, pending: Vec::new(), error: None }
    }
    /// A sink that only records (the first [`CAPTURE_CAP`] bytes, and a digest of all).
    pub fn capture() -> Self {
        Self::capture_capped(CAPTURE_CAP)
    }
    /// A sink that only records, keeping the first `cap` bytes (and a digest of all).
    pub fn capture_capped(cap: usize) -> Self {
        Sink { target: SinkTarget::Null, captured: Some(Capture::new(cap)), pending: Vec::new(), error: None }
    }
    /// Also record everything written from now on (bounded as [`Sink::capture`]).
    pub fn with_capture(mut self) -> Self {
        self.captured = Some(Capture::new(CAPTURE_CAP));
        self
    }
    /// Where the sink writes.
    pub fn target(&self) -> SinkTarget {
        self.target
    }

    /// Sends one byte. Host output is line buffered: it is written at each newline and at
    /// [`Sink::flush`] (the machine flushes at the end of every run).
    pub fn put(&mut self, byte: u8) {
        if let Some(c) = &mut self.captured {
            c.push(byte);
        }
        if self.target != SinkTarget::Null && self.error.is_none() {
            self.pending.push(byte);
            if byte == b'\n' || self.pending.len() >= 4096 {
                self.flush();
            }
        }
    }

    /// Writes pending host output. An error writing to the host (a full disk, a closed pipe)
    /// is not the guest's business: it is recorded ([`Sink::write_error`]) for the caller to
    /// report, and later output is dropped.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let written = match self.target {
            SinkTarget::Null => Ok(()),
            SinkTarget::Stdout => {
                let mut o = std::io::stdout().lock();
                o.write_all(&self.pending).and_then(|_| o.flush())
            }
            SinkTarget::Stderr => {
                let mut o = std::io::stderr().lock();
                o.write_all(&self.pending).and_then(|_| o.flush())
            }
        };
        if let Err(e) = written {
            self.error.get_or_insert_with(|| e.to_string());
        }
        self.pending.clear();
    }

    /// The first error writing this sink's output to the host, if any.
    pub fn write_error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The bytes recorded so far: everything, or its first [`CAPTURE_CAP`] bytes when the
    /// guest wrote more (see [`Sink::capture_truncated`]); empty when capture is off.
    pub fn captured(&self) -> &[u8] {
        self.captured.as_ref().map_or(&[], |c| c.head.as_slice())
    }

    /// The count and hash of everything given to this sink since capture began (or the last
    /// reset): equal digests mean equal output, beyond the kept bytes too.
    pub fn capture_digest(&self) -> CaptureDigest {
        self.captured.as_ref().map(|c| c.digest).unwrap_or_default()
    }

    /// Whether output beyond the kept bytes was only counted and hashed.
    pub fn capture_truncated(&self) -> bool {
        self.captured.as_ref().is_some_and(|c| c.digest.len > c.head.len() as u64)
    }

    /// Drops recorded and pending output (used when a machine is reset for reuse).
    pub fn reset(&mut self) {
        if let Some(c) = &mut self.captured {
            c.clear();
        }
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_records_bytes() {
        let mut s = Sink::capture();
        for b in b"hi\n" {
            s.put(*b);
        }
        assert_eq!(s.captured(), b"hi\n");
        s.reset();
        assert_eq!(s.captured(), b"");
        let mut n = Sink::new(SinkTarget::Null);
        n.put(b'x');
        assert_eq!(n.captured(), b"");
    }

    fn fed(cap: usize, bytes: impl IntoIterator<Item = u8>) -> Sink {
        let mut s = Sink::capture_capped(cap);
        for b in bytes {
            s.put(b);
        }
        s
    }

    #[test]
    fn capped_capture_keeps_the_head_and_compares_everything() {
        let stream = |last: u8| (0..10_000u32).map(|i| i as u8).chain([last]);
        let a = fed(64, stream(1));
        let b = fed(64, stream(1));
        let c = fed(64, stream(2));
        assert_eq!(a.captured().len(), 64);
        assert_eq!(a.captured(), &stream(1).take(64).collect::<Vec<_>>()[..]);
        assert!(a.capture_truncated());
        assert_eq!(a.capture_digest(), b.capture_digest());
        assert_eq!(a.capture_digest().len, 10_001);
        // Same kept bytes, different beyond the cap.
        assert_eq!(a.captured(), c.captured());
        assert_ne!(a.capture_digest(), c.capture_digest());
        // Same content, one byte longer.
        let d = fed(64, stream(1).chain([0]));
        assert_ne!(a.capture_digest(), d.capture_digest());
    }

    #[test]
    fn capture_within_the_cap_is_exact_and_reset_clears_the_digest() {
        let mut s = fed(CAPTURE_CAP, *b"abc");
        assert!(!s.capture_truncated());
        assert_eq!(s.captured(), b"abc");
        assert_eq!(s.capture_digest(), fed(8, *b"abc").capture_digest());
        s.reset();
        assert_eq!(s.capture_digest(), CaptureDigest::default());
        assert_eq!(s.capture_digest(), Sink::new(SinkTarget::Null).capture_digest());
    }

    #[test]
    fn a_flood_keeps_at_most_the_cap() {
        let s = fed(CAPTURE_CAP, std::iter::repeat_n(b'A', 3 * CAPTURE_CAP));
        assert_eq!(s.captured().len(), CAPTURE_CAP);
        assert_eq!(s.capture_digest().len, 3 * CAPTURE_CAP as u64);
    }
}
