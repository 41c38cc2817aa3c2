//! Where a character device's output goes: the host's stdout/stderr, a capture buffer, or
//! nowhere. Every sink also keeps a copy of what it was given when capture is on, so tests
//! and the differential tester can compare device output.
use std::io::Write;

/// A byte destination for device output.
#[derive(Debug, Default)]
pub struct Sink {
    target: SinkTarget,
    captured: Option<Vec<u8>>,
    pending: Vec<u8>,
}

/// The host side of a [`Sink`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum SinkTarget {
    /// Dropped (still captured when capture is on).
    #[default]
    Null,
    Stdout,
    Stderr,
}

impl Sink {
    pub fn new(target: SinkTarget) -> Self {
        Sink { target, captured: None, pending: Vec::new() }
    }
    /// A sink that only records.
    pub fn capture() -> Self {
        Sink { target: SinkTarget::Null, captured: Some(Vec::new()), pending: Vec::new() }
    }
    /// Also record everything written from now on.
    pub fn with_capture(mut self) -> Self {
        self.captured = Some(Vec::new());
        self
    }
    pub fn target(&self) -> SinkTarget {
        self.target
    }

    /// Sends one byte. Host output is line buffered: it is written at each newline and at
    /// [`Sink::flush`] (the machine flushes at the end of every run).
    pub fn put(&mut self, byte: u8) {
        if let Some(c) = &mut self.captured {
            c.push(byte);
        }
        if self.target != SinkTarget::Null {
            self.pending.push(byte);
            if byte == b'\n' || self.pending.len() >= 4096 {
                self.flush();
            }
        }
    }

    /// Writes pending host output. Errors writing to the host (a closed pipe) are ignored:
    /// the guest cannot do anything about them.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let _ = match self.target {
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
        self.pending.clear();
    }

    /// Everything recorded so far (empty when capture is off).
    pub fn captured(&self) -> &[u8] {
        self.captured.as_deref().unwrap_or(&[])
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
}
