//! The SingleStepTests 80286 real-mode suite (MOO / MOO.gz files) run on any [`Backend`] and
//! compared with what the silicon did, allowing only the documented differences between a 286
//! and a 386-or-later CPU in real mode. `picoqemu sst` and the interpreter's own tests both
//! run the suite through [`run_files`].
//!
//! * [`moo`] reads the files, [`metadata`] the suite's `metadata.json` (undefined-flag masks),
//! * [`classify`] decides which tests do not apply to a 386+ and which flags a 386+ leaves
//!   undefined, [`runner`] runs and compares one test at a time on one reused machine,
//!   [`fake`] is a CPU that replays the recorded results (for tests of the runner itself).
//!
//! Output of [`run_files`]: every failure (file, index, disassembly, bytes, stop reason, each
//! difference) and one line per file on `out`; files that cannot be read, are truncated or
//! corrupt as `picoqemu: PATH: why` lines on `err`, each counted as one failed test. The
//! caller prints [`print_report`] and finally exactly one line `sst: N passed, M failed, K skipped`.
pub mod classify;
pub mod fake;
pub mod metadata;
pub mod moo;
pub mod runner;

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use picoqemu_core::{Backend, CoreError, IoBus, Machine, MachineConfig, RunLimits};
use thiserror::Error;

use classify::{Form, SkipReason};
use metadata::Metadata;
use moo::{MooReader, Test};
use runner::{Expectation, Runner, TestResult, BATCH};

/// Why the suite's files cannot be found.
#[derive(Debug, Error)]
pub enum SuiteError {
    #[error("cannot open {}: {err}", path.display())]
    Open { path: PathBuf, err: io::Error },
    #[error("cannot list {}: {err}", path.display())]
    List { path: PathBuf, err: io::Error },
    #[error("{} holds no *.MOO or *.MOO.gz files", .0.display())]
    NoFiles(PathBuf),
    #[error("metadata.json was not found next to the test files; pass it with --metadata PATH")]
    NoMetadata,
}

/// Options of a suite run (the parsed form of `SstArgs` without backend and paths).
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// Forms to run; `None` runs everything.
    pub filter: Option<Vec<Form>>,
    pub limit: Option<usize>,
    pub verbose: bool,
    pub max_shown: Option<usize>,
    /// Limits of each test's run (see [`runner::interp_limits`], [`runner::kvm_limits`]).
    pub limits: RunLimits,
}

impl Default for SuiteOptions {
    fn default() -> Self {
        SuiteOptions {
            filter: None,
            limit: None,
            verbose: false,
            max_shown: None,
            limits: runner::interp_limits(),
        }
    }
}

/// Counts of a suite run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
    /// Skipped tests per form and reason.
    pub skipped_forms: BTreeMap<(Form, SkipReason), u64>,
    /// Failed tests per form.
    pub failed_forms: BTreeMap<Form, u64>,
    /// Files that could not be read (with the error), each also counted in `failed`; their
    /// readable tests are still counted.
    pub file_errors: Vec<String>,
}

impl Summary {
    /// Tests that were compared (passed + failed).
    pub fn applicable(&self) -> u64 {
        self.passed + self.failed
    }
    /// Passed / applicable, 0 when nothing was compared.
    pub fn pass_rate(&self) -> f64 {
        if self.applicable() == 0 {
            0.0
        } else {
            self.passed as f64 / self.applicable() as f64
        }
    }
    /// The final line: `sst: N passed, M failed, K skipped`.
    pub fn line(&self) -> String {
        format!("sst: {} passed, {} failed, {} skipped", self.passed, self.failed, self.skipped)
    }
}

/// The machine the tests run on: 1 MiB + 64 KiB of RAM (FFFF:FFFF is RAM, no A20 wrap) and a
/// bus on which no port is claimed, so IN reads FFh as on the test bench and OUT goes nowhere.
pub fn new_machine() -> Result<Machine, CoreError> {
    let config =
        MachineConfig { mem_size: picoqemu_core::MIN_MEM_SIZE, a20_wrap: false, ..MachineConfig::default() };
    Machine::new(config, IoBus::detached())
}

fn is_moo_name(p: &Path) -> bool {
    let n = p.file_name().map(|n| n.to_string_lossy().to_ascii_uppercase()).unwrap_or_default();
    n.ends_with(".MOO") || n.ends_with(".MOO.GZ")
}

