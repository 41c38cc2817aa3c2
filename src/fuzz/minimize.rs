//! Delta debugging (Zeller's ddmin, [`picoqemu_verify::shrink`]) of a divergent program: first over its list of units, then
//! over its start state (registers to zero, flags to the reset value, data to zero), keeping a
//! change only while the program still shows an *unexplained* divergence (not a known
//! difference, not skipped) that reads no undefined flag. The kind of difference may change
//! on the way (a CF bug seen through a pushed FLAGS word minimises to the bare instruction
//! whose CF differs); the minimised program's own report is what gets written.
use picoqemu_verify::shrink::{ddmin, Oracle};

use super::harness::{Finding, Verdict, Worker};
use super::program::Program;
use crate::diff::stepper::StepBackend;
use crate::diff::DiffError;

/// Most test runs one minimisation may spend.
pub const MAX_TESTS: usize = 600;

/// A minimised program and its finding.
#[derive(Debug, Clone)]
pub struct Minimised {
    pub program: Program,
    pub finding: Finding,
    /// Test runs spent.
    pub tests: usize,
}

struct Ctx<'w, R: StepBackend, C: StepBackend> {
    worker: &'w mut Worker<R, C>,
    signature: Vec<String>,
    tests: usize,
}

impl<R: StepBackend, C: StepBackend> Oracle<Program> for Ctx<'_, R, C> {
    type Finding = Finding;
    type Error = DiffError;

    /// The finding if `p` still shows the divergence.
    fn check(&mut self, p: &Program) -> Result<Option<Finding>, DiffError> {
        if self.tests >= MAX_TESTS {
            return Ok(None);
        }
        self.tests += 1;
        match self.worker.run_program(p)? {
            Verdict::Divergent(f) if !f.tainted && !self.signature.is_empty() => Ok(Some(*f)),
            _ => Ok(None),
        }
    }

    fn exhausted(&self) -> bool {
        self.tests >= MAX_TESTS
    }
}

/// Minimises `program`, known to diverge with `finding`.
pub fn minimise<R: StepBackend, C: StepBackend>(
    worker: &mut Worker<R, C>,
    program: &Program,
    finding: &Finding,
) -> Result<Minimised, DiffError> {
    let mut cx = Ctx { worker, signature: finding.signature.clone(), tests: 0 };
    let mut best = program.clone();
    let mut best_finding = finding.clone();
    // ddmin over units (a `Program`'s removable parts).
    ddmin(&mut best, &mut best_finding, &mut cx)?;
    // Start state.
    for r in 0..8 {
        if r == 4 || best.init.gpr[r] == 0 {
            continue;
        }
        let mut cand = best.clone();
        cand.init.gpr[r] = 0;
        if let Some(f) = cx.check(&cand)? {
            best = cand;
            best_finding = f;
        }
    }
    if best.init.eflags != picoqemu_core::flags::FIXED {
        let mut cand = best.clone();
        cand.init.eflags = picoqemu_core::flags::FIXED;
        if let Some(f) = cx.check(&cand)? {
            best = cand;
            best_finding = f;
        }
    }
    if best.init.data_seed.is_some() {
        let mut cand = best.clone();
        cand.init.data_seed = None;
        if let Some(f) = cx.check(&cand)? {
            best = cand;
            best_finding = f;
        }
    }
    Ok(Minimised { program: best, finding: best_finding, tests: cx.tests })
}
