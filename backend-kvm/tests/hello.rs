//! The article's program on KVM: loaded raw at address 0, it draws five rows of ASCII-art
//! "Hello World!" with attribute 0x0A over the whole screen and halts.
mod common;

use picoqemu_core::{load_image, Backend, ImageKind, RunLimits, StopReason};
use picoqemu_kvm::KvmBackend;

const EXPECTED: [&str; 5] = [
    r" _   _      _ _        __        __         _     _ _",
    r"| | | | ___| | | ___   \ \      / /__  _ __| | __| | |",
    r"| |_| |/ _ \ | |/ _ \   \ \ /\ / / _ \| '__| |/ _` | |",
    r"|  _  |  __/ | | (_) |   \ V  V / (_) | |  | | (_| |_|",
    r"|_| |_|\___|_|_|\___/     \_/\_/ \___/|_|  |_|\__,_(_)",
];

#[test]
fn article_program_draws_hello_world() {
    if !common::kvm_available("article_program_draws_hello_world") {
        return;
    }
    let Some(path) = picoqemu_verify::shared::require("guests/seed_hello.bin") else { return };
    let image = std::fs::read(&path).expect("read the article's program");
    let mut m = common::machine();
    let start = load_image(&mut m, &image, ImageKind::Raw).expect("load");
    let mut kvm = KvmBackend::new(&m).expect("backend");
    kvm.set_state(&start).expect("set_state");
    let r = kvm.run(&mut m, RunLimits::timeout(std::time::Duration::from_secs(10))).expect("run");
    assert_eq!(r, StopReason::Halted);
    assert_eq!(m.screen_text(), EXPECTED.join("\n") + "\n");
    let vram = &m.ram_mut().bytes()[0xB8000..0xB8000 + 4000];
    assert!(vram.chunks(2).all(|c| c[1] == 0x0A), "every cell has attribute 0x0A");
    assert!(vram[5 * 160..].chunks(2).all(|c| c[0] == 0), "rows 6-25 hold NUL characters");
    // HLT is the only exit: VGA memory is RAM.
    assert_eq!(kvm.kvm_stats().pio_exits + kvm.kvm_stats().mmio_exits, 0);
    let st = kvm.state().unwrap();
    assert_eq!(m.ram_mut().bytes()[(st.eip - 1) as usize], 0xF4, "IP is past the HLT");
}
