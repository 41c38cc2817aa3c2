//! Reader for the SingleStepTests MOO format (plain or gzip-compressed): the `MOO ` header, the
//! optional `META` chunk and the `TEST` chunks, one test at a time (streaming: only one test's
//! bytes are held in memory, so the full upstream files work as well as the shared slice).
//!
//! Every malformed input is a [`MooError`], never a panic: chunk lengths are checked against the
//! bytes actually present and against a sanity bound before anything is allocated.
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use flate2::read::GzDecoder;
use thiserror::Error;

/// Largest chunk payload we accept (a real `TEST` chunk is a few KiB; this only guards memory).
const MAX_CHUNK: u32 = 64 << 20;

/// What can be wrong with a MOO file.
#[derive(Debug, Error)]
pub enum MooError {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("not a MOO file: it starts with {0:?} instead of the \"MOO \" chunk")]
    NotMoo([u8; 4]),
    #[error("file is truncated: {0}")]
    Truncated(String),
    #[error("file is corrupt: {0}")]
    Corrupt(String),
}

/// The `MOO ` header chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MooHeader {
    pub major: u8,
    pub minor: u8,
    /// Number of `TEST` chunks in the file (the authoritative count, see SOURCE.md surprise 2).
    pub test_count: u32,
    /// CPU id, e.g. `C286`.
    pub cpu_id: [u8; 4],
}

/// The `META` chunk (present in the 80286 suite).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MooMeta {
    pub set_major: u8,
    pub set_minor: u8,
    pub cpu_type: u8,
    pub opcode: u32,
    /// Mnemonic with the padding spaces removed.
    pub mnemonic: String,
    /// Not the file's test count in the official files (a running total); informative only.
    pub test_ct: u32,
    pub seed: u64,
    pub cpu_mode: u8,
    pub extension: u8,
}

/// Register indices of a 286 `REGS` subchunk, in bit order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reg16 {
    Ax = 0,
    Bx = 1,
    Cx = 2,
    Dx = 3,
    Cs = 4,
    Ss = 5,
    Ds = 6,
    Es = 7,
    Sp = 8,
    Bp = 9,
    Si = 10,
    Di = 11,
    Ip = 12,
    Flags = 13,
}

impl Reg16 {
    pub const ALL: [Reg16; 14] = [
        Reg16::Ax,
        Reg16::Bx,
        Reg16::Cx,
        Reg16::Dx,
        Reg16::Cs,
        Reg16::Ss,
        Reg16::Ds,
        Reg16::Es,
        Reg16::Sp,
        Reg16::Bp,
        Reg16::Si,
        Reg16::Di,
        Reg16::Ip,
        Reg16::Flags,
    ];
    pub fn name(self) -> &'static str {
        ["ax", "bx", "cx", "dx", "cs", "ss", "ds", "es", "sp", "bp", "si", "di", "ip", "flags"][self as usize]
    }
}

/// A `REGS` subchunk: which registers are present and their values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Regs {
    /// Bit `i` set: register `i` (see [`Reg16`]) is present.
    pub mask: u16,
    pub values: [u16; 14],
}

impl Regs {
    /// All 14 registers present.
    pub const FULL_MASK: u16 = 0x3FFF;

    pub fn get(&self, r: Reg16) -> Option<u16> {
        (self.mask & (1 << r as u16) != 0).then_some(self.values[r as usize])
    }
    pub fn set(&mut self, r: Reg16, v: u16) {
        self.mask |= 1 << r as u16;
        self.values[r as usize] = v;
    }
}

/// An `INIT` or `FINA` state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub regs: Regs,
    /// `(physical address, byte)` pairs.
    pub ram: Vec<(u32, u8)>,
}

/// The `EXCP` subchunk: an interrupt or exception was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exception {
    pub vector: u8,
    /// Rounded down to even by the generator (SOURCE.md surprise 5); informative only.
    pub flag_address: u32,
}

/// One test.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Test {
    pub index: u32,
    /// Disassembly of the instruction, e.g. `add [bx+0Eh],bl`.
    pub name: String,
    /// Prefixes and instruction, followed by the `F4` (HLT) terminator.
    pub bytes: Vec<u8>,
    pub init: Snapshot,
    /// Only the registers and bytes that changed.
    pub fina: Snapshot,
    pub exception: Option<Exception>,
    pub hash: Option<[u8; 20]>,
}