/// The test files named by `paths`: files as given, directories expanded to their `*.MOO` and
/// `*.MOO.gz` files in name order.
pub fn find_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, SuiteError> {
    let mut files = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| SuiteError::Open { path: p.clone(), err: e })?;
        if meta.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| SuiteError::List { path: p.clone(), err: e })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && is_moo_name(f))
                .collect();
            if found.is_empty() {
                return Err(SuiteError::NoFiles(p.clone()));
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

/// `metadata.json` next to the first path (in the directory, or beside the file).
pub fn find_metadata(paths: &[PathBuf]) -> Result<PathBuf, SuiteError> {
    for p in paths {
        let dir = if p.is_dir() { Some(p.as_path()) } else { p.parent() };
        if let Some(d) = dir {
            let m = if d.as_os_str().is_empty() {
                PathBuf::from("metadata.json")
            } else {
                d.join("metadata.json")
            };
            if m.is_file() {
                return Ok(m);
            }
        }
    }
    Err(SuiteError::NoMetadata)
}

/// A test ready to run, or the reason it is not run.
enum Plan {
    Run(Expectation),
    Skip(SkipReason),
    Filtered,
    Malformed(String),
}

fn plan(test: &Test, md: &Metadata, filter: Option<&[Form]>) -> (Option<Form>, Plan) {
    let Some(d) = classify::decode(test.instruction()) else {
        return (None, Plan::Malformed("the test bytes end before the opcode".into()));
    };
    let form = d.form(md);
    if filter.is_some_and(|f| !f.iter().any(|x| x.selects(&form))) {
        return (Some(form), Plan::Filtered);
    }
    let info = md.lookup(form.opcode, form.reg);
    if let Some(r) = classify::skip_reason(test, &d, info) {
        return (Some(form), Plan::Skip(r));
    }
    let suite_mask = info.map_or(0xFFFF, |i| i.flags_mask);
    let exp = Expectation {
        flags_mask: 0x0FFF & suite_mask & classify::architectural_flags_mask(test, &d),
        pushed_flags_mask: suite_mask,
    };
    (Some(form), Plan::Run(exp))
}

/// Whether a file's form (from its name) can hold tests the filter selects.
fn file_selected(path: &Path, filter: Option<&[Form]>) -> bool {
    let (Some(filter), Some(name)) = (filter, path.file_name()) else {
        return true;
    };
    match Form::from_file_name(&name.to_string_lossy()) {
        Some(ff) => filter
            .iter()
            .any(|f| f.opcode == ff.opcode && (f.reg.is_none() || ff.reg.is_none() || f.reg == ff.reg)),
        None => true,
    }
}

struct Reporter<'a> {
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    opts: &'a SuiteOptions,
    shown: usize,
}

impl Reporter<'_> {
    /// A file that cannot be read, is truncated or corrupt: a `picoqemu:` line on `err`,
    /// counted as one failed test (the tests read before the error still count on their own).
    fn file_error(&mut self, summary: &mut Summary, path: &Path, e: &moo::MooError) -> io::Result<()> {
        writeln!(self.err, "picoqemu: {}: {e}", path.display())?;
        summary.file_errors.push(format!("{}: {e}", path.display()));
        summary.failed += 1;
        Ok(())
    }

    fn result(&mut self, file: &str, test: &Test, form: Option<Form>, r: &TestResult) -> io::Result<()> {
        let form = form.map_or_else(|| "??".to_string(), |f| f.to_string());
        let bytes: Vec<String> = test.bytes.iter().map(|b| format!("{b:02x}")).collect();
        if r.passed() {
            if self.opts.verbose {
                writeln!(self.out, "pass {file} #{} [{form}] {}", test.index, test.name)?;
            }
            return Ok(());
        }
        if self.opts.max_shown.is_some_and(|m| self.shown >= m) {
            return Ok(());
        }
        self.shown += 1;
        writeln!(
            self.out,
            "FAIL {file} #{} [{form}] {}  (bytes {})",
            test.index,
            test.name,
            bytes.join(" ")
        )?;
        writeln!(self.out, "    stop: {}", r.stop)?;
        if let Some(e) = test.exception {
            writeln!(self.out, "    the 286 took interrupt {}", e.vector)?;
        }
        for m in &r.mismatches {
            writeln!(self.out, "    {m}")?;
        }
        if self.opts.verbose {
            let regs: Vec<String> = moo::Reg16::ALL
                .iter()
                .map(|&x| format!("{}={:04x}", x.name(), test.init.regs.values[x as usize]))
                .collect();
            writeln!(self.out, "    init: {}", regs.join(" "))?;
        }
        Ok(())
    }
}

