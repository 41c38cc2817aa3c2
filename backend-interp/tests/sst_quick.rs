//! Development check of the interpreter against the SingleStepTests 80286 real-mode slice in
//! `../../shared/sst286` (MOO format, see SOURCE.md there). The product's runner is
//! `picoqemu sst`; this is a small self-contained reader so the interpreter can be checked on
//! its own. Tests of forms that legitimately differ on a 386+ are skipped as SOURCE.md says.
//! Set `SST_VERBOSE=1` to print each failure, `SST_FILTER=F6.7` to run some files only.
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use picoqemu_core::{Backend, CpuState, IoBus, Machine, MachineConfig, RunLimits, Segment, StopReason};
use picoqemu_interp::InterpBackend;

struct Test {
    name: String,
    bytes: Vec<u8>,
    init_regs: [u16; 14],
    init_ram: Vec<(u32, u8)>,
    fina_regs: Vec<(usize, u16)>,
    fina_ram: Vec<(u32, u8)>,
    excp: Option<u8>,
}

fn u16le(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32le(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn chunks(b: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut v = Vec::new();
    let mut o = 0;
    while o + 8 <= b.len() {
        let id = &b[o..o + 4];
        let len = u32le(b, o + 4) as usize;
        let end = (o + 8 + len).min(b.len());
        v.push((id, &b[o + 8..end]));
        o = end;
    }
    v
}

fn regs(p: &[u8]) -> Vec<(usize, u16)> {
    let mask = u16le(p, 0);
    let mut o = 2;
    let mut v = Vec::new();
    for i in 0..14 {
        if mask & (1 << i) != 0 {
            v.push((i, u16le(p, o)));
            o += 2;
        }
    }
    v
}

fn ram(p: &[u8]) -> Vec<(u32, u8)> {
    let n = u32le(p, 0) as usize;
    (0..n).map(|i| (u32le(p, 4 + 5 * i), p[8 + 5 * i])).collect()
}

fn parse(path: &Path) -> Vec<Test> {
    let mut gz = flate2::read::GzDecoder::new(std::fs::File::open(path).expect("open"));
    let mut data = Vec::new();
    gz.read_to_end(&mut data).expect("gunzip");
    let mut tests = Vec::new();
    for (id, p) in chunks(&data) {
        if id != b"TEST" {
            continue;
        }
        let mut t = Test {
            name: String::new(),
            bytes: Vec::new(),
            init_regs: [0; 14],
            init_ram: Vec::new(),
            fina_regs: Vec::new(),
            fina_ram: Vec::new(),
            excp: None,
        };
        for (sid, sp) in chunks(&p[4..]) {
            match sid {
                b"NAME" => t.name = String::from_utf8_lossy(&sp[4..4 + u32le(sp, 0) as usize]).into_owned(),
                b"BYTS" => t.bytes = sp[4..4 + u32le(sp, 0) as usize].to_vec(),
                b"INIT" | b"FINA" => {
                    for (cid, cp) in chunks(sp) {
                        match (sid, cid) {
                            (b"INIT", b"REGS") => {
                                for (i, v) in regs(cp) {
                                    t.init_regs[i] = v;
                                }
                            }
                            (b"INIT", b"RAM ") => t.init_ram = ram(cp),
                            (b"FINA", b"REGS") => t.fina_regs = regs(cp),
                            (b"FINA", b"RAM ") => t.fina_ram = ram(cp),
                            _ => {}
                        }
                    }
                }
                b"EXCP" => t.excp = Some(sp[0]),
                _ => {}
            }
        }
        tests.push(t);
    }
    tests
}

/// Register order in the MOO REGS chunk -> CpuState gpr index (or segment / ip / flags).
const AX: usize = 0;
const BX: usize = 1;
const CX: usize = 2;
const DX: usize = 3;
const CS: usize = 4;
const SS: usize = 5;
const DS: usize = 6;
const ES: usize = 7;
const SP: usize = 8;
const BP: usize = 9;
const SI: usize = 10;
const DI: usize = 11;
const IP: usize = 12;
const FL: usize = 13;

fn to_state(r: &[u16; 14]) -> CpuState {
    let mut s = CpuState {
        gpr: [r[AX], r[CX], r[DX], r[BX], r[SP], r[BP], r[SI], r[DI]].map(|v| v as u32),
        eip: r[IP] as u32,
        eflags: (r[FL] & 0x0FFF) as u32 | 2,
        ..CpuState::default()
    };
    s.segs[0] = Segment::real(r[ES]);
    s.segs[1] = Segment::real(r[CS]);
    s.segs[2] = Segment::real(r[SS]);
    s.segs[3] = Segment::real(r[DS]);
    s
}

fn from_state(s: &CpuState) -> [u16; 14] {
    let g = |i: usize| s.gpr[i] as u16;
    let mut r = [0u16; 14];
    r[AX] = g(0);
    r[CX] = g(1);
    r[DX] = g(2);
    r[BX] = g(3);
    r[SP] = g(4);
    r[BP] = g(5);
    r[SI] = g(6);
    r[DI] = g(7);
    r[IP] = s.eip as u16;
    r[FL] = s.eflags as u16;
    r[ES] = s.segs[0].selector;
    r[CS] = s.segs[1].selector;
    r[SS] = s.segs[2].selector;
    r[DS] = s.segs[3].selector;
    r
}

const NAMES: [&str; 14] =
    ["ax", "bx", "cx", "dx", "cs", "ss", "ds", "es", "sp", "bp", "si", "di", "ip", "flags"];

fn prefix_len(b: &[u8]) -> usize {
    b.iter().take_while(|x| matches!(x, 0x26 | 0x2E | 0x36 | 0x3E | 0xF0 | 0xF2 | 0xF3)).count()
}

/// Why a test does not apply to a 386+ (SOURCE.md's table), or None.
fn skip_reason(t: &Test) -> Option<&'static str> {
    let b = &t.bytes;
    let pl = prefix_len(b);
    let op = *b.get(pl)?;
    let modrm = b.get(pl + 1).copied().unwrap_or(0);
    let reg = (modrm >> 3) & 7;
    let mem = modrm >> 6 != 3;
    if b[..pl].contains(&0xF0) {
        let lockable = match op {
            0x00 | 0x01 | 0x08 | 0x09 | 0x10 | 0x11 | 0x18 | 0x19 | 0x20 | 0x21 | 0x28 | 0x29 | 0x30
            | 0x31 => true,
            0x80..=0x83 => reg != 7,
            0x86 | 0x87 => true,
            0xF6 | 0xF7 => reg == 2 || reg == 3,
            0xFE | 0xFF => reg <= 1,
            _ => false,
        };
        if !(lockable && mem) {
            return Some("LOCK on a non-lockable form is #UD on a 386+");
        }
    }
    if b.len() - 1 > 10 && t.excp == Some(13) {
        return Some("longer than 10 bytes (286 #GP)");
    }
    if (op == 0x8C || op == 0x8E) && (reg == 4 || reg == 5) {
        return Some("8C/8E reg 4/5 are FS/GS on a 386+");
    }
    if t.excp == Some(13) {
        let stack_op = matches!(
            op,
            0x06 | 0x07 | 0x0E | 0x16 | 0x17 | 0x1E | 0x1F | 0x50..=0x61 | 0x68 | 0x6A | 0x8F | 0x9A | 0x9C | 0x9D
                | 0xC2 | 0xC3 | 0xC8 | 0xC9 | 0xCA..=0xCF | 0xE8
        ) || (op == 0xFF && matches!(reg, 2 | 3 | 6));
        let last_seg = b[..pl].iter().rev().find(|x| matches!(x, 0x26 | 0x2E | 0x36 | 0x3E)).copied();
        let rm = modrm & 7;
        let md = modrm >> 6;
        let has_modrm = !matches!(op, 0xA0..=0xAF | 0xD7 | 0x6C..=0x6F);
        let bp_based = has_modrm && mem && (rm == 2 || rm == 3 || (rm == 6 && md != 0));
        let ss_operand = last_seg == Some(0x36) || (last_seg.is_none() && bp_based);
        if stack_op || (has_modrm && mem && ss_operand) || (last_seg == Some(0x36) && !has_modrm) {
            return Some("segment overrun on the stack: #SS on a 386+");
        }
    }
    // A word string access at offset FFFFh wraps inside the segment on the 286; a 386+
    // raises #GP/#SS (the IVT entry is not in the test's RAM).
    if matches!(op, 0xA5 | 0xA7 | 0xAB | 0xAD | 0xAF | 0x6D | 0x6F) {
        let rep = b[..pl].iter().any(|x| matches!(x, 0xF2 | 0xF3));
        let n = if rep { t.init_regs[CX] as u32 } else { 1 };
        let down = t.init_regs[FL] & 0x400 != 0;
        let uses_si = matches!(op, 0xA5 | 0xA7 | 0xAD | 0x6F);
        let uses_di = matches!(op, 0xA5 | 0xA7 | 0xAB | 0xAF | 0x6D);
        let hits = |start: u16| {
            (0..n).any(|i| {
                let o = if down {
                    start.wrapping_sub((2 * i) as u16)
                } else {
                    start.wrapping_add((2 * i) as u16)
                };
                o == 0xFFFF
            })
        };
        if (uses_si && hits(t.init_regs[SI])) || (uses_di && hits(t.init_regs[DI])) {
            return Some("word string access at offset FFFFh: the 286 wraps, a 386+ faults");
        }
    }
    // Ports our machine's devices claim do not read as FFh.
    let port = match op {
        0xE4..=0xE7 => Some(b.get(pl + 1).copied().unwrap_or(0) as u16),
        0xEC..=0xEF | 0x6C..=0x6F => Some(t.init_regs[DX]),
        _ => None,
    };
    if let Some(p) = port {
        let claimed = |p: u16| matches!(p, 0x3F8..=0x3FF | 0x3C0..=0x3DF | 0xE9 | 0x80 | 0xF4);
        if claimed(p) || claimed(p.wrapping_add(1)) {
            return Some("port claimed by a device of the machine");
        }
    }
    None
}

fn masks(meta: &serde_json::Value) -> HashMap<String, u16> {
    let mut m = HashMap::new();
    if let Some(ops) = meta["opcodes"].as_object() {
        for (k, v) in ops {
            if let Some(regs) = v["reg"].as_object() {
                for (r, rv) in regs {
                    if let Some(x) = rv["flags-mask"].as_u64() {
                        m.insert(format!("{k}.{r}"), x as u16);
                    }
                }
            } else if let Some(x) = v["flags-mask"].as_u64() {
                m.insert(k.clone(), x as u16);
            }
        }
    }
    m
}

/// Extra architecturally-undefined flags for shifts and rotates (SOURCE.md surprise 9).
fn shift_mask(t: &Test) -> u16 {
    let b = &t.bytes;
    let pl = prefix_len(b);
    let op = b[pl];
    let modrm = b.get(pl + 1).copied().unwrap_or(0);
    let reg = (modrm >> 3) & 7;
    let count = match op {
        0xD0 | 0xD1 => 1,
        0xD2 | 0xD3 => (t.init_regs[CX] & 0x1F) as u32,
        0xC0 | 0xC1 => {
            let md = modrm >> 6;
            let rm = modrm & 7;
            let disp = match md {
                0 if rm == 6 => 2,
                1 => 1,
                2 => 2,
                _ => 0,
            };
            (b[pl + 2 + disp] & 0x1F) as u32
        }
        _ => return 0xFFFF,
    };
    let width = if op & 1 == 0 { 8 } else { 16 };
    let mut m = 0xFFFFu16;
    if count != 1 {
        m &= !0x0800; // OF
    }
    if reg >= 4 {
        m &= !0x0010; // AF
        if count >= width {
            m &= !0x0001; // CF
        }
    }
    m
}

#[test]
fn sst286_slice() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/sst286");
    let Ok(meta) = std::fs::read(dir.join("metadata.json")) else {
        eprintln!("SKIP: no SingleStepTests slice at {}", dir.display());
        return;
    };
    let meta: serde_json::Value = serde_json::from_slice(&meta).expect("metadata.json");
    let masks = masks(&meta);
    let verbose = std::env::var("SST_VERBOSE").is_ok();
    let filter = std::env::var("SST_FILTER").ok();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".MOO.gz"))
        .collect();
    files.sort();
    let mut m = Machine::new(MachineConfig::default(), IoBus::capturing()).expect("machine");
    let (mut pass, mut fail, mut skip) = (0u64, 0u64, 0u64);
    let mut per_file: Vec<(String, u64)> = Vec::new();
    for f in &files {
        let stem = f.file_name().map(|n| n.to_string_lossy().replace(".MOO.gz", "")).unwrap_or_default();
        if stem == "D8" {
            continue;
        }
        if let Some(fl) = &filter {
            if !fl.split(',').any(|x| x == stem) {
                continue;
            }
        }
        let key = stem.clone();
        let fmask = masks.get(&key).copied().unwrap_or(0xFFFF);
        let mut file_fail = 0;
        for t in parse(f) {
            if skip_reason(&t).is_some() {
                skip += 1;
                continue;
            }
            let mask = fmask & shift_mask(&t) & 0x0FFF;
            for &(a, v) in &t.init_ram {
                m.ram_mut().as_mut_slice()[a as usize] = v;
            }
            let st = to_state(&t.init_regs);
            let mut be = InterpBackend::new();
            be.set_state(&st).expect("set_state");
            let mut stop = be.run(&mut m, RunLimits::instructions(64)).expect("run");
            while matches!(stop, StopReason::DebugExit(_)) {
                stop = be.run(&mut m, RunLimits::instructions(64)).expect("run");
            }
            let out = be.state().expect("state");
            let got = from_state(&out);
            let mut exp = t.init_regs;
            exp[FL] &= 0x0FFF;
            exp[FL] |= 2;
            for &(i, v) in &t.fina_regs {
                exp[i] = v;
            }
            let mut errs = Vec::new();
            if stop != StopReason::Halted {
                errs.push(format!("stop {stop:?}"));
            }
            for i in 0..14 {
                let (e, g) = if i == FL { (exp[i] & mask, got[i] & mask) } else { (exp[i], got[i]) };
                if e != g {
                    errs.push(format!("{}: expected {:04x} got {:04x}", NAMES[i], e, g));
                }
            }
            let ramv = m.ram().as_slice();
            // Pushed FLAGS of an exception: mask like FLAGS.
            let flags_at = t.excp.map(|_| exp[SS] as u32 * 16 + exp[SP].wrapping_add(4) as u32);
            for &(a, v) in &t.fina_ram {
                let g = ramv[a as usize];
                let (e, g) = match flags_at {
                    Some(fa) if a == fa => (v & mask as u8, g & mask as u8),
                    Some(fa) if a == fa + 1 => (v & (mask >> 8) as u8, g & (mask >> 8) as u8),
                    _ => (v, g),
                };
                if e != g {
                    errs.push(format!("ram[{a:05x}]: expected {e:02x} got {g:02x}"));
                }
            }
            if errs.is_empty() {
                pass += 1;
            } else {
                fail += 1;
                file_fail += 1;
                if verbose {
                    eprintln!("FAIL {stem} {} ({:02x?}): {}", t.name, t.bytes, errs.join("; "));
                }
            }
            let ram = m.ram_mut().as_mut_slice();
            for &(a, _) in t.init_ram.iter().chain(t.fina_ram.iter()) {
                ram[a as usize] = 0;
            }
        }
        if file_fail > 0 {
            per_file.push((stem, file_fail));
        }
    }
    eprintln!("failures per file: {per_file:?}");
    eprintln!("sst: {pass} passed, {fail} failed, {skip} skipped");
    let rate = pass as f64 / (pass + fail).max(1) as f64;
    assert!(rate >= 0.999, "pass rate {rate:.5} below 99.9%");
}
