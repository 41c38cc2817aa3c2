//! Resources over many VMs (issue 14): 10,000 sequential create / run / destroy cycles of a
//! KVM backend leave the process with the same open file descriptors and about the same
//! resident memory. Run it in release (`cargo test --release -p picoqemu-kvm --test
//! resources`); it is the only test in this binary, so no other test opens descriptors
//! meanwhile.
mod common;

use std::time::Duration;

use picoqemu_core::{Backend, RunLimits, StopReason};

const CYCLES: usize = 10_000;
const WARM_UP: usize = 100;
/// Allowed RSS growth: a leak of 400 bytes per cycle would exceed it.
const RSS_SLACK: u64 = 4 << 20;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count()
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).expect("resident field").parse().expect("number");
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    pages * page
}

/// One VM: machine, backend, a guest that does port I/O and halts, destroyed at the end.
fn cycle() {
    // out 0x80, al / inc ax / hlt
    let (mut m, mut b, _) = common::setup(&[0xE6, 0x80, 0x40, 0xF4]);
    let r = b.run(&mut m, RunLimits::timeout(Duration::from_secs(10))).expect("run");
    assert_eq!(r, StopReason::Halted);
}

#[test]
fn ten_thousand_vms_leak_no_descriptors_or_memory() {
    if !common::kvm_available("ten_thousand_vms_leak_no_descriptors_or_memory") {
        return;
    }
    for _ in 0..WARM_UP {
        cycle();
    }
    let (fds, rss) = (open_fds(), rss_bytes());
    let start = std::time::Instant::now();
    for i in 0..CYCLES {
        cycle();
        if i % 1000 == 999 {
            assert_eq!(open_fds(), fds, "descriptors grew after {} cycles", i + 1);
        }
    }
    eprintln!("{CYCLES} KVM VM cycles took {:?}", start.elapsed());
    assert_eq!(open_fds(), fds, "open file descriptors grew");
    let grown = rss_bytes().saturating_sub(rss);
    assert!(grown <= RSS_SLACK, "RSS grew by {grown} bytes over {CYCLES} VMs");
}