/// Where [`run_files`] writes: results to `out`, unreadable files to `err`.
pub struct Output<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
}

/// Runs `files` on `backend` + `machine` (RAM must be all zero), printing to `output`.
/// Returns the counts; the caller prints [`Summary::line`].
pub fn run_files(
    backend: &mut dyn Backend,
    machine: &mut Machine,
    md: &Metadata,
    files: &[PathBuf],
    opts: &SuiteOptions,
    output: Output<'_>,
) -> io::Result<Summary> {
    let mut summary = Summary::default();
    let mut runner = Runner::new(opts.limits);
    let mut rep = Reporter { out: output.out, err: output.err, opts, shown: 0 };
    let filter = opts.filter.as_deref();
    // RAM must start clean: the runner only ever restores what it wrote.
    let leftover = runner::take_stray_bytes(machine);
    if !leftover.is_empty() {
        writeln!(
            rep.out,
            "note: guest RAM was not clear before the run; cleared {} byte(s)",
            leftover.len()
        )?;
    }
    for path in files {
        if !file_selected(path, filter) {
            continue;
        }
        let name =
            path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        let mut reader = match MooReader::open(path) {
            Ok(r) => r,
            Err(e) => {
                rep.file_error(&mut summary, path, &e)?;
                continue;
            }
        };
        let (p0, f0, s0) = (summary.passed, summary.failed, summary.skipped);
        let mut batch: Vec<(Test, Option<Form>, Expectation)> = Vec::with_capacity(BATCH);
        let mut taken = 0usize;
        loop {
            let next = if opts.limit.is_some_and(|l| taken >= l) { None } else { reader.next_test() };
            let mut at_end = next.is_none();
            match next {
                Some(Ok(test)) => {
                    taken += 1;
                    match plan(&test, md, filter) {
                        (form, Plan::Run(exp)) => batch.push((test, form, exp)),
                        (Some(form), Plan::Skip(reason)) => {
                            summary.skipped += 1;
                            *summary.skipped_forms.entry((form, reason)).or_default() += 1;
                        }
                        (None, Plan::Skip(_)) | (_, Plan::Filtered) => {}
                        (form, Plan::Malformed(why)) => {
                            summary.failed += 1;
                            *summary
                                .failed_forms
                                .entry(form.unwrap_or(Form { opcode: 0xFFFF, reg: None }))
                                .or_default() += 1;
                            writeln!(
                                rep.out,
                                "FAIL {name} #{} {}: malformed test: {why}",
                                test.index, test.name
                            )?;
                        }
                    }
                }
                Some(Err(e)) => {
                    // The reader stops after an error; the tests read so far still run.
                    rep.file_error(&mut summary, path, &e)?;
                    at_end = true;
                }
                None => {}
            }
            if batch.len() >= BATCH || (at_end && !batch.is_empty()) {
                let items: Vec<(&Test, Expectation)> = batch.iter().map(|(t, _, e)| (t, *e)).collect();
                let results = runner.run_batch(backend, machine, &items);
                for ((test, form, _), r) in batch.iter().zip(&results) {
                    if r.passed() {
                        summary.passed += 1;
                    } else {
                        summary.failed += 1;
                        *summary
                            .failed_forms
                            .entry(form.unwrap_or(Form { opcode: 0xFFFF, reg: None }))
                            .or_default() += 1;
                    }
                    rep.result(&name, test, *form, r)?;
                }
                batch.clear();
            }
            if at_end {
                break;
            }
        }
        writeln!(
            rep.out,
            "{name}: {} passed, {} failed, {} skipped",
            summary.passed - p0,
            summary.failed - f0,
            summary.skipped - s0
        )?;
    }
    Ok(summary)
}