impl Test {
    /// The instruction bytes without the HLT terminator.
    pub fn instruction(&self) -> &[u8] {
        match self.bytes.split_last() {
            Some((0xF4, rest)) => rest,
            _ => &self.bytes,
        }
    }
    /// The expected final value of `r`: from `FINA` when it changed, else from `INIT`.
    pub fn final_reg(&self, r: Reg16) -> u16 {
        self.fina.regs.get(r).unwrap_or(self.init.regs.values[r as usize])
    }
}

/// Streams the tests of one MOO file.
pub struct MooReader<R: Read> {
    r: R,
    header: MooHeader,
    meta: Option<MooMeta>,
    /// A `TEST` chunk read while looking for `META`.
    pending: Option<Vec<u8>>,
    tests_read: u32,
    done: bool,
}

impl MooReader<Box<dyn Read>> {
    /// Opens `path`; gzip is recognised by its magic bytes, not the file name.
    pub fn open(path: &Path) -> Result<Self, MooError> {
        let mut f = BufReader::new(File::open(path)?);
        let mut magic = [0u8; 2];
        let n = read_full(&mut f, &mut magic)?;
        let head = io::Cursor::new(magic[..n].to_vec()).chain(f);
        let r: Box<dyn Read> = if n == 2 && magic == [0x1F, 0x8B] {
            Box::new(BufReader::new(GzDecoder::new(head)))
        } else {
            Box::new(head)
        };
        MooReader::new(r)
    }
}

impl<R: Read> MooReader<R> {
    /// Reads the header (and `META`, when it comes before the first test).
    pub fn new(mut r: R) -> Result<Self, MooError> {
        let (id, payload) = match read_chunk(&mut r)? {
            Some(c) => c,
            None => return Err(MooError::Truncated("the file is empty".into())),
        };
        if &id != b"MOO " {
            return Err(MooError::NotMoo(id));
        }
        let mut c = Cursor::new(&payload, "MOO header");
        let major = c.u8()?;
        let minor = c.u8()?;
        c.skip(2)?;
        let test_count = c.u32()?;
        let cpu_id = c.array::<4>()?;
        let header = MooHeader { major, minor, test_count, cpu_id };
        let mut reader = MooReader { r, header, meta: None, pending: None, tests_read: 0, done: false };
        // Chunks before the first TEST: META and anything unknown (skipped).
        loop {
            match read_chunk(&mut reader.r)? {
                None => break,
                Some((id, payload)) if &id == b"META" => reader.meta = Some(parse_meta(&payload)?),
                Some((id, payload)) if &id == b"TEST" => {
                    reader.pending = Some(payload);
                    break;
                }
                Some(_) => {}
            }
        }
        if reader.pending.is_none() {
            reader.done = true;
            if test_count != 0 {
                return Err(MooError::Truncated(format!("header announces {test_count} tests, found 0")));
            }
        }
        Ok(reader)
    }

    pub fn header(&self) -> &MooHeader {
        &self.header
    }
    pub fn meta(&self) -> Option<&MooMeta> {
        self.meta.as_ref()
    }

    /// The next test, `None` at the end of the file.
    pub fn next_test(&mut self) -> Option<Result<Test, MooError>> {
        if self.done {
            return None;
        }
        let r = self.next_inner();
        if !matches!(r, Ok(Some(_))) {
            self.done = true;
        }
        r.transpose()
    }

    fn next_inner(&mut self) -> Result<Option<Test>, MooError> {
        let payload = match self.pending.take() {
            Some(p) => p,
            None => loop {
                match read_chunk(&mut self.r)? {
                    None => {
                        if self.tests_read != self.header.test_count {
                            return Err(MooError::Truncated(format!(
                                "header announces {} tests, the file ends after {}",
                                self.header.test_count, self.tests_read
                            )));
                        }
                        return Ok(None);
                    }
                    Some((id, p)) if &id == b"TEST" => break p,
                    Some(_) => {}
                }
            },
        };
        if self.tests_read >= self.header.test_count {
            return Err(MooError::Corrupt(format!(
                "more TEST chunks than the {} the header announces",
                self.header.test_count
            )));
        }
        self.tests_read += 1;
        parse_test(&payload).map(Some)
    }
}

impl<R: Read> Iterator for MooReader<R> {
    type Item = Result<Test, MooError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_test()
    }
}

/// Reads as many bytes as are available up to `buf.len()`.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A top-level chunk: id and payload.
type Chunk = ([u8; 4], Vec<u8>);

