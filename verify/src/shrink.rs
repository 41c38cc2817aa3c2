//! Delta debugging (Zeller's ddmin) of a failing test program over its removable parts (the
//! fuzz campaign's units, the loop profile's instructions), shared by every minimiser.
//!
//! The caller says what a part is ([`Shrinkable`]) and whether a candidate still fails
//! ([`Oracle`]); [`ddmin`] removes chunks of parts, halving the chunk size when nothing can be
//! removed, then tries every single part once more (1-minimality within the oracle's budget).
use std::ops::Range;

/// A program whose parts can be removed.
pub trait Shrinkable: Clone {
    /// Number of removable parts.
    fn parts(&self) -> usize;
    /// The program without the parts in `range`, or `None` when that is not a valid program.
    fn without(&self, range: Range<usize>) -> Option<Self>;
}

/// Whether a candidate still shows the failure.
pub trait Oracle<P> {
    /// What a failing run reports (kept for the smallest program found).
    type Finding;
    type Error;
    /// The finding when `p` still fails, `None` when it does not (or the budget is spent).
    fn check(&mut self, p: &P) -> Result<Option<Self::Finding>, Self::Error>;
    /// True when the oracle will not run any more candidates.
    fn exhausted(&self) -> bool {
        false
    }
}

/// A candidate from `best` without `range`, checked by `oracle`.
fn try_without<P: Shrinkable, O: Oracle<P>>(
    best: &P,
    range: Range<usize>,
    oracle: &mut O,
) -> Result<Option<(P, O::Finding)>, O::Error> {
    let Some(cand) = best.without(range) else { return Ok(None) };
    Ok(oracle.check(&cand)?.map(|f| (cand, f)))
}

/// Minimises `best` (which fails with `finding`) in place; returns whether anything was removed.
pub fn ddmin<P: Shrinkable, O: Oracle<P>>(
    best: &mut P,
    finding: &mut O::Finding,
    oracle: &mut O,
) -> Result<bool, O::Error> {
    let before = best.parts();
    let mut n = 2usize;
    while best.parts() >= 2 {
        let len = best.parts();
        let chunk = len.div_ceil(n);
        let mut reduced = false;
        for start in (0..len).step_by(chunk) {
            if let Some((cand, f)) = try_without(best, start..(start + chunk).min(len), oracle)? {
                (*best, *finding) = (cand, f);
                n = (n - 1).max(2);
                reduced = true;
                break;
            }
        }
        if !reduced {
            if n >= len {
                break;
            }
            n = (2 * n).min(len);
        }
        if oracle.exhausted() {
            break;
        }
    }
    // One more pass removing single parts.
    let mut i = 0;
    while i < best.parts() && best.parts() > 1 {
        match try_without(best, i..i + 1, oracle)? {
            Some((cand, f)) => (*best, *finding) = (cand, f),
            None => i += 1,
        }
    }
    Ok(best.parts() < before)
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Shrinkable for Vec<u32> {
        fn parts(&self) -> usize {
            self.len()
        }
        fn without(&self, r: Range<usize>) -> Option<Self> {
            let mut v = self.clone();
            v.drain(r);
            Some(v)
        }
    }

    /// Fails while the program holds both 7 and 13; counts its runs and has a budget.
    struct Needs {
        runs: usize,
        budget: usize,
    }

    impl Oracle<Vec<u32>> for Needs {
        type Finding = usize;
        type Error = ();
        fn check(&mut self, p: &Vec<u32>) -> Result<Option<usize>, ()> {
            if self.runs >= self.budget {
                return Ok(None);
            }
            self.runs += 1;
            Ok((p.contains(&7) && p.contains(&13)).then_some(p.len()))
        }
        fn exhausted(&self) -> bool {
            self.runs >= self.budget
        }
    }

    #[test]
    fn finds_the_two_parts_that_matter() {
        let mut p: Vec<u32> = (0..40).collect();
        let mut finding = 40;
        let mut o = Needs { runs: 0, budget: 1000 };
        assert!(ddmin(&mut p, &mut finding, &mut o).unwrap());
        assert_eq!(p, vec![7, 13]);
        assert_eq!(finding, 2);
    }

    #[test]
    fn a_spent_budget_stops_the_search_with_a_failing_program() {
        let mut p: Vec<u32> = (0..40).collect();
        let mut finding = 40;
        let mut o = Needs { runs: 0, budget: 3 };
        ddmin(&mut p, &mut finding, &mut o).unwrap();
        assert!(p.contains(&7) && p.contains(&13) && p.len() > 2, "{p:?}");
        assert_eq!(o.runs, 3);
    }
}
