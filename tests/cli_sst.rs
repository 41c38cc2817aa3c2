//! `picoqemu sst` on files it cannot use: a truncated `.MOO.gz`, a file that is not gzip (nor
//! MOO), and a missing file. Each is a `picoqemu:` line on stderr (never an `error:` line on
//! stdout), counts as a failure in the final `sst: N passed, M failed, K skipped` line, and
//! gives a non-zero exit status. Needs no shared data.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::picoqemu;

/// A fresh directory for one test, with an empty `metadata.json`.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli_sst_{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    std::fs::write(dir.join("metadata.json"), br#"{"opcodes": {}}"#).expect("metadata.json");
    dir
}

/// A MOO file: the header chunk, then a `TEST` chunk that claims more bytes than follow.
fn moo_bytes() -> Vec<u8> {
    let mut v = b"MOO ".to_vec();
    v.extend_from_slice(&12u32.to_le_bytes());
    v.extend_from_slice(&[1, 0, 0, 0]);
    v.extend_from_slice(&1u32.to_le_bytes());
    v.extend_from_slice(b"C286");
    v.extend_from_slice(b"TEST");
    v.extend_from_slice(&4000u32.to_le_bytes());
    v.extend((0..4000u32).map(|i| (i * 7) as u8));
    v
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

fn sst(dir: &Path, file: &Path) -> Output {
    let md = dir.join("metadata.json");
    picoqemu(&["sst", "--metadata", md.to_str().unwrap(), file.to_str().unwrap()])
}

/// The checks common to every unusable file; returns stderr.
fn assert_counted_failure(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{what}: stdout {stdout} stderr {stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("picoqemu: ")), "{what}: {stderr}");
    assert!(!stdout.contains("error:"), "{what}: error on stdout: {stdout}");
    let last = stdout.lines().last().unwrap_or("");
    assert_eq!(last, "sst: 0 passed, 1 failed, 0 skipped", "{what}: {stdout}");
    stderr
}

#[test]
fn a_truncated_moo_gz_is_an_error_and_a_failure() {
    let dir = scratch("truncated");
    let gz = gzip(&moo_bytes());
    let file = dir.join("00.MOO.gz");
    std::fs::write(&file, &gz[..gz.len() / 2]).unwrap();
    let stderr = assert_counted_failure(&sst(&dir, &file), "truncated .MOO.gz");
    assert!(stderr.contains("00.MOO.gz"), "{stderr}");
}

#[test]
fn a_complete_gzip_of_a_truncated_moo_is_an_error_and_a_failure() {
    let dir = scratch("short_chunk");
    let file = dir.join("00.MOO.gz");
    let mut moo = moo_bytes();
    moo.truncate(200);
    std::fs::write(&file, gzip(&moo)).unwrap();
    let stderr = assert_counted_failure(&sst(&dir, &file), "truncated chunk");
    assert!(stderr.contains("truncated"), "{stderr}");
}

#[test]
fn a_file_that_is_not_gzip_nor_moo_is_an_error_and_a_failure() {
    let dir = scratch("not_gzip");
    let file = dir.join("00.MOO.gz");
    std::fs::write(&file, b"this is plain text, not a gzip stream and not a MOO file\n").unwrap();
    let stderr = assert_counted_failure(&sst(&dir, &file), "not gzip");
    assert!(stderr.contains("00.MOO.gz"), "{stderr}");
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let dir = scratch("missing");
    let out = sst(&dir, &dir.join("nope.MOO.gz"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "stdout {stdout} stderr {stderr}");
    assert!(stderr.starts_with("picoqemu: ") && stderr.contains("nope.MOO.gz"), "{stderr}");
    assert!(!stdout.contains("0 failed"), "{stdout}");
}
