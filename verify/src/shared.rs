//! The shared test data (`../shared` next to the repository: the SingleStepTests slice, the
//! article's guest binary). A clean clone without it must still pass `cargo test`, so every
//! test that reads it asks [`require`] first: present → the path; absent → the test prints
//! why it skips, or fails when `PICOQEMU_REQUIRE_SHARED=1` (CI sets it).
use std::path::{Path, PathBuf};

/// Set to `1` to turn a missing shared file into a test failure instead of a skip.
pub const REQUIRE_ENV: &str = "PICOQEMU_REQUIRE_SHARED";
/// Overrides where the shared directory is (default: `../shared` relative to the repo root).
pub const DIR_ENV: &str = "PICOQEMU_SHARED_DIR";

/// The shared directory: `$PICOQEMU_SHARED_DIR`, or `../shared` beside the repository.
pub fn dir() -> PathBuf {
    match std::env::var_os(DIR_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    }
}

/// Whether `PICOQEMU_REQUIRE_SHARED=1` is set.
pub fn required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v.trim() == "1")
}

/// What a test should do about `path` (relative to the shared directory `root`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Present: use this path.
    Use(PathBuf),
    /// Absent and not required: skip, printing this reason.
    Skip(String),
    /// Absent and required: fail with this message.
    Fail(String),
}

/// Decides about `rel` under `root` (pure: the environment is passed in).
pub fn decide(root: &Path, rel: &str, require: bool) -> Decision {
    let path = root.join(rel);
    if path.exists() {
        return Decision::Use(path);
    }
    let what = format!("the shared test data {} is missing", path.display());
    if require {
        Decision::Fail(format!("{what} and {REQUIRE_ENV}=1 requires it"))
    } else {
        Decision::Skip(format!(
            "SKIP: {what} (clone ../shared beside the repository or set {DIR_ENV}; \
             {REQUIRE_ENV}=1 makes this a failure)"
        ))
    }
}

/// The path of `rel` in the shared directory, or `None` after printing why the calling test
/// skips. Panics (fails the test) when the data is missing and `PICOQEMU_REQUIRE_SHARED=1`.
pub fn require(rel: &str) -> Option<PathBuf> {
    match decide(&dir(), rel, required()) {
        Decision::Use(p) => Some(p),
        Decision::Skip(why) => {
            eprintln!("{why}");
            None
        }
        Decision::Fail(why) => panic!("{why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn present_data_is_used_and_absent_data_skips_or_fails() {
        let root = std::env::temp_dir().join(format!("picoqemu-shared-{}", std::process::id()));
        std::fs::create_dir_all(root.join("sst286")).unwrap();
        assert_eq!(decide(&root, "sst286", false), Decision::Use(root.join("sst286")));
        assert_eq!(decide(&root, "sst286", true), Decision::Use(root.join("sst286")));
        match decide(&root, "guests/x.bin", false) {
            Decision::Skip(why) => assert!(why.starts_with("SKIP: ") && why.contains(REQUIRE_ENV), "{why}"),
            d => panic!("{d:?}"),
        }
        match decide(&root, "guests/x.bin", true) {
            Decision::Fail(why) => assert!(why.contains("x.bin") && why.contains(REQUIRE_ENV), "{why}"),
            d => panic!("{d:?}"),
        }
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_default_directory_is_beside_the_repository() {
        let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
        if std::env::var_os(DIR_ENV).is_none() {
            assert_eq!(dir(), d);
        }
    }
}
