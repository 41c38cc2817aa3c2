//! No input makes picoqemu panic: random boot sectors (a fixed-seed generator, so failures
//! reproduce) run on each backend under a budget and a timeout must end with a documented exit
//! status and, for anything but a halt or debug exit, a `picoqemu:` line on stderr.
use std::path::PathBuf;

mod common;
use common::{kvm_usable, picoqemu};

/// xorshift64*: a tiny deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn random_sector(rng: &mut Rng) -> Vec<u8> {
    let mut img: Vec<u8> = (0..510).map(|_| rng.next() as u8).collect();
    img.extend_from_slice(&[0x55, 0xAA]);
    img
}

fn check_random_guests(backend: &str, count: usize, seed: u64) {
    let mut rng = Rng(seed);
    for i in 0..count {
        let path =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli_robustness_{backend}_{i}.img"));
        std::fs::write(&path, random_sector(&mut rng)).expect("writing the image");
        let p = path.to_str().expect("UTF-8 path");
        let out = picoqemu(&[
            "run",
            "--backend",
            backend,
            "--timeout",
            "2s",
            "--max-instructions",
            "20000",
            "--screen",
            "ansi",
            "--regs",
            p,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{backend} guest {i} ({p}): {stderr}");
        let status = out.status.code().unwrap_or_else(|| panic!("{backend} guest {i}: killed by a signal"));
        match status {
            0 => {}
            s if s % 2 == 1 => {} // debug exit: the random code wrote to port 0xF4
            3 | 4 => {
                let first = stderr.lines().find(|l| l.starts_with("picoqemu: ")).unwrap_or("");
                assert!(!first.is_empty(), "{backend} guest {i}: no picoqemu: line: {stderr}");
            }
            other => panic!("{backend} guest {i} ({p}): unexpected exit status {other}: {stderr}"),
        }
    }
}

#[test]
fn random_boot_sectors_on_the_interpreter() {
    check_random_guests("interp", 40, 0x9E37_79B9_7F4A_7C15);
}

#[test]
fn random_boot_sectors_on_kvm() {
    if kvm_usable("random_boot_sectors_on_kvm") {
        check_random_guests("kvm", 10, 0xD1B5_4A32_D192_ED03);
    }
}
