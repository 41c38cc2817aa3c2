//! Invariants of the SingleStepTests MOO reader on corrupt and on well-formed files. Shared by
//! the cargo-fuzz target `fuzz/fuzz_targets/moo.rs` and the proptest in `verify/tests/fuzz_props.rs`.
//!
//! Input byte 0 a multiple of 4: the rest is read as a MOO file. Then: no panic; the reader yields at most
//! the header's test count of tests, each with a complete INIT register set; after an error it
//! yields nothing more; a file that ends cleanly has exactly the announced count.
//! Byte 0 odd: the rest describes tests, which are encoded by this module (from the format's
//! description, independently of the reader), read back (they must be equal) and cut at an
//! input-chosen length (any cut short of the whole file must be an error, never a panic).
//! Byte 0 = 2 mod 4: such a file is encoded and then corrupted at input-chosen offsets before
//! it is read as above (the reader's invariants hold; most of all, it does not panic).
use picoqemu_verify::sst::moo::build::{self, chunk};
use picoqemu_verify::sst::moo::{Exception, MooError, MooReader, Reg16, Regs, Snapshot, Test};

/// Reads `data` as described in the module documentation and asserts every invariant.
pub fn check(data: &[u8]) {
    match data.split_first() {
        Some((&mode, rest)) if mode & 1 == 1 => round_trip(mode, rest),
        Some((&mode, rest)) if mode & 2 == 2 => corrupt(rest),
        Some((_, rest)) => {
            let _ = read_all(rest);
        }
        None => {}
    }
}

/// Reads every test of `bytes`; returns the tests when the whole file was valid.
fn read_all(bytes: &[u8]) -> Result<Vec<Test>, MooError> {
    let mut r = MooReader::new(bytes)?;
    let announced = r.header().test_count;
    let mut tests = Vec::new();
    loop {
        match r.next_test() {
            Some(Ok(t)) => {
                assert_eq!(t.init.regs.mask, Regs::FULL_MASK, "a test without a complete INIT was accepted");
                tests.push(t);
                assert!(tests.len() as u64 <= u64::from(announced), "more tests than the header announces");
            }
            Some(Err(e)) => {
                assert!(!e.to_string().is_empty());
                assert!(r.next_test().is_none(), "the reader went on after an error");
                return Err(e);
            }
            None => {
                assert_eq!(tests.len() as u64, u64::from(announced), "a clean end with a different count");
                assert!(r.next_test().is_none(), "the reader went on after its end");
                return Ok(tests);
            }
        }
    }
}

/// Takes bytes from the front of the input, zero when it runs out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
}

fn snapshot(b: &mut Bytes, full: bool) -> Snapshot {
    let mask = if full { Regs::FULL_MASK } else { b.u16() & Regs::FULL_MASK };
    let mut s = Snapshot::default();
    for r in Reg16::ALL {
        if mask & (1 << r as u16) != 0 {
            s.regs.set(r, b.u16());
        }
    }
    s.ram = (0..b.u8() % 8).map(|_| (b.u32() & 0xF_FFFF, b.u8())).collect();
    s
}

fn test_from(b: &mut Bytes, index: u32) -> Test {
    let name: String = (0..b.u8() % 12).map(|_| char::from(b'a' + b.u8() % 26)).collect();
    let bytes: Vec<u8> = (0..b.u8() % 8).map(|_| b.u8()).collect();
    let init = snapshot(b, true);
    let fina = snapshot(b, false);
    let flags = b.u8();
    let exception = (flags & 1 != 0).then(|| Exception { vector: b.u8(), flag_address: b.u32() });
    let hash = (flags & 2 != 0).then(|| [b.u8(); 20]);
    Test { index, name, bytes, init, fina, exception, hash }
}

/// A snapshot with its chunks in another order than the reader's own tests use, and an extra
/// chunk the reader must skip.
fn encode_snapshot(s: &Snapshot) -> Vec<u8> {
    let mut out = Vec::new();
    chunk(&mut out, b"RAM ", &build::ram_payload(s));
    chunk(&mut out, b"QUEU", &[0, 0, 0, 0]);
    chunk(&mut out, b"REGS", &build::regs_payload(s));
    out
}

fn encode_test(t: &Test) -> Vec<u8> {
    let mut p = t.index.to_le_bytes().to_vec();
    let mut name = (t.name.len() as u32).to_le_bytes().to_vec();
    name.extend_from_slice(t.name.as_bytes());
    chunk(&mut p, b"NAME", &name);
    chunk(&mut p, b"FINA", &encode_snapshot(&t.fina));
    let mut bytes = (t.bytes.len() as u32).to_le_bytes().to_vec();
    bytes.extend_from_slice(&t.bytes);
    chunk(&mut p, b"BYTS", &bytes);
    chunk(&mut p, b"INIT", &encode_snapshot(&t.init));
    build::exception_and_hash(&mut p, t);
    let mut out = Vec::new();
    chunk(&mut out, b"TEST", &p);
    out
}

fn encode_file(tests: &[Test], with_meta: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut h = vec![1, 0, 0, 0];
    h.extend_from_slice(&(tests.len() as u32).to_le_bytes());
    h.extend_from_slice(b"C286");
    chunk(&mut out, b"MOO ", &h);
    if with_meta {
        let mut m = vec![1, 0, 6, 0x27, 0, 0, 0];
        m.extend_from_slice(b"daa     ");
        m.extend_from_slice(&[0; 14]);
        chunk(&mut out, b"META", &m);
    }
    for t in tests {
        out.extend_from_slice(&encode_test(t));
    }
    out
}

fn round_trip(mode: u8, rest: &[u8]) {
    let mut b = Bytes(rest);
    let count = b.u8() % 5;
    let tests: Vec<Test> = (0..u32::from(count)).map(|i| test_from(&mut b, i)).collect();
    let file = encode_file(&tests, mode & 2 != 0);
    let got = read_all(&file).unwrap_or_else(|e| panic!("a well-formed file was rejected: {e}"));
    assert_eq!(got, tests, "the tests read back differ from those written");
    let cut = usize::from(b.u16()) % file.len();
    // Without tests, the header alone (20 bytes) is a whole file: META is optional.
    if !(tests.is_empty() && cut == 20) {
        assert!(read_all(&file[..cut]).is_err(), "a file cut at {cut} of {} bytes was accepted", file.len());
    }
}

fn corrupt(rest: &[u8]) {
    let mut b = Bytes(rest);
    let count = b.u8() % 4;
    let tests: Vec<Test> = (0..u32::from(count)).map(|i| test_from(&mut b, i)).collect();
    let mut file = encode_file(&tests, count & 1 == 0);
    for _ in 0..b.u8() % 8 {
        let at = usize::from(b.u16()) % file.len();
        file[at] ^= b.u8() | 1;
    }
    let _ = read_all(&file);
}
