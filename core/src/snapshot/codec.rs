//! The byte-level encoding of snapshot sections: [`StateWriter`] appends little-endian
//! fields, [`StateReader`] reads them back and reports a short section as
//! [`SnapshotError::Truncated`] (never a panic, whatever the input).
use super::SnapshotError;

/// Appends little-endian fields to a section's payload.
#[derive(Debug, Default, Clone)]
pub struct StateWriter {
    buf: Vec<u8>,
}

impl StateWriter {
    pub fn new() -> Self {
        StateWriter::default()
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// `None` as a 0 byte, `Some(v)` as a 1 byte and `v`.
    pub fn opt_u64(&mut self, v: Option<u64>) {
        self.bool(v.is_some());
        if let Some(v) = v {
            self.u64(v);
        }
    }
    /// A byte string: its length (u32) and its bytes.
    pub fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
    }
    /// Bytes with no length prefix (the reader must know how many).
    pub fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    /// The payload written so far.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }
    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads the fields of one section's payload.
#[derive(Debug, Clone)]
pub struct StateReader<'a> {
    data: &'a [u8],
    pos: usize,
    /// The section's name, for errors.
    section: String,
}

impl<'a> StateReader<'a> {
    pub fn new(section: impl Into<String>, data: &'a [u8]) -> Self {
        StateReader { data, pos: 0, section: section.into() }
    }

    /// The section's name (for errors a device reports).
    pub fn section(&self) -> &str {
        &self.section
    }

    /// An [`SnapshotError::Invalid`] for this section.
    pub fn invalid(&self, reason: impl Into<String>) -> SnapshotError {
        SnapshotError::Invalid { section: self.section.clone(), reason: reason.into() }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or_else(|| {
            SnapshotError::Truncated { what: format!("section {} ends early", self.section) }
        })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.take(1)?[0])
    }
    /// A bool stored as 0 or 1 (anything else is invalid).
    pub fn bool(&mut self) -> Result<bool, SnapshotError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(self.invalid(format!("{v} is not a boolean"))),
        }
    }
    pub fn u16(&mut self) -> Result<u16, SnapshotError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn opt_u64(&mut self) -> Result<Option<u64>, SnapshotError> {
        Ok(if self.bool()? { Some(self.u64()?) } else { None })
    }
    /// A length-prefixed byte string of at most `max` bytes.
    pub fn bytes(&mut self, max: usize) -> Result<&'a [u8], SnapshotError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(self.invalid(format!("a field of {len} bytes is longer than the {max} allowed")));
        }
        self.take(len)
    }
    /// `n` bytes with no length prefix.
    pub fn raw(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        self.take(n)
    }
    /// Checks that the whole payload was read.
    pub fn finish(&self) -> Result<(), SnapshotError> {
        let left = self.data.len() - self.pos;
        if left != 0 {
            return Err(self.invalid(format!("{left} unexpected bytes at its end")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_short_input_is_truncated() {
        let mut w = StateWriter::new();
        w.u8(7);
        w.bool(true);
        w.u16(0xBEEF);
        w.u32(0xDEAD_BEEF);
        w.u64(u64::MAX - 1);
        w.opt_u64(None);
        w.opt_u64(Some(42));
        w.bytes(b"abc");
        let data = w.into_vec();
        let mut r = StateReader::new("test", &data);
        assert_eq!(r.u8().unwrap(), 7);
        assert!(r.bool().unwrap());
        assert_eq!(r.u16().unwrap(), 0xBEEF);
        assert_eq!(r.u32().unwrap(), 0xDEAD_BEEF);
        assert_eq!(r.u64().unwrap(), u64::MAX - 1);
        assert_eq!(r.opt_u64().unwrap(), None);
        assert_eq!(r.opt_u64().unwrap(), Some(42));
        assert_eq!(r.bytes(3).unwrap(), b"abc");
        r.finish().unwrap();
        assert!(matches!(r.u8(), Err(SnapshotError::Truncated { .. })));
        let mut short = StateReader::new("test", &data[..3]);
        short.u8().unwrap();
        short.bool().unwrap();
        assert!(matches!(short.u16(), Err(SnapshotError::Truncated { .. })));
        let mut bad = StateReader::new("test", &[2]);
        assert!(matches!(bad.bool(), Err(SnapshotError::Invalid { .. })));
        let mut long = StateReader::new("test", &data[26..]);
        assert!(long.bytes(2).is_err(), "a length above the maximum is refused");
    }
}