/// Reads one top-level chunk; `None` at a clean end of file.
fn read_chunk(r: &mut impl Read) -> Result<Option<Chunk>, MooError> {
    let mut head = [0u8; 8];
    let n = read_full(r, &mut head)?;
    if n == 0 {
        return Ok(None);
    }
    if n < 8 {
        return Err(MooError::Truncated(format!("a chunk header has only {n} of 8 bytes")));
    }
    let id = [head[0], head[1], head[2], head[3]];
    let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len > MAX_CHUNK {
        return Err(MooError::Corrupt(format!("chunk {} claims {len} bytes", show_id(&id))));
    }
    let mut payload = vec![0u8; len as usize];
    let got = read_full(r, &mut payload)?;
    if got < payload.len() {
        return Err(MooError::Truncated(format!("chunk {} has {got} of {len} bytes", show_id(&id))));
    }
    Ok(Some((id, payload)))
}

fn show_id(id: &[u8; 4]) -> String {
    format!("{:?}", String::from_utf8_lossy(id))
}

/// A bounds-checked little-endian reader over one chunk's payload.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    what: &'a str,
}

impl<'a> Cursor<'a> {
    fn new(b: &'a [u8], what: &'a str) -> Self {
        Cursor { b, pos: 0, what }
    }
    fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], MooError> {
        if n > self.remaining() {
            return Err(MooError::Corrupt(format!(
                "{}: needs {n} bytes at offset {}, only {} left",
                self.what,
                self.pos,
                self.remaining()
            )));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], MooError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }
    fn skip(&mut self, n: usize) -> Result<(), MooError> {
        self.bytes(n).map(|_| ())
    }
    fn u8(&mut self) -> Result<u8, MooError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, MooError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, MooError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, MooError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// A subchunk: id and payload.
    fn chunk(&mut self) -> Result<([u8; 4], &'a [u8]), MooError> {
        let id = self.array::<4>()?;
        let len = self.u32()? as usize;
        Ok((id, self.bytes(len)?))
    }
}

fn parse_meta(p: &[u8]) -> Result<MooMeta, MooError> {
    let mut c = Cursor::new(p, "META chunk");
    let set_major = c.u8()?;
    let set_minor = c.u8()?;
    let cpu_type = c.u8()?;
    let opcode = c.u32()?;
    let mnemonic = String::from_utf8_lossy(c.bytes(8)?).trim_end().to_string();
    let test_ct = c.u32()?;
    let seed = c.u64()?;
    let cpu_mode = c.u8()?;
    let extension = c.u8()?;
    Ok(MooMeta { set_major, set_minor, cpu_type, opcode, mnemonic, test_ct, seed, cpu_mode, extension })
}

fn parse_test(p: &[u8]) -> Result<Test, MooError> {
    let mut c = Cursor::new(p, "TEST chunk");
    let index = c.u32()?;
    let mut t = Test { index, ..Test::default() };
    let ctx = |e: MooError| match e {
        MooError::Corrupt(m) => MooError::Corrupt(format!("test {index}: {m}")),
        other => other,
    };
    let (mut have_init, mut have_fina, mut have_bytes) = (false, false, false);
    while c.remaining() > 0 {
        let (id, sub) = c.chunk().map_err(ctx)?;
        match &id {
            b"NAME" => {
                let mut s = Cursor::new(sub, "NAME");
                let n = s.u32().map_err(ctx)? as usize;
                t.name = String::from_utf8_lossy(s.bytes(n).map_err(ctx)?).into_owned();
            }
            b"BYTS" => {
                let mut s = Cursor::new(sub, "BYTS");
                let n = s.u32().map_err(ctx)? as usize;
                t.bytes = s.bytes(n).map_err(ctx)?.to_vec();
                have_bytes = true;
            }
            b"INIT" => {
                t.init = parse_snapshot(sub, "INIT").map_err(ctx)?;
                have_init = true;
            }
            b"FINA" => {
                t.fina = parse_snapshot(sub, "FINA").map_err(ctx)?;
                have_fina = true;
            }
            b"EXCP" => {
                let mut s = Cursor::new(sub, "EXCP");
                let vector = s.u8().map_err(ctx)?;
                let flag_address = s.u32().map_err(ctx)?;
                t.exception = Some(Exception { vector, flag_address });
            }
            b"HASH" => {
                let mut s = Cursor::new(sub, "HASH");
                t.hash = Some(s.array::<20>().map_err(ctx)?);
            }
            // GMET (generator metadata), CYCL (bus cycles) and anything unknown.
            _ => {}
        }
    }
    let missing = |what: &str| MooError::Corrupt(format!("test {index}: no {what} subchunk"));
    if !have_bytes {
        return Err(missing("BYTS"));
    }
    if !have_init {
        return Err(missing("INIT"));
    }
    if !have_fina {
        return Err(missing("FINA"));
    }
    if t.init.regs.mask != Regs::FULL_MASK {
        return Err(MooError::Corrupt(format!(
            "test {index}: INIT must hold all 14 registers (mask {:#06x})",
            t.init.regs.mask
        )));
    }
    Ok(t)
}

