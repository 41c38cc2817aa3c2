//! The built-in copy of the article's program is byte-identical to the nasm build in
//! `../shared/guests/seed_hello.bin`.
use std::path::Path;

#[test]
fn hello_matches_the_nasm_build() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/guests/seed_hello.bin");
    let seed = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let ours = picoqemu::guests::hello().unwrap();
    assert_eq!(ours.len(), 512);
    for (i, (a, b)) in ours.iter().zip(seed.iter()).enumerate() {
        assert_eq!(a, b, "first difference at byte {i:#x}: ours {a:#04x}, nasm {b:#04x}");
    }
    assert_eq!(ours, seed);
}
