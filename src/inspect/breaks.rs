//! `--break ADDR`: parsing an execution breakpoint address, `SEG:OFF` in hexadecimal
//! (`07c0:0010`, `0x7c0:0x10`) or a linear address (`0x7c10`, decimal `31760`, `7c10h`),
//! into the linear address [`picoqemu_core::Breakpoint`] wants.
use picoqemu_core::{Breakpoint, BreakpointKind, MAX_REAL_MODE_ADDR};

use crate::options::parse_addr;

/// One `--break` as given and its linear address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakAddr {
    /// CS base + IP.
    pub linear: u32,
}

impl BreakAddr {
    /// The breakpoint for a backend (software: as many as the backend allows).
    pub fn breakpoint(self) -> Breakpoint {
        Breakpoint { linear: self.linear, kind: BreakpointKind::Software }
    }
}

/// One hexadecimal 16-bit half of `SEG:OFF` (an optional `0x`).
fn hex16(part: &str, whole: &str, what: &str) -> Result<u32, String> {
    let t = part.trim();
    let digits = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
    let bad = || format!("'{whole}': the {what} '{t}' is not a hexadecimal number from 0 to ffff");
    if digits.is_empty() || digits.len() > 4 {
        return Err(bad());
    }
    u32::from_str_radix(digits, 16).map_err(|_| bad())
}

/// Parses `SEG:OFF` (hex) or a linear address. Clap's value parser for `--break`.
pub fn parse_break(s: &str) -> Result<BreakAddr, String> {
    let linear = match s.split_once(':') {
        Some((seg, off)) => (hex16(seg, s, "segment")? << 4) + hex16(off, s, "offset")?,
        None => {
            let a = parse_addr(s).map_err(|_| {
                format!("'{s}' is not a breakpoint address; write SEG:OFF in hex (07c0:0010) or a linear address (0x7c10)")
            })?;
            u32::try_from(a).unwrap_or(u32::MAX)
        }
    };
    if linear > MAX_REAL_MODE_ADDR {
        return Err(format!(
            "'{s}' is linear address {linear:#x}, beyond what real-mode code can reach ({MAX_REAL_MODE_ADDR:#x})"
        ));
    }
    Ok(BreakAddr { linear })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_offset_and_linear_forms() {
        assert_eq!(parse_break("0000:7c05"), Ok(BreakAddr { linear: 0x7C05 }));
        assert_eq!(parse_break("07c0:0010"), Ok(BreakAddr { linear: 0x7C10 }));
        assert_eq!(parse_break("0x7c0:0x10"), Ok(BreakAddr { linear: 0x7C10 }));
        assert_eq!(parse_break("ffff:ffff"), Ok(BreakAddr { linear: 0x10FFEF }));
        assert_eq!(parse_break("0x7c10"), Ok(BreakAddr { linear: 0x7C10 }));
        assert_eq!(parse_break("7c10h"), Ok(BreakAddr { linear: 0x7C10 }));
        assert_eq!(parse_break("31760"), Ok(BreakAddr { linear: 0x7C10 }));
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        assert!(parse_break("zz").unwrap_err().contains("not a breakpoint address"));
        assert!(parse_break("7c00:").unwrap_err().contains("offset ''"));
        assert!(parse_break("g:0").unwrap_err().contains("segment 'g'"));
        assert!(parse_break("0:10000").unwrap_err().contains("offset '10000'"));
        assert!(parse_break("0x110000").unwrap_err().contains("beyond"));
        assert!(parse_break("").is_err());
    }

    #[test]
    fn breakpoints_are_software_at_the_linear_address() {
        let b = parse_break("07c0:0010").unwrap().breakpoint();
        assert_eq!((b.linear, b.kind), (0x7C10, BreakpointKind::Software));
    }
}
