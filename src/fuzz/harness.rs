//! Running one generated program on a reference/candidate pair and classifying the result:
//! same, divergent (with the report and both final states) or skipped (KVM's emulator cannot
//! run an instruction, or the program did not terminate).
use std::time::Duration;

use picoqemu_core::{load_image, ImageKind, RunLimits, StopReason};

use super::program::Program;
use crate::diff::compare::Outcome;
use crate::diff::known::{classify_divergence, classify_reference_stop, classify_whole_run, Known};
use crate::diff::lockstep::{lockstep, LockstepEnd};
use crate::diff::stepper::StepBackend;
use crate::diff::wholerun::{whole_run_fast, Side};
use crate::diff::{disasm, lockstep_verdict, whole_run_verdict, DiffError};

/// Instruction budget of the candidate for one program (generated programs are far shorter).
pub const FUZZ_BUDGET: u64 = 2_000_000;
/// Wall-clock limit per whole run of one program.
pub const FUZZ_TIMEOUT: Duration = Duration::from_secs(2);
/// Wall-clock limit per lockstep run of one program (single-stepping KVM is ~15x slower).
pub const LOCKSTEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a program has no verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// KVM's instruction emulator cannot execute this instruction (its mnemonic).
    KvmCannotEmulate(String),
    /// Neither side finished within the limits.
    NoTermination,
    /// A documented difference of KVM's emulator (its id in `docs/known-differences.md`).
    Known(&'static str),
    /// The program could not be laid out (a generator bug; the message says why).
    Generator(String),
}

/// A divergence: the report text, its signature and both final states.
#[derive(Debug, Clone)]
pub struct Finding {
    pub report: String,
    pub signature: Vec<String>,
    pub reference: Outcome,
    pub candidate: Outcome,
    /// An instruction read a flag an earlier one left undefined (the difference may be legitimate).
    pub tainted: bool,
    /// Found in lockstep mode.
    pub lockstep: bool,
}

/// The classification of one program.
#[derive(Debug, Clone)]
pub enum Verdict {
    Same,
    Divergent(Box<Finding>),
    Skipped(SkipReason),
    /// A documented difference of KVM's emulator (see [`crate::diff::known`]).
    Known(Known),
}

/// A reference/candidate pair reused for many programs.
pub struct Worker<R: StepBackend, C: StepBackend> {
    pub reference: Side<R>,
    pub candidate: Side<C>,
    pub lockstep: bool,
}

impl<R: StepBackend, C: StepBackend> Worker<R, C> {
    pub fn new(reference: Side<R>, candidate: Side<C>, lockstep: bool) -> Self {
        Worker { reference, candidate, lockstep }
    }

    fn load(&mut self, image: &[u8]) -> Result<picoqemu_core::CpuState, DiffError> {
        self.reference.machine.reset();
        self.reference.backend.reset_for_reuse(&mut self.reference.machine)?;
        self.candidate.machine.reset();
        self.candidate.backend.reset_for_reuse(&mut self.candidate.machine)?;
        let start = load_image(&mut self.reference.machine, image, ImageKind::Raw)?;
        load_image(&mut self.candidate.machine, image, ImageKind::Raw)?;
        Ok(start)
    }

    /// Runs `prog` on both sides and classifies the result.
    pub fn run_program(&mut self, prog: &Program) -> Result<Verdict, DiffError> {
        let asm = match prog.assemble() {
            Ok(a) => a,
            Err(e) => return Ok(Verdict::Skipped(SkipReason::Generator(e.to_string()))),
        };
        self.run_image(&asm.image)
    }

