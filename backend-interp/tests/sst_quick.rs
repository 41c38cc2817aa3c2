//! Development check of the interpreter against the SingleStepTests 80286 real-mode slice in
//! `../shared/sst286` (MOO format, see SOURCE.md there), through the one suite runner
//! (`picoqemu_verify::sst`, the same code as `picoqemu sst`), so the interpreter can be checked
//! from its own crate. Tests of forms that legitimately differ on a 386+ are skipped as
//! SOURCE.md says. Set `SST_VERBOSE=1` to print each failure, `SST_FILTER=F6.7,00` to run some
//! forms only. Skips with a printed reason without `../shared` (fails under
//! `PICOQEMU_REQUIRE_SHARED=1`).
use picoqemu_interp::InterpBackend;
use picoqemu_verify::sst::{self, classify::Form, metadata::Metadata, Output, SuiteOptions};

#[test]
fn sst286_slice() {
    let Some(dir) = picoqemu_verify::shared::require("sst286") else { return };
    let files = sst::find_files(std::slice::from_ref(&dir)).expect("the slice's files");
    let md = Metadata::load(&dir.join("metadata.json")).expect("metadata.json");
    let verbose = std::env::var("SST_VERBOSE").is_ok();
    let filter = std::env::var("SST_FILTER").ok().map(|f| {
        f.split(',')
            .map(|x| Form::parse(x.trim()).unwrap_or_else(|| panic!("SST_FILTER: bad form {x:?}")))
            .collect()
    });
    let opts =
        SuiteOptions { filter, max_shown: if verbose { None } else { Some(0) }, ..SuiteOptions::default() };
    let mut machine = sst::new_machine().expect("machine");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let output = Output { out: &mut out, err: &mut err };
    let s = sst::run_files(&mut InterpBackend::new(), &mut machine, &md, &files, &opts, output).expect("run");
    if verbose {
        eprintln!("{}", String::from_utf8_lossy(&out));
    }
    eprintln!("failed forms: {:?}", s.failed_forms);
    eprintln!("{}", s.line());
    assert!(s.file_errors.is_empty(), "{}", String::from_utf8_lossy(&err));
    // 99.9% of the applicable tests, in integers.
    assert!(s.failed * 1000 <= s.applicable(), "pass rate {:.5} below 99.9%", s.pass_rate());
}
