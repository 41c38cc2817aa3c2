//! Replays the committed cargo-fuzz corpus and crash regressions of one target through its
//! check (used by the `fuzz_props.rs` tests of every crate, so the stable test run covers
//! every input the fuzzer kept and every crash it ever found).
use std::path::{Path, PathBuf};

/// The repository's `fuzz/` directory, from a crate directory one or zero levels below the root.
fn fuzz_dir(manifest_dir: &str) -> PathBuf {
    let here = Path::new(manifest_dir);
    let root = if here.join("fuzz").is_dir() { here } else { here.parent().expect("a parent directory") };
    root.join("fuzz")
}

/// Runs `check` on every file of `fuzz/corpus/<target>` (which must not be empty) and of
/// `fuzz/regressions/<target>` (when it exists); returns how many inputs ran.
pub fn replay(manifest_dir: &str, target: &str, check: fn(&[u8])) -> usize {
    let dir = fuzz_dir(manifest_dir);
    let corpus = files(&dir.join("corpus").join(target));
    assert!(!corpus.is_empty(), "the committed corpus of fuzz target {target} is missing or empty");
    let regressions = files(&dir.join("regressions").join(target));
    for f in corpus.iter().chain(&regressions) {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
        eprintln!("replaying {}", f.display());
        check(&data);
    }
    corpus.len() + regressions.len()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    v.sort();
    v
}
