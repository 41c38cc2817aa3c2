//! `picoqemu sst`: runs the SingleStepTests 80286 real-mode suite (MOO / MOO.gz files) on the
//! interpreter or on KVM and compares every test with what the silicon did, allowing only the
//! documented differences between a 286 and a 386-or-later CPU in real mode.
//!
//!
//! The reader, the classification and the runner are `picoqemu_verify::sst` (re-exported here);
//! this module is the command: its arguments, the backend choice and the exit status.
//!
//! Output: every failure (file, index, disassembly, bytes, stop reason, each difference), one
//! line per file on stdout; files that cannot be read, are truncated or corrupt as
//! `picoqemu: PATH: why` lines on stderr, each counted as a failed test; the skipped forms with
//! their reasons and counts, and finally exactly one line `sst: N passed, M failed, K skipped`.
pub use picoqemu_verify::sst::*;

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use picoqemu_core::Backend;

use classify::Form;
use metadata::Metadata;

/// Which CPU runs the tests.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SstBackend {
    /// The software interpreter.
    Interp,
    /// The host's KVM (here: its in-kernel instruction emulator; its failures are findings).
    Kvm,
}

/// Arguments of `picoqemu sst`.
#[derive(clap::Args, Debug, Clone)]
pub struct SstArgs {
    /// The CPU to test.
    #[arg(long, value_enum, default_value_t = SstBackend::Interp)]
    pub backend: SstBackend,
    /// Only these forms: comma-separated opcodes or opcode.reg, e.g. "00,80.1,F6".
    #[arg(long, value_name = "OPCODES")]
    pub filter: Option<String>,
    /// Print every test, and the initial registers of each failure.
    #[arg(long, short)]
    pub verbose: bool,
    /// At most this many tests from each file.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// The suite's metadata.json (default: next to the test files).
    #[arg(long, value_name = "PATH")]
    pub metadata: Option<PathBuf>,
    /// Print at most this many failures in detail (default: all; counts stay exact).
    #[arg(long, value_name = "N")]
    pub max_shown: Option<usize>,
    /// MOO / MOO.gz files, or directories holding them.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// Parses a filter like `00,80.1,F6`.
pub fn parse_filter(s: &str) -> anyhow::Result<Vec<Form>> {
    let forms = s
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| {
            Form::parse(x).with_context(|| format!("bad form {x:?} in --filter (expected e.g. 00, 80.1, F6)"))
        })
        .collect::<anyhow::Result<Vec<Form>>>()?;
    if forms.is_empty() {
        bail!("--filter {s:?} names no form");
    }
    Ok(forms)
}

/// `picoqemu sst`: returns the process exit code (0 only when nothing failed and every file
/// could be read).
pub fn run(args: &SstArgs) -> anyhow::Result<i32> {
    let files = find_files(&args.paths)?;
    let md_path = match &args.metadata {
        Some(p) => p.clone(),
        None => find_metadata(&args.paths)?,
    };
    let md = Metadata::load(&md_path).with_context(|| format!("cannot load {}", md_path.display()))?;
    let opts = SuiteOptions {
        filter: args.filter.as_deref().map(parse_filter).transpose()?,
        limit: args.limit,
        verbose: args.verbose,
        max_shown: args.max_shown,
        limits: match args.backend {
            SstBackend::Interp => runner::interp_limits(),
            SstBackend::Kvm => runner::kvm_limits(),
        },
    };
    let mut machine = new_machine().context("cannot create the test machine")?;
    let mut backend: Box<dyn Backend> = match args.backend {
        SstBackend::Interp => Box::new(picoqemu_interp::InterpBackend::new()),
        SstBackend::Kvm => {
            Box::new(picoqemu_kvm::KvmBackend::new(&machine).context("cannot use --backend kvm")?)
        }
    };
    let start = Instant::now();
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut err = io::stderr();
    let summary = run_files(
        backend.as_mut(),
        &mut machine,
        &md,
        &files,
        &opts,
        Output { out: &mut out, err: &mut err },
    )?;
    if summary.applicable() + summary.skipped == 0 && summary.file_errors.is_empty() {
        out.flush()?;
        bail!("no test was selected (check --filter and the paths)");
    }
    print_report(&summary, backend.name(), &mut out)?;
    writeln!(out, "time: {:.2} s", start.elapsed().as_secs_f64())?;
    writeln!(out, "{}", summary.line())?;
    out.flush()?;
    Ok(if summary.failed == 0 && summary.file_errors.is_empty() { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The shared slice, or `None` (the test skips, or fails under PICOQEMU_REQUIRE_SHARED=1).
    fn shared() -> Option<PathBuf> {
        picoqemu_verify::shared::require("sst286")
    }

    #[test]
    fn filters_parse() {
        assert_eq!(parse_filter("00, 80.1,F6").unwrap().len(), 3);
        assert!(parse_filter("zz").is_err());
        assert!(parse_filter(",").is_err());
        assert_eq!(parse_filter("80.1").unwrap(), vec![Form { opcode: 0x80, reg: Some(1) }]);
    }

    fn args(paths: Vec<PathBuf>) -> SstArgs {
        SstArgs {
            backend: SstBackend::Interp,
            filter: None,
            verbose: false,
            limit: Some(2),
            metadata: None,
            max_shown: Some(0),
            paths,
        }
    }

    #[test]
    fn run_reports_bad_input_as_errors() {
        let Some(shared) = shared() else { return };
        // A path that does not exist, a bad filter, a filter that selects nothing, no metadata.
        assert!(run(&args(vec![shared.join("nope.MOO.gz")])).is_err());
        let mut a = args(vec![shared.join("00.MOO.gz")]);
        a.filter = Some("xyz".into());
        assert!(run(&a).is_err());
        a.filter = Some("F6".into());
        let e = run(&a).unwrap_err().to_string();
        assert!(e.contains("no test was selected"), "{e}");
        let dir = std::env::temp_dir().join(format!("picoqemu-sst-md-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(shared.join("00.MOO.gz"), dir.join("00.MOO.gz")).unwrap();
        let e = run(&args(vec![dir.clone()])).unwrap_err().to_string();
        assert!(e.contains("--metadata"), "{e}");
        let mut a = args(vec![dir.clone()]);
        a.metadata = Some(dir.join("missing.json"));
        assert!(run(&a).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn run_exits_non_zero_on_an_unreadable_file() {
        let dir = std::env::temp_dir().join(format!("picoqemu-sst-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("00.MOO"), b"MOO \x0c\x00\x00\x00\x01\x00").unwrap();
        std::fs::write(dir.join("metadata.json"), br#"{"opcodes": {}}"#).unwrap();
        let mut a = args(vec![dir.clone()]);
        a.metadata = Some(dir.join("metadata.json"));
        assert!(Path::new(&dir).is_dir());
        assert_eq!(run(&a).unwrap(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