    /// Runs a raw image on both sides and classifies the result.
    pub fn run_image(&mut self, image: &[u8]) -> Result<Verdict, DiffError> {
        let start = self.load(image)?;
        let limits = RunLimits { max_instructions: Some(FUZZ_BUDGET), timeout: Some(FUZZ_TIMEOUT) };
        if self.lockstep {
            let ls_limits =
                RunLimits { max_instructions: Some(FUZZ_BUDGET), timeout: Some(LOCKSTEP_TIMEOUT) };
            let l = lockstep(&mut self.reference, &mut self.candidate, &start, ls_limits)?;
            match &l.end {
                LockstepEnd::Stopped(StopReason::BudgetExhausted | StopReason::Timeout) => {
                    return Ok(Verdict::Skipped(SkipReason::NoTermination))
                }
                LockstepEnd::Stopped(_) => return Ok(Verdict::Same),
                LockstepEnd::ReferenceFailed(stop) => {
                    let ram = self.reference.machine.ram_mut().bytes();
                    if let Some(k) = classify_reference_stop(stop, &start, ram) {
                        return Ok(Verdict::Known(k));
                    }
                    return Ok(Verdict::Skipped(skip_for(stop)));
                }
                LockstepEnd::Diverged(d) => {
                    if let Some(k) = classify_divergence(d) {
                        return Ok(Verdict::Known(k));
                    }
                    let (_, report) = lockstep_verdict(&l);
                    return Ok(Verdict::Divergent(Box::new(Finding {
                        report,
                        signature: d.comparison.signature(),
                        reference: d.comparison.left.clone(),
                        candidate: d.comparison.right.clone(),
                        tainted: l.undef.taint().is_some(),
                        lockstep: true,
                    })));
                }
                LockstepEnd::GuestTrapFlag { .. } => {
                    // Fall back to a whole-run comparison from a fresh load.
                    self.load(image)?;
                }
            }
        }
        let ref_limits = RunLimits { max_instructions: None, timeout: Some(FUZZ_TIMEOUT) };
        let mut reload = |m: &mut picoqemu_core::Machine| -> Result<(), DiffError> {
            m.reset();
            load_image(m, image, ImageKind::Raw)?;
            Ok(())
        };
        let w = whole_run_fast(
            &mut self.reference,
            &mut self.candidate,
            &start,
            ref_limits,
            limits,
            &mut reload,
        )?;
        let c = &w.comparison;
        if let StopReason::EmulationFailure { .. } = c.left.stop {
            return Ok(Verdict::Skipped(skip_for(&c.left.stop)));
        }
        if c.is_identical() {
            if matches!(c.left.stop, StopReason::BudgetExhausted | StopReason::Timeout) {
                return Ok(Verdict::Skipped(SkipReason::NoTermination));
            }
            return Ok(Verdict::Same);
        }
        let limit = |s: &StopReason| matches!(s, StopReason::BudgetExhausted | StopReason::Timeout);
        if limit(&c.left.stop) && limit(&c.right.stop) {
            return Ok(Verdict::Skipped(SkipReason::NoTermination));
        }
        if let Some(k) =
            classify_reference_stop(&c.left.stop, &c.left.state, self.reference.machine.ram_mut().bytes())
        {
            return Ok(Verdict::Known(k));
        }
        if let Some(k) = classify_whole_run(
            c,
            &w.trace.tf_rep,
            self.reference.machine.ram_mut().bytes(),
            self.candidate.machine.ram_mut().bytes(),
        ) {
            return Ok(Verdict::Known(k));
        }
        let (_, report) = whole_run_verdict(&w);
        let tainted = w.trace.undef.taint().is_some();
        if !self.lockstep && !tainted {
            // Locate the first differing instruction; a known difference there explains it.
            self.lockstep = true;
            let located = self.run_image(image);
            self.lockstep = false;
            if let Verdict::Known(k) = located? {
                return Ok(Verdict::Known(k));
            }
        }
        Ok(Verdict::Divergent(Box::new(Finding {
            report,
            signature: c.signature(),
            reference: c.left.clone(),
            candidate: c.right.clone(),
            tainted,
            lockstep: false,
        })))
    }
}

fn skip_for(stop: &StopReason) -> SkipReason {
    match stop {
        StopReason::EmulationFailure { bytes, .. } => {
            SkipReason::KvmCannotEmulate(disasm::mnemonic(bytes.as_slice()))
        }
        other => SkipReason::KvmCannotEmulate(other.to_string()),
    }
}
