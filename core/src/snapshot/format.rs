//! The snapshot file container (documented in `docs/snapshot-format.md`): a header (magic,
//! version, total length, section count), tagged sections, and a CRC-32 of everything before
//! it. All integers are little endian. [`decode`] checks, in this order, the magic, the
//! version, the length (truncated or trailing bytes), the checksum and the section framing,
//! and never panics on any input.
use super::SnapshotError;

/// The first 8 bytes of every snapshot file.
pub const MAGIC: [u8; 8] = *b"PQEMUSNP";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
/// Bytes of the header: magic, version (u32), total length (u64), section count (u32).
pub const HEADER_LEN: usize = 8 + 4 + 8 + 4;
/// Bytes of a section header: tag (4 ASCII bytes) and payload length (u32).
pub const SECTION_HEADER_LEN: usize = 8;
/// Bytes of the trailer: the CRC-32 (IEEE) of every byte before it.
pub const TRAILER_LEN: usize = 4;
/// Most sections a file may have.
pub const MAX_SECTIONS: u32 = 1024;

/// A section tag: four ASCII bytes.
pub type Tag = [u8; 4];

/// One section of a decoded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section<'a> {
    pub tag: Tag,
    pub payload: &'a [u8],
}

/// A tag as text, for messages.
pub fn tag_name(tag: &Tag) -> String {
    tag.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '?' }).collect::<String>()
}

/// Encodes `sections` (tag and payload) into a whole file.
pub fn encode(sections: &[(Tag, Vec<u8>)]) -> Vec<u8> {
    let body: usize = sections.iter().map(|(_, p)| SECTION_HEADER_LEN + p.len()).sum();
    let total = HEADER_LEN + body + TRAILER_LEN;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(total as u64).to_le_bytes());
    out.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    for (tag, payload) in sections {
        out.extend_from_slice(tag);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(payload);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Checks the header, length and checksum of `bytes`; returns the section count.
fn check_frame(bytes: &[u8]) -> Result<u32, SnapshotError> {
    let head = bytes.len().min(MAGIC.len());
    if bytes[..head] != MAGIC[..head] {
        return Err(SnapshotError::BadMagic);
    }
    if bytes.len() < HEADER_LEN + TRAILER_LEN {
        return Err(SnapshotError::Truncated { what: format!("the file has only {} bytes", bytes.len()) });
    }
    let version = le_u32(bytes, 8);
    if version != VERSION {
        return Err(SnapshotError::UnsupportedVersion { found: version, supported: VERSION });
    }
    let total = le_u64(bytes, 12);
    if (bytes.len() as u64) < total {
        return Err(SnapshotError::Truncated {
            what: format!("the file has {} of its {total} bytes", bytes.len()),
        });
    }
    if bytes.len() as u64 > total {
        return Err(SnapshotError::Invalid {
            section: "header".into(),
            reason: format!("{} bytes follow the end of the snapshot", bytes.len() as u64 - total),
        });
    }
    let body = bytes.len() - TRAILER_LEN;
    let stored = le_u32(bytes, body);
    let computed = crc32fast::hash(&bytes[..body]);
    if stored != computed {
        return Err(SnapshotError::Checksum { stored, computed });
    }
    let count = le_u32(bytes, 20);
    if count > MAX_SECTIONS {
        return Err(SnapshotError::Invalid {
            section: "header".into(),
            reason: format!("{count} sections (at most {MAX_SECTIONS})"),
        });
    }
    Ok(count)
}

/// Decodes a whole file into its sections (see the module doc for the checks).
pub fn decode(bytes: &[u8]) -> Result<Vec<Section<'_>>, SnapshotError> {
    let count = check_frame(bytes)?;
    let end = bytes.len() - TRAILER_LEN;
    let mut at = HEADER_LEN;
    let mut sections = Vec::new();
    for i in 0..count {
        if end - at < SECTION_HEADER_LEN {
            return Err(SnapshotError::Truncated { what: format!("section {i} of {count} is missing") });
        }
        let mut tag = [0u8; 4];
        tag.copy_from_slice(&bytes[at..at + 4]);
        let len = le_u32(bytes, at + 4) as usize;
        at += SECTION_HEADER_LEN;
        if end - at < len {
            return Err(SnapshotError::Truncated {
                what: format!("section {} claims {len} bytes, {} are left", tag_name(&tag), end - at),
            });
        }
        sections.push(Section { tag, payload: &bytes[at..at + len] });
        at += len;
    }
    if at != end {
        return Err(SnapshotError::Invalid {
            section: "header".into(),
            reason: format!("{} bytes after the last of its {count} sections", end - at),
        });
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        encode(&[(*b"ONE ", vec![1, 2, 3]), (*b"TWO ", vec![]), (*b"ONE ", vec![9; 100])])
    }

    #[test]
    fn sections_round_trip() {
        let file = sample();
        let s = decode(&file).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!((s[0].tag, s[0].payload), (*b"ONE ", &[1u8, 2, 3][..]));
        assert_eq!((s[1].tag, s[1].payload.len()), (*b"TWO ", 0));
        assert_eq!(s[2].payload, &[9u8; 100][..]);
        assert_eq!(file.len(), HEADER_LEN + 3 * SECTION_HEADER_LEN + 103 + TRAILER_LEN);
    }

    #[test]
    fn each_damage_has_its_error() {
        let file = sample();
        assert!(matches!(decode(b"PK\x03\x04 not ours"), Err(SnapshotError::BadMagic)));
        assert!(matches!(decode(b""), Err(SnapshotError::Truncated { .. })));
        assert!(matches!(decode(&file[..5]), Err(SnapshotError::Truncated { .. })));
        assert!(matches!(decode(&file[..file.len() - 1]), Err(SnapshotError::Truncated { .. })));
        let mut v2 = file.clone();
        v2[8] = 2;
        assert!(matches!(decode(&v2), Err(SnapshotError::UnsupportedVersion { found: 2, supported: 1 })));
        let mut flipped = file.clone();
        flipped[30] ^= 0x40;
        assert!(matches!(decode(&flipped), Err(SnapshotError::Checksum { .. })));
        let mut longer = file.clone();
        longer.push(0);
        assert!(matches!(decode(&longer), Err(SnapshotError::Invalid { .. })));
    }
}
