//! Runs the whole shared SingleStepTests 80286 slice (`../shared/sst286`, 65,000 tests) on the
//! interpreter and requires at least 99.9% of the applicable tests to pass (the target).
use picoqemu::sst::{self, metadata::Metadata, SuiteOptions};
use picoqemu_interp::InterpBackend;

#[test]
fn interpreter_passes_the_shared_sst286_slice() {
    let Some(dir) = picoqemu_verify::shared::require("sst286") else { return };
    let files = sst::find_files(std::slice::from_ref(&dir)).expect("the shared slice is present");
    assert_eq!(files.len(), 325, "the shared slice has 325 files");
    let md = Metadata::load(&dir.join("metadata.json")).expect("metadata.json loads");
    let mut machine = sst::new_machine().expect("test machine");
    let mut cpu = InterpBackend::new();
    // Details of the first failures only; the counts are exact.
    let opts = SuiteOptions { max_shown: Some(40), ..SuiteOptions::default() };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let output = sst::Output { out: &mut out, err: &mut err };
    let summary = sst::run_files(&mut cpu, &mut machine, &md, &files, &opts, output).expect("run");
    let mut report = Vec::new();
    sst::print_report(&summary, "interp", &mut report).expect("report");
    let text = String::from_utf8_lossy(&out);
    let failures: Vec<&str> = text.lines().filter(|l| !l.contains(".MOO.gz: ")).collect();
    eprintln!("{}", failures.join("\n"));
    eprintln!("{}{}", String::from_utf8_lossy(&report), summary.line());
    assert!(summary.file_errors.is_empty(), "unreadable files: {:?}", summary.file_errors);
    assert_eq!(summary.applicable() + summary.skipped, 65_000);
    // 99.9% of the applicable tests, in integers: failed * 1000 <= applicable.
    assert!(
        summary.failed * 1000 <= summary.applicable(),
        "pass rate {:.3}% is below 99.9% ({})",
        summary.pass_rate() * 100.0,
        summary.line()
    );
}