/// Prints the skipped forms, the failed forms and the pass rate (everything but the final line).
pub fn print_report(summary: &Summary, backend: &str, out: &mut dyn Write) -> io::Result<()> {
    if !summary.skipped_forms.is_empty() {
        writeln!(out, "skipped (forms that do not apply to a 386+ in real mode):")?;
        for reason in SkipReason::ALL {
            let forms: Vec<String> = summary
                .skipped_forms
                .iter()
                .filter(|((_, r), _)| *r == reason)
                .map(|((f, _), n)| format!("{f} ({n})"))
                .collect();
            if !forms.is_empty() {
                let total: u64 =
                    summary.skipped_forms.iter().filter(|((_, r), _)| *r == reason).map(|(_, n)| n).sum();
                writeln!(out, "  {total} test(s): {}", reason.describe())?;
                writeln!(out, "      forms: {}", forms.join(", "))?;
            }
        }
    }
    if !summary.failed_forms.is_empty() {
        let forms: Vec<String> = summary.failed_forms.iter().map(|(f, n)| format!("{f} ({n})")).collect();
        writeln!(out, "failed forms: {}", forms.join(", "))?;
    }
    if !summary.file_errors.is_empty() {
        let n = summary.file_errors.len();
        writeln!(out, "unreadable: {n} file(s), each counted as a failed test (the reasons are on stderr)")?;
    }
    writeln!(
        out,
        "backend {backend}: {:.3}% of {} applicable tests passed",
        summary.pass_rate() * 100.0,
        summary.applicable()
    )
}

#[cfg(test)]
mod tests {
    use super::fake::{FakeCpu, Fault};
    use super::*;

    /// The shared slice, or `None` (the test skips, or fails under PICOQEMU_REQUIRE_SHARED=1).
    fn shared() -> Option<PathBuf> {
        crate::shared::require("sst286")
    }

    fn forms(s: &str) -> Vec<Form> {
        s.split(',').map(|f| Form::parse(f).unwrap()).collect()
    }

    fn quiet<'a>(out: &'a mut Vec<u8>, err: &'a mut Vec<u8>) -> Output<'a> {
        Output { out, err }
    }

    #[test]
    fn files_are_selected_by_the_form_in_their_name() {
        let f = forms("80.1");
        assert!(file_selected(Path::new("80.1.MOO.gz"), Some(&f)));
        assert!(file_selected(Path::new("80.MOO.gz"), Some(&f)));
        assert!(!file_selected(Path::new("80.2.MOO.gz"), Some(&f)));
        assert!(!file_selected(Path::new("00.MOO.gz"), Some(&f)));
        assert!(file_selected(Path::new("custom.moo"), Some(&f)));
    }

    #[test]
    fn finds_files_and_metadata() {
        let Some(dir) = shared() else { return };
        let files = find_files(std::slice::from_ref(&dir)).unwrap();
        assert_eq!(files.len(), 325);
        assert!(files.iter().all(|f| is_moo_name(f)));
        assert_eq!(find_metadata(&[dir.join("00.MOO.gz")]).unwrap(), dir.join("metadata.json"));
        assert!(find_files(&[dir.join("missing.MOO")]).is_err());
        assert!(find_metadata(&[PathBuf::from("/")]).is_err());
    }

    /// The whole shared slice through a CPU that applies each test's recorded final state:
    /// every applicable test must pass, and the skips must be exactly the documented ones.
    #[test]
    fn the_whole_slice_passes_on_a_perfect_cpu_with_the_documented_skips() {
        let Some(dir) = shared() else { return };
        let files = find_files(std::slice::from_ref(&dir)).unwrap();
        let md = Metadata::load(&dir.join("metadata.json")).unwrap();
        let all = files.iter().flat_map(|f| MooReader::open(f).unwrap().map(|t| t.unwrap()));
        let mut cpu = FakeCpu::new(all, Fault::None);
        let mut m = new_machine().unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let s = run_files(&mut cpu, &mut m, &md, &files, &SuiteOptions::default(), quiet(&mut out, &mut err))
            .unwrap();
        let text = String::from_utf8_lossy(&out);
        assert_eq!(s.failed, 0, "{text}");
        assert!(s.file_errors.is_empty() && err.is_empty());
        assert_eq!(s.passed + s.skipped, 65_000);
        let by_reason = |r: SkipReason| -> u64 {
            s.skipped_forms.iter().filter(|((_, x), _)| *x == r).map(|(_, n)| n).sum()
        };
        // SOURCE.md's table, reconciled (a test is counted under its first reason only):
        // * LOCK: 1,127, of which 8 are D8 tests already skipped as x87.
        // * longer than 10 bytes: 13 tests, but 2 of them (62 and C5 with mod = 3) raise #UD on
        //   the 286 as they do on a 386+, so they are compared; 11 are skipped.
        // * SS overrun: SOURCE's 24, plus 3 string forms with an SS: override on the source
        //   (`ss movsw`, `ss repne movsw`, `ss cmpsw` with SI reaching FFFFh), minus `lock leave`
        //   (counted under LOCK).
        assert_eq!(by_reason(SkipReason::Fpu), 200);
        assert_eq!(by_reason(SkipReason::LockNotLockable), 1127 - 8);
        assert_eq!(by_reason(SkipReason::TooLong), 13 - 2);
        assert_eq!(by_reason(SkipReason::MovFsGs), 6);
        assert_eq!(by_reason(SkipReason::StackOverrun), 24 + 3 - 1);
        // Not in SOURCE.md: string forms faulting with int 13 (78 tests: 2 are counted under
        // LOCK, 3 with an SS: source under SS overrun).
        assert_eq!(by_reason(SkipReason::StringFault), 78 - 2 - 3);
        assert_eq!(s.skipped, 1362 + 73);
        let mut report = Vec::new();
        print_report(&s, "fake", &mut report).unwrap();
        let report = String::from_utf8_lossy(&report);
        assert!(report.contains("backend fake: 100.000% of 63565 applicable tests passed"), "{report}");
        assert_eq!(s.line(), "sst: 63565 passed, 0 failed, 1435 skipped");
    }

