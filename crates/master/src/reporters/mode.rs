//! Whether a build's result is reported under a reporter's modes: Buildbot's predicates (`failing`, `passing`,
//! `warnings`, `exception`, `cancelled`, `problem`, `change`) and Kiln's (`fixed`, `first_failure`,
//! `still_failing`). Pure: the previous build and the streak are found by [`super::previous`].

use std::collections::BTreeSet;

use crate::config::Mode;
use crate::results::{CANCELLED, EXCEPTION, FAILURE, RETRY, SUCCESS, WARNINGS};

/// The previous build as the modes see it: absent (a first build), or present with its result (`None`: still
/// running, which only Buildbot's rule can pick).
pub type Previous = Option<Option<i32>>;

/// What the modes decide on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub results: i32,
    pub previous: Previous,
    /// Failures in a row ending with this build (0 unless it failed).
    pub streak: u32,
}

/// Whether one mode fires.
pub fn fires(mode: Mode, outcome: Outcome, repeat_every: u32) -> bool {
    let Outcome { results, previous, streak } = outcome;
    let previous_failed = previous == Some(Some(FAILURE));
    match mode {
        Mode::Failing => results == FAILURE,
        Mode::Passing => results == SUCCESS,
        Mode::Warnings => results == WARNINGS,
        Mode::Exception => results == EXCEPTION,
        Mode::Cancelled => results == CANCELLED,
        Mode::Problem => results == FAILURE && previous.is_some() && !previous_failed,
        Mode::Change => results != RETRY && previous.is_some_and(|p| p != Some(results)),
        Mode::Fixed => results == SUCCESS && matches!(previous, Some(Some(FAILURE | EXCEPTION))),
        Mode::FirstFailure => results == FAILURE && !previous_failed,
        Mode::StillFailing => {
            results == FAILURE && previous_failed && streak >= 2 && (streak - 1) % repeat_every.max(1) == 0
        }
    }
}

/// Whether any of `modes` fires.
pub fn any_fires(modes: &BTreeSet<Mode>, outcome: Outcome, repeat_every: u32) -> bool {
    modes.iter().any(|&mode| fires(mode, outcome, repeat_every))
}

/// Buildbot's `status_detected` words for the message.
pub fn status_detected(modes: &BTreeSet<Mode>, outcome: Outcome) -> String {
    let transition = modes.iter().any(|m| matches!(m, Mode::Change | Mode::Problem | Mode::Fixed | Mode::FirstFailure));
    match outcome.results {
        FAILURE if outcome.previous.is_some() && outcome.previous != Some(Some(FAILURE)) && transition => {
            "new failure".into()
        }
        FAILURE if outcome.streak >= 2 => format!("failed build (failing {} builds in a row)", outcome.streak),
        FAILURE => "failed build".into(),
        WARNINGS => "problem in the build".into(),
        SUCCESS if outcome.previous.is_some() && outcome.previous != Some(Some(SUCCESS)) && transition => {
            "restored build".into()
        }
        SUCCESS => "passing build".into(),
        EXCEPTION => "build exception".into(),
        other => format!("{} build", crate::results::name(other).unwrap_or("unknown")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::SKIPPED;

    fn o(results: i32, previous: Previous, streak: u32) -> Outcome {
        Outcome { results, previous, streak }
    }

    /// Every mode against every kind of previous build (the previous rule itself is tested in `previous`).
    #[test]
    fn every_mode_against_every_previous_build() {
        use Mode::*;
        let none: Previous = None;
        let running: Previous = Some(None);
        let s = Some(Some(SUCCESS));
        let f = Some(Some(FAILURE));
        let w = Some(Some(WARNINGS));
        let e = Some(Some(EXCEPTION));
        let c = Some(Some(CANCELLED));
        // (mode, results, previous, streak, fires)
        let cases: &[(Mode, i32, Previous, u32, bool)] = &[
            (Failing, FAILURE, none, 1, true),
            (Failing, SUCCESS, f, 0, false),
            (Passing, SUCCESS, none, 0, true),
            (Passing, WARNINGS, s, 0, false),
            (Warnings, WARNINGS, s, 0, true),
            (Warnings, FAILURE, s, 1, false),
            (Exception, EXCEPTION, s, 0, true),
            (Cancelled, CANCELLED, s, 0, true),
            (Cancelled, RETRY, s, 0, false),
            // problem: a failure after a build that did not fail; never on a first build.
            (Problem, FAILURE, none, 1, false),
            (Problem, FAILURE, s, 1, true),
            (Problem, FAILURE, w, 1, true),
            (Problem, FAILURE, e, 1, true),
            (Problem, FAILURE, f, 2, false),
            (Problem, FAILURE, running, 1, true),
            // change: any different result, never for RETRY nor a first build.
            (Change, SUCCESS, f, 0, true),
            (Change, SUCCESS, s, 0, false),
            (Change, FAILURE, none, 1, false),
            (Change, RETRY, s, 0, false),
            (Change, CANCELLED, f, 0, true),
            (Change, SUCCESS, running, 0, true),
            // fixed: a success after a failure or an exception only.
            (Fixed, SUCCESS, f, 0, true),
            (Fixed, SUCCESS, e, 0, true),
            (Fixed, SUCCESS, w, 0, false),
            (Fixed, SUCCESS, c, 0, false),
            (Fixed, SUCCESS, none, 0, false),
            (Fixed, WARNINGS, f, 0, false),
            // first_failure: like problem, and a builder's first build that fails is a first failure too.
            (FirstFailure, FAILURE, none, 1, true),
            (FirstFailure, FAILURE, s, 1, true),
            (FirstFailure, FAILURE, f, 2, false),
            (FirstFailure, SKIPPED, s, 0, false),
            // still_failing: a failure after a failure.
            (StillFailing, FAILURE, f, 2, true),
            (StillFailing, FAILURE, s, 1, false),
            (StillFailing, FAILURE, none, 1, false),
        ];
        for &(mode, results, previous, streak, expected) in cases {
            assert_eq!(fires(mode, o(results, previous, streak), 1), expected, "{mode:?} {results} after {previous:?}");
        }
    }

    #[test]
    fn still_failing_repeats_every_nth_failure_of_a_streak() {
        let f = Some(Some(FAILURE));
        let fired: Vec<u32> = (2..=10).filter(|&streak| fires(Mode::StillFailing, o(FAILURE, f, streak), 3)).collect();
        assert_eq!(fired, [4, 7, 10]);
    }

    #[test]
    fn status_words_are_buildbots() {
        let modes: BTreeSet<Mode> = [Mode::Problem].into();
        assert_eq!(status_detected(&modes, o(FAILURE, Some(Some(SUCCESS)), 1)), "new failure");
        assert_eq!(status_detected(&modes, o(SUCCESS, Some(Some(FAILURE)), 0)), "restored build");
        assert_eq!(status_detected(&[Mode::Passing].into(), o(SUCCESS, Some(Some(FAILURE)), 0)), "passing build");
        assert_eq!(status_detected(&modes, o(WARNINGS, None, 0)), "problem in the build");
        assert_eq!(status_detected(&modes, o(RETRY, None, 0)), "retry build");
    }
}
