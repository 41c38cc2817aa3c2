//! Whole-run comparison: the same start state on two machines, the reference backend (KVM)
//! runs freely, the candidate (the interpreter) runs traced, then everything is compared.
//!
//! The rule for guests that do not end by themselves: two states are only compared at an equal
//! instruction count. With `--max-instructions` both sides run exactly that many (KVM by
//! single step), so a budget on both sides still compares. A timeout stops each side after an
//! unrelated number of instructions, so a timeout on either side is "no verdict", never a
//! divergence (see [`super::whole_run_verdict`]).
use std::time::Instant;

use picoqemu_core::{Backend, CpuState, Machine, RunLimits, StopReason};

use super::compare::{compare, Comparison, Outcome};
use super::error::DiffError;
use super::flagmask::UndefTracker;
use super::history::History;
use super::trace::{run_traced, Trace};

/// A backend with the machine it runs.
#[derive(Debug)]
pub struct Side<B> {
    pub backend: B,
    pub machine: Machine,
}

impl<B: Backend> Side<B> {
    pub fn new(backend: B, machine: Machine) -> Self {
        Side { backend, machine }
    }
}

/// The result of a whole-run comparison.
#[derive(Debug, Clone)]
pub struct WholeRun {
    pub comparison: Comparison,
    /// The candidate's trace (steps, undefined flags, history).
    pub trace: Trace,
    /// Instructions the reference executed, when it can count them (KVM: under a budget).
    pub reference_steps: Option<u64>,
}

/// Runs both sides from `start` (their machines must already hold the same image) and
/// compares the results, masking the flags the candidate's executed instructions left
/// undefined. The reference runs freely with `ref_limits` (an instruction budget makes KVM
/// single-step, so fuzzing gives it only a deadline); the candidate is traced with
/// `cand_limits`.
pub fn whole_run<A: Backend, B: Backend>(
    reference: &mut Side<A>,
    candidate: &mut Side<B>,
    start: &CpuState,
    ref_limits: RunLimits,
    cand_limits: RunLimits,
) -> Result<WholeRun, DiffError> {
    reference.backend.set_state(start)?;
    candidate.backend.set_state(start)?;
    let stop_ref = reference
        .backend
        .run(&mut reference.machine, ref_limits)
        .unwrap_or_else(picoqemu_core::StopReason::from);
    let state_ref = reference.backend.state()?;
    let trace = run_traced(&mut candidate.backend, &mut candidate.machine, cand_limits)?;
    let state_cand = candidate.backend.state()?;
    let comparison = compare(
        (reference.backend.name(), candidate.backend.name()),
        (&mut reference.machine, Outcome { stop: stop_ref, state: state_ref }),
        (&mut candidate.machine, Outcome { stop: trace.stop.clone(), state: state_cand }),
        trace.undef.undefined(),
    );
    let reference_steps = reference.backend.stats().instructions;
    Ok(WholeRun { comparison, trace, reference_steps })
}

/// [`whole_run`] with a fast path: the candidate first runs freely (no per-instruction
/// tracing); when everything matches *without any masking*, that is the verdict. Only when
/// something differs is the candidate's machine restored with `reload` (which must put back the
/// image as it was before the run) and the candidate re-run traced, so that the undefined-flag
/// mask and the history are exact. The reference runs once.
pub fn whole_run_fast<A: Backend, B: Backend>(
    reference: &mut Side<A>,
    candidate: &mut Side<B>,
    start: &CpuState,
    ref_limits: RunLimits,
    cand_limits: RunLimits,
    reload: &mut dyn FnMut(&mut Machine) -> Result<(), DiffError>,
) -> Result<WholeRun, DiffError> {
    let phases =
        Phases { reference: ref_limits, candidate: &|| cand_limits, skip_traced_after_timeout: false };
    whole_run_phased(reference, candidate, start, phases, reload)
}

/// [`whole_run_fast`] within one deadline for everything (the `diff` command's `--timeout`):
/// the reference gets half of the time left, the candidate's runs the rest, and both stop
/// after `budget` instructions. When a side times out the traced re-run is skipped (a timeout
/// is no verdict, see the module doc).
pub fn whole_run_until<A: Backend, B: Backend>(
    reference: &mut Side<A>,
    candidate: &mut Side<B>,
    start: &CpuState,
    budget: Option<u64>,
    deadline: Option<Instant>,
    reload: &mut dyn FnMut(&mut Machine) -> Result<(), DiffError>,
) -> Result<WholeRun, DiffError> {
    let left = || deadline.map(|d| d.saturating_duration_since(Instant::now()));
    let reference_limits = RunLimits { max_instructions: budget, timeout: left().map(|t| t / 2) };
    let candidate_limits = || RunLimits { max_instructions: budget, timeout: left() };
    let phases =
        Phases { reference: reference_limits, candidate: &candidate_limits, skip_traced_after_timeout: true };
    whole_run_phased(reference, candidate, start, phases, reload)
}

/// The limits of each phase of [`whole_run_phased`].
struct Phases<'a> {
    reference: RunLimits,
    /// Asked once per candidate run (the free run and, if needed, the traced re-run).
    candidate: &'a dyn Fn() -> RunLimits,
    skip_traced_after_timeout: bool,
}

fn whole_run_phased<A: Backend, B: Backend>(
    reference: &mut Side<A>,
    candidate: &mut Side<B>,
    start: &CpuState,
    phases: Phases<'_>,
    reload: &mut dyn FnMut(&mut Machine) -> Result<(), DiffError>,
) -> Result<WholeRun, DiffError> {
    reference.backend.set_state(start)?;
    candidate.backend.set_state(start)?;
    let stop_ref =
        reference.backend.run(&mut reference.machine, phases.reference).unwrap_or_else(StopReason::from);
    let state_ref = reference.backend.state()?;
    let reference_steps = reference.backend.stats().instructions;
    let names = (reference.backend.name(), candidate.backend.name());
    let stop_free =
        candidate.backend.run(&mut candidate.machine, (phases.candidate)()).unwrap_or_else(StopReason::from);
    let state_free = candidate.backend.state()?;
    let timed_out = stop_ref == StopReason::Timeout || stop_free == StopReason::Timeout;
    let fast = compare(
        names,
        (&mut reference.machine, Outcome { stop: stop_ref.clone(), state: state_ref }),
        (&mut candidate.machine, Outcome { stop: stop_free.clone(), state: state_free }),
        0,
    );
    if fast.is_identical() || (timed_out && phases.skip_traced_after_timeout) {
        let steps = candidate.backend.stats().instructions.unwrap_or(0);
        let trace = Trace {
            stop: stop_free,
            steps,
            undef: UndefTracker::new(),
            history: History::new(),
            faults: 0,
            tf_rep: Default::default(),
        };
        return Ok(WholeRun { comparison: fast, trace, reference_steps });
    }
    reload(&mut candidate.machine)?;
    candidate.backend.set_state(start)?;
    let trace = run_traced(&mut candidate.backend, &mut candidate.machine, (phases.candidate)())?;
    let state_cand = candidate.backend.state()?;
    let comparison = compare(
        names,
        (&mut reference.machine, Outcome { stop: stop_ref, state: state_ref }),
        (&mut candidate.machine, Outcome { stop: trace.stop.clone(), state: state_cand }),
        trace.undef.undefined(),
    );
    Ok(WholeRun { comparison, trace, reference_steps })
}