fn parse_snapshot(p: &[u8], what: &str) -> Result<Snapshot, MooError> {
    let mut c = Cursor::new(p, what);
    let mut snap = Snapshot::default();
    let mut have_regs = false;
    while c.remaining() > 0 {
        let (id, sub) = c.chunk()?;
        match &id {
            b"REGS" => {
                let mut s = Cursor::new(sub, "REGS");
                let mask = s.u16()?;
                if mask & !Regs::FULL_MASK != 0 {
                    return Err(MooError::Corrupt(format!(
                        "{what} REGS mask {mask:#06x} names registers a 286 does not have"
                    )));
                }
                for r in Reg16::ALL {
                    if mask & (1 << r as u16) != 0 {
                        snap.regs.set(r, s.u16()?);
                    }
                }
                have_regs = true;
            }
            b"RAM " => {
                let mut s = Cursor::new(sub, "RAM");
                let n = s.u32()? as usize;
                if n.checked_mul(5).is_none_or(|b| b > s.remaining()) {
                    return Err(MooError::Corrupt(format!("{what} RAM claims {n} entries")));
                }
                snap.ram.reserve(n);
                for _ in 0..n {
                    let addr = s.u32()?;
                    let val = s.u8()?;
                    snap.ram.push((addr, val));
                }
            }
            // QUEU, RMSK and anything unknown.
            _ => {}
        }
    }
    if !have_regs {
        return Err(MooError::Corrupt(format!("{what} has no REGS")));
    }
    Ok(snap)
}

/// Builds MOO bytes (for tests of this reader, of the runner, and for fuzzing it).
pub mod build {
    use super::*;

    /// Appends a chunk: its 4-byte id, the payload's length and the payload.
    pub fn chunk(out: &mut Vec<u8>, id: &[u8; 4], payload: &[u8]) {
        out.extend_from_slice(id);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(payload);
    }

    /// The payload of a `REGS` chunk: the mask, then each present register.
    pub fn regs_payload(s: &Snapshot) -> Vec<u8> {
        let mut regs = s.regs.mask.to_le_bytes().to_vec();
        for r in Reg16::ALL {
            if let Some(v) = s.regs.get(r) {
                regs.extend_from_slice(&v.to_le_bytes());
            }
        }
        regs
    }

    /// The payload of a `RAM ` chunk: the count, then (address, byte) pairs.
    pub fn ram_payload(s: &Snapshot) -> Vec<u8> {
        let mut ram = (s.ram.len() as u32).to_le_bytes().to_vec();
        for &(a, v) in &s.ram {
            ram.extend_from_slice(&a.to_le_bytes());
            ram.push(v);
        }
        ram
    }

    fn snapshot(s: &Snapshot) -> Vec<u8> {
        let mut out = Vec::new();
        chunk(&mut out, b"REGS", &regs_payload(s));
        chunk(&mut out, b"RAM ", &ram_payload(s));
        out
    }

    /// A whole `TEST` chunk, with a GMET and a CYCL subchunk to be skipped.
    pub fn test_chunk(t: &Test) -> Vec<u8> {
        let mut p = t.index.to_le_bytes().to_vec();
        chunk(&mut p, b"GMET", &[0; 10]);
        let mut name = (t.name.len() as u32).to_le_bytes().to_vec();
        name.extend_from_slice(t.name.as_bytes());
        chunk(&mut p, b"NAME", &name);
        let mut bytes = (t.bytes.len() as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&t.bytes);
        chunk(&mut p, b"BYTS", &bytes);
        chunk(&mut p, b"INIT", &snapshot(&t.init));
        chunk(&mut p, b"FINA", &snapshot(&t.fina));
        let mut cycl = 1u32.to_le_bytes().to_vec();
        cycl.extend_from_slice(&[0; 15]);
        chunk(&mut p, b"CYCL", &cycl);
        exception_and_hash(&mut p, t);
        let mut out = Vec::new();
        chunk(&mut out, b"TEST", &p);
        out
    }

    /// Appends a test's optional `EXCP` and `HASH` chunks to its payload `p`.
    pub fn exception_and_hash(p: &mut Vec<u8>, t: &Test) {
        if let Some(e) = t.exception {
            let mut x = vec![e.vector];
            x.extend_from_slice(&e.flag_address.to_le_bytes());
            chunk(p, b"EXCP", &x);
        }
        if let Some(h) = t.hash {
            chunk(p, b"HASH", &h);
        }
    }