    #[test]
    fn failures_are_printed_with_their_details_and_counted() {
        let Some(dir) = shared() else { return };
        let file = dir.join("00.MOO.gz");
        let md = Metadata::load(&dir.join("metadata.json")).unwrap();
        let mut cpu = FakeCpu::new(MooReader::open(&file).unwrap().map(|t| t.unwrap()), Fault::Flags(1));
        cpu.fault_index = Some(3);
        let mut m = new_machine().unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let opts = SuiteOptions { limit: Some(10), ..SuiteOptions::default() };
        let s = run_files(&mut cpu, &mut m, &md, &[file], &opts, quiet(&mut out, &mut err)).unwrap();
        assert_eq!((s.passed, s.failed, s.skipped), (9, 1, 0));
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("FAIL 00.MOO.gz #3 [00] "), "{text}");
        assert!(text.contains("stop: halted"), "{text}");
        assert!(text.contains("differ: CF"), "{text}");
        assert!(text.contains("00.MOO.gz: 9 passed, 1 failed, 0 skipped"), "{text}");
    }

    #[test]
    fn a_filter_selects_forms_by_decoded_opcode_and_reg() {
        let Some(dir) = shared() else { return };
        let md = Metadata::load(&dir.join("metadata.json")).unwrap();
        let files: Vec<PathBuf> =
            ["80.1.MOO.gz", "80.2.MOO.gz", "00.MOO.gz"].iter().map(|f| dir.join(f)).collect();
        let all = files.iter().flat_map(|f| MooReader::open(f).unwrap().map(|t| t.unwrap()));
        let mut cpu = FakeCpu::new(all, Fault::None);
        let mut m = new_machine().unwrap();
        let opts = SuiteOptions { filter: Some(forms("80.2")), ..SuiteOptions::default() };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let s = run_files(&mut cpu, &mut m, &md, &files, &opts, quiet(&mut out, &mut err)).unwrap();
        assert_eq!(s.passed + s.skipped, 200);
        assert!(s.skipped_forms.keys().all(|(f, _)| f.to_string() == "80.2"));
    }

    #[test]
    fn a_corrupt_file_is_an_error_on_err_and_a_failure() {
        let dir = std::env::temp_dir().join(format!("picoqemu-sst-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("00.MOO");
        std::fs::write(&bad, b"MOO \x0c\x00\x00").unwrap();
        let md = Metadata::default();
        let mut cpu = FakeCpu::new(Vec::new(), Fault::None);
        let mut m = new_machine().unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let opts = SuiteOptions::default();
        let s = run_files(&mut cpu, &mut m, &md, &[bad], &opts, quiet(&mut out, &mut err)).unwrap();
        assert_eq!(s.file_errors.len(), 1);
        assert!(s.file_errors[0].contains("truncated"), "{:?}", s.file_errors);
        assert_eq!((s.passed, s.failed), (0, 1));
        let err = String::from_utf8_lossy(&err);
        assert!(err.starts_with("picoqemu: ") && err.contains("truncated"), "{err}");
        assert!(!String::from_utf8_lossy(&out).contains("error"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
