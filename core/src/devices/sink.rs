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
    /// The first error writing to the host; once set, host output stops (it would fail again).
    error: Option<String>,
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
        Sink { target, captured: None, pending: Vec::new(), error: None }
    }
    /// A sink that only records.
    pub fn capture() -> Self {
        Sink { target: SinkTarget::Null, captured: Some(Vec::new()), pending: Vec::new(), error: None }
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
