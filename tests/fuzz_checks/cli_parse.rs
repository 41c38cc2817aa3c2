//! Invariants of the command line's value parsers (`--mem` sizes, `--timeout` durations,
//! `--mmio-console` addresses) on arbitrary text. Shared by the cargo-fuzz target
//! `fuzz/fuzz_targets/cli_parse.rs` and the proptest in `tests/fuzz_props.rs`.
//!
//! Checked: no parser panics; an error is a non-empty message; an accepted size is in the
//! documented range and a multiple of 4 KiB and reads back the same in bytes and in KiB; an
//! accepted address reads back the same in decimal, `0x` hex and `h` hex; a plain decimal number
//! is that many seconds; parsing ignores ASCII case for sizes and addresses and surrounding spaces.
use std::time::Duration;

use picoqemu::options::{parse_addr, parse_duration, parse_size};
use picoqemu_core::ram::MAX_MEM_SIZE;
use picoqemu_core::MIN_MEM_SIZE;

/// Parses `data` (lossily as UTF-8) with every parser and asserts every invariant.
pub fn check(data: &[u8]) {
    check_str(&String::from_utf8_lossy(data));
}

/// Asserts every invariant for one string.
pub fn check_str(s: &str) {
    check_size(s);
    check_duration(s);
    check_addr(s);
}

fn check_size(s: &str) {
    match parse_size(s) {
        Ok(n) => {
            assert!((MIN_MEM_SIZE..=MAX_MEM_SIZE).contains(&n), "size {s:?} -> {n} is out of range");
            assert_eq!(n % 4096, 0, "size {s:?} -> {n} is not a multiple of 4K");
            assert_eq!(parse_size(&n.to_string()), Ok(n), "size {n} in bytes");
            assert_eq!(parse_size(&format!("{}K", n >> 10)), Ok(n), "size {n} in K");
        }
        Err(e) => assert!(!e.is_empty(), "empty error for size {s:?}"),
    }
    if s.is_ascii() {
        assert_eq!(parse_size(&s.to_ascii_uppercase()).ok(), parse_size(s).ok(), "size {s:?} upper case");
        assert_eq!(parse_size(&format!(" {s} ")).ok(), parse_size(s).ok(), "size {s:?} with spaces");
    }
}

fn check_duration(s: &str) {
    match parse_duration(s) {
        Ok(d) => {
            if d.subsec_nanos() == 0 && d.as_secs() < 1 << 50 {
                assert_eq!(parse_duration(&d.as_secs().to_string()), Ok(d), "{s:?} -> {d:?} in seconds");
            }
        }
        Err(e) => assert!(!e.is_empty(), "empty error for duration {s:?}"),
    }
    let t = s.trim();
    if !t.is_empty() && t.len() <= 15 && t.bytes().all(|b| b.is_ascii_digit()) {
        let n: u64 = t.parse().expect("digits");
        if n == 0 {
            // No time at all is bad usage (`--timeout 0`), in every unit.
            assert!(parse_duration(s).is_err(), "{s:?} is rejected");
            assert!(parse_duration(&format!("{t}ms")).is_err(), "{t}ms is rejected");
        } else {
            assert_eq!(parse_duration(s), Ok(Duration::from_secs(n)), "{s:?} is {n} seconds");
            assert_eq!(parse_duration(&format!("{t}ms")), Ok(Duration::from_millis(n)), "{t}ms");
        }
    }
}

fn check_addr(s: &str) {
    match parse_addr(s) {
        Ok(a) => {
            assert_eq!(parse_addr(&a.to_string()), Ok(a), "address {a} in decimal");
            assert_eq!(parse_addr(&format!("{a:#x}")), Ok(a), "address {a:#x}");
            assert_eq!(parse_addr(&format!("{a:X}h")), Ok(a), "address {a:X}h");
        }
        Err(e) => assert!(!e.is_empty(), "empty error for address {s:?}"),
    }
    if s.is_ascii() {
        assert_eq!(parse_addr(&s.to_ascii_uppercase()).ok(), parse_addr(s).ok(), "address {s:?} upper case");
    }
}