    /// A whole file: header, META, an unknown chunk, then the tests.
    pub fn file(opcode: u32, tests: &[Test]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut h = vec![1, 0, 0, 0];
        h.extend_from_slice(&(tests.len() as u32).to_le_bytes());
        h.extend_from_slice(b"C286");
        chunk(&mut out, b"MOO ", &h);
        let mut m = vec![1, 0, 6];
        m.extend_from_slice(&opcode.to_le_bytes());
        m.extend_from_slice(b"add     ");
        m.extend_from_slice(&(tests.len() as u32).to_le_bytes());
        m.extend_from_slice(&7u64.to_le_bytes());
        m.extend_from_slice(&[0, 0, 0, 0]);
        chunk(&mut out, b"META", &m);
        chunk(&mut out, b"XTRA", b"unknown chunk, skipped");
        for t in tests {
            out.extend_from_slice(&test_chunk(t));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(index: u32) -> Test {
        let mut init = Snapshot::default();
        for (i, r) in Reg16::ALL.iter().enumerate() {
            init.regs.set(*r, 0x100 * i as u16 + index as u16);
        }
        init.ram = vec![(0x1000, 0x00), (0x1001, 0xD8), (0x1002, 0xF4)];
        let mut fina = Snapshot::default();
        fina.regs.set(Reg16::Ax, 0x1234);
        fina.regs.set(Reg16::Ip, 0x1003);
        fina.ram = vec![(0x2000, 7)];
        Test {
            index,
            name: "add al,bl".into(),
            bytes: vec![0x00, 0xD8, 0xF4],
            init,
            fina,
            exception: (index == 1).then_some(Exception { vector: 13, flag_address: 0x4444 }),
            hash: Some([index as u8; 20]),
        }
    }

    #[test]
    fn round_trip_plain_and_gzip() {
        let tests = vec![sample(0), sample(1), sample(2)];
        let bytes = build::file(0, &tests);
        let r = MooReader::new(&bytes[..]).unwrap();
        assert_eq!(r.header().test_count, 3);
        assert_eq!(&r.header().cpu_id, b"C286");
        assert_eq!(r.meta().map(|m| m.mnemonic.as_str()), Some("add"));
        let got: Vec<Test> = r.map(|t| t.unwrap()).collect();
        assert_eq!(got, tests);
        assert_eq!(got[0].instruction(), &[0x00, 0xD8]);
        assert_eq!(got[0].final_reg(Reg16::Ax), 0x1234);
        assert_eq!(got[0].final_reg(Reg16::Bx), 0x100);

        let dir = std::env::temp_dir().join(format!("picoqemu-moo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let gz = dir.join("00.MOO.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, &bytes).unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        let plain = dir.join("00.MOO");
        std::fs::write(&plain, &bytes).unwrap();
        for p in [&gz, &plain] {
            let got: Vec<Test> = MooReader::open(p).unwrap().map(|t| t.unwrap()).collect();
            assert_eq!(got, tests);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = build::file(0, &[sample(0), sample(1)]);
        for cut in 0..bytes.len() {
            let res: Result<Vec<Test>, MooError> = match MooReader::new(&bytes[..cut]) {
                Ok(r) => r.collect(),
                Err(e) => Err(e),
            };
            assert!(res.is_err(), "a file cut at {cut} of {} bytes was accepted", bytes.len());
        }
    }

    #[test]
    fn corrupt_inputs_are_errors() {
        assert!(matches!(MooReader::new(&b"XXXX\x00\x00\x00\x00"[..]), Err(MooError::NotMoo(_))));
        // A RAM count far beyond the payload.
        let mut t = sample(0);
        t.fina.ram.clear();
        let mut bytes = build::file(0, &[t]);
        let pos = bytes.windows(4).rposition(|w| w == b"RAM ").unwrap();
        bytes[pos + 8..pos + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        let res: Result<Vec<Test>, MooError> = MooReader::new(&bytes[..]).unwrap().collect();
        assert!(matches!(res, Err(MooError::Corrupt(_))), "{res:?}");
        // Bit flips anywhere never panic.
        let bytes = build::file(0, &[sample(0)]);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xA5;
            if let Ok(r) = MooReader::new(&b[..]) {
                let _ = r.collect::<Result<Vec<Test>, MooError>>();
            }
        }
        // More tests than the header says.
        let mut bytes = build::file(0, &[sample(0)]);
        bytes.extend_from_slice(&build::test_chunk(&sample(1)));
        let res: Result<Vec<Test>, MooError> = MooReader::new(&bytes[..]).unwrap().collect();
        assert!(matches!(res, Err(MooError::Corrupt(_))));
    }
}
