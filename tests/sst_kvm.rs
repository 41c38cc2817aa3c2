//! Runs part of the shared SingleStepTests 80286 slice on KVM through the `sst` runner: forms
//! that KVM's instruction emulator handles (arithmetic, moves, stack, string, calls, MUL/DIV
//! with #DE) must all pass, which proves that the runner and the KVM backend work together
//! (one VM reused for every test, RAM restored between tests). The whole slice's KVM rate is
//! a finding, not a target: `picoqemu sst --backend kvm` reports it.
//!
//! Skips with a printed reason when /dev/kvm cannot be opened, unless PICOQEMU_REQUIRE_KVM=1.

use picoqemu::sst::{self, metadata::Metadata, runner, SuiteOptions};
use picoqemu_kvm::KvmBackend;

fn kvm_usable() -> bool {
    let open = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm");
    match open {
        Ok(_) => true,
        Err(e) => {
            if std::env::var("PICOQEMU_REQUIRE_KVM").as_deref() == Ok("1") {
                panic!("PICOQEMU_REQUIRE_KVM=1 but /dev/kvm cannot be opened: {e}");
            }
            eprintln!("SKIP: /dev/kvm cannot be opened: {e}");
            false
        }
    }
}

#[test]
fn kvm_passes_forms_its_emulator_supports() {
    if !kvm_usable() {
        return;
    }
    let Some(dir) = picoqemu_verify::shared::require("sst286") else { return };
    let files: Vec<_> = [
        "00", "01", "10", "28", "31", "50", "58", "88", "8B", "9C", "A4", "AA", "C3", "E8", "F6.4", "F7.6",
        "FF.2",
    ]
    .iter()
    .map(|f| dir.join(format!("{f}.MOO.gz")))
    .collect();
    let md = Metadata::load(&dir.join("metadata.json")).expect("metadata.json loads");
    let mut machine = sst::new_machine().expect("test machine");
    let mut cpu = KvmBackend::new(&machine).expect("KVM backend");
    let opts = SuiteOptions { max_shown: Some(20), limits: runner::kvm_limits(), ..SuiteOptions::default() };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let output = sst::Output { out: &mut out, err: &mut err };
    let summary = sst::run_files(&mut cpu, &mut machine, &md, &files, &opts, output).expect("run");
    let mut report = Vec::new();
    sst::print_report(&summary, "kvm", &mut report).expect("report");
    eprintln!("{}{}{}", String::from_utf8_lossy(&out), String::from_utf8_lossy(&report), summary.line());
    assert!(summary.file_errors.is_empty(), "{:?}", summary.file_errors);
    assert!(summary.passed > 3_000, "{}", summary.line());
    assert_eq!(summary.failed, 0, "{}", summary.line());
}
