//! The suite's `metadata.json`: per instruction form (opcode, and ModR/M reg for group opcodes)
//! its status (`normal`, `undocumented`, `fpu`, …) and the mask of flags the 286 left undefined.
use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;
use thiserror::Error;

/// What can be wrong with a metadata file.
#[derive(Debug, Error)]
pub enum MetadataError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("metadata is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("metadata is malformed: {0}")]
    Malformed(String),
}

/// One instruction form's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormInfo {
    /// `normal`, `prefix`, `alias`, `undocumented`, `undefined`, `fpu` or `extension`.
    pub status: String,
    /// `86`, `186`, `286`, `v30`, when given.
    pub arch: Option<String>,
    /// The undefined flags in `odiszapc` order (letters shown where undefined), when any.
    pub flags: Option<String>,
    /// AND this with expected and actual FLAGS; 0xFFFF when no flag is undefined.
    pub flags_mask: u16,
}

/// The whole metadata file.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    /// Key: (opcode, reg); reg is `None` for non-group opcodes.
    forms: HashMap<(u16, Option<u8>), FormInfo>,
    /// Opcodes whose entry is split by ModR/M reg.
    groups: Vec<u16>,
}

impl Metadata {
    pub fn load(path: &Path) -> Result<Self, MetadataError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| MetadataError::Io { path: path.display().to_string(), source })?;
        Self::from_json(&text)
    }

    pub fn from_json(text: &str) -> Result<Self, MetadataError> {
        let v: Value = serde_json::from_str(text)?;
        let ops = v
            .get("opcodes")
            .and_then(Value::as_object)
            .ok_or_else(|| MetadataError::Malformed("no \"opcodes\" object".into()))?;
        let mut md = Metadata::default();
        for (key, entry) in ops {
            let opcode = u16::from_str_radix(key, 16)
                .map_err(|_| MetadataError::Malformed(format!("opcode key {key:?} is not hex")))?;
            match entry.get("reg") {
                Some(regs) => {
                    let regs = regs.as_object().ok_or_else(|| {
                        MetadataError::Malformed(format!("opcode {key}: \"reg\" is not an object"))
                    })?;
                    for (r, e) in regs {
                        let reg = r.parse::<u8>().ok().filter(|&r| r < 8).ok_or_else(|| {
                            MetadataError::Malformed(format!("opcode {key}: reg key {r:?} is not 0..7"))
                        })?;
                        md.forms.insert((opcode, Some(reg)), form(key, e)?);
                    }
                    md.groups.push(opcode);
                }
                None => {
                    md.forms.insert((opcode, None), form(key, entry)?);
                }
            }
        }
        md.groups.sort_unstable();
        Ok(md)
    }

    /// True when `opcode`'s entries are per ModR/M reg.
    pub fn is_group(&self, opcode: u16) -> bool {
        self.groups.binary_search(&opcode).is_ok()
    }

    /// The entry of a form; `reg` is ignored for non-group opcodes.
    pub fn lookup(&self, opcode: u16, reg: Option<u8>) -> Option<&FormInfo> {
        if self.is_group(opcode) {
            self.forms.get(&(opcode, reg))
        } else {
            self.forms.get(&(opcode, None))
        }
    }

    /// Number of forms described.
    pub fn len(&self) -> usize {
        self.forms.len()
    }
    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }
}

fn form(key: &str, e: &Value) -> Result<FormInfo, MetadataError> {
    let status = e
        .get("status")
        .and_then(Value::as_str)
        .ok_or_else(|| MetadataError::Malformed(format!("opcode {key}: no \"status\"")))?
        .to_string();
    let flags_mask = match e.get("flags-mask") {
        None => 0xFFFF,
        Some(m) => m
            .as_u64()
            .and_then(|m| u16::try_from(m).ok())
            .ok_or_else(|| MetadataError::Malformed(format!("opcode {key}: \"flags-mask\" is not a u16")))?,
    };
    Ok(FormInfo {
        status,
        arch: e.get("arch").and_then(Value::as_str).map(str::to_string),
        flags: e.get("flags").and_then(Value::as_str).map(str::to_string),
        flags_mask,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_group_entries() {
        let md = Metadata::from_json(
            r#"{"opcodes": {
                "00": {"status": "normal", "arch": "86"},
                "27": {"status": "normal", "arch": "86", "flags": "o.......", "flags-mask": 63487},
                "F6": {"reg": {"0": {"status": "normal", "flags-mask": 65519},
                               "6": {"status": "normal", "flags": "o..szapc", "flags-mask": 63274}}},
                "0F01": {"reg": {"5": {"status": "undefined", "arch": "286"}}}
            }}"#,
        )
        .unwrap();
        assert_eq!(md.len(), 5);
        assert_eq!(md.lookup(0x00, Some(3)).unwrap().flags_mask, 0xFFFF);
        assert_eq!(md.lookup(0x27, None).unwrap().flags_mask, 0xF7FF);
        assert!(md.is_group(0xF6));
        assert_eq!(md.lookup(0xF6, Some(6)).unwrap().flags.as_deref(), Some("o..szapc"));
        assert!(md.lookup(0xF6, Some(2)).is_none());
        assert!(md.lookup(0xF6, None).is_none());
        assert_eq!(md.lookup(0x0F01, Some(5)).unwrap().status, "undefined");
        assert_eq!(md.lookup(0x27, None).unwrap().arch.as_deref(), Some("86"));
    }

    #[test]
    fn rejects_malformed() {
        assert!(Metadata::from_json("[").is_err());
        assert!(Metadata::from_json("{}").is_err());
        assert!(Metadata::from_json(r#"{"opcodes": {"ZZ": {"status": "normal"}}}"#).is_err());
        assert!(Metadata::from_json(r#"{"opcodes": {"00": {"arch": "86"}}}"#).is_err());
        assert!(Metadata::from_json(r#"{"opcodes": {"00": {"status": "x", "flags-mask": 70000}}}"#).is_err());
        assert!(Metadata::from_json(r#"{"opcodes": {"80": {"reg": {"9": {"status": "x"}}}}}"#).is_err());
    }

    #[test]
    fn shared_metadata_loads() {
        let Some(p) = crate::shared::require("sst286/metadata.json") else { return };
        let md = Metadata::load(&p).unwrap();
        assert_eq!(md.lookup(0xD8, None).unwrap().status, "fpu");
        assert_eq!(md.lookup(0xF7, Some(7)).unwrap().flags_mask, 0xF72A);
        assert_eq!(md.lookup(0x37, None).unwrap().flags_mask, 0xF73B);
    }
}
