//! Which build a result is compared with, and how long a failure has lasted.
//!
//! Kiln's rule: the latest *completed* build of the same builder on the same branch, skipping RETRY, CANCELLED
//! and SKIPPED (a retry, a cancel or a collapse says nothing about the code). `previous = "builder"` is
//! Buildbot's: the build numbered before, skipping only RETRY, whatever its branch, even one still running.

use super::mode::Previous;
use crate::config::PreviousRule;
use crate::model::{BuildFacts, PastBuild};
use crate::results::{CANCELLED, EXCEPTION, FAILURE, RETRY, SKIPPED};

/// Whether `past` counts as a previous build of a build on `branch` under `rule`.
fn counts(rule: PreviousRule, past: &PastBuild, branch: Option<&str>) -> bool {
    match rule {
        PreviousRule::Builder => past.results != Some(RETRY),
        PreviousRule::Branch => {
            matches!(past.results, Some(r) if r != RETRY && r != CANCELLED && r != SKIPPED)
                && past.branch.as_deref() == branch
        }
    }
}

/// The builds the rule compares with, the newest first.
pub fn compared<'a>(rule: PreviousRule, facts: &'a BuildFacts) -> impl Iterator<Item = &'a PastBuild> + 'a {
    let branch = facts.branch();
    facts.history.iter().filter(move |past| counts(rule, past, branch.as_deref()))
}

/// The previous build, if there is one.
pub fn previous(rule: PreviousRule, facts: &BuildFacts) -> Option<&PastBuild> {
    compared(rule, facts).next()
}

/// The previous build as the modes see it.
pub fn previous_results(rule: PreviousRule, facts: &BuildFacts) -> Previous {
    previous(rule, facts).map(|past| past.results)
}

/// How many failures in a row end with this build (0 if it did not fail).
pub fn streak(rule: PreviousRule, facts: &BuildFacts) -> u32 {
    if facts.build.results != Some(FAILURE) {
        return 0;
    }
    let before = compared(rule, facts).take_while(|past| past.results == Some(FAILURE)).count();
    u32::try_from(before).unwrap_or(u32::MAX).saturating_add(1)
}

/// The failed builds since the last build that did not fail (on the rule's sequence), the newest first: whose
/// changes may have broken this one. Exceptions do not end the streak either.
pub fn failing_since_last_good(rule: PreviousRule, facts: &BuildFacts) -> Vec<&PastBuild> {
    compared(rule, facts).take_while(|past| matches!(past.results, Some(FAILURE | EXCEPTION))).collect()
}

/// The first failure of the streak this build ends or continues: the mail a fix replies to.
pub fn first_failure(rule: PreviousRule, facts: &BuildFacts) -> Option<&PastBuild> {
    compared(rule, facts).take_while(|past| past.results == Some(FAILURE)).last()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Build, SourceStamp};
    use crate::results::{SUCCESS, WARNINGS};

    fn past(number: i64, results: Option<i32>, branch: &str) -> PastBuild {
        PastBuild { id: number, number, results, branch: Some(branch.into()), people: Vec::new() }
    }

    /// Build 10 on `main`, ending `results`, after `history` (the newest first).
    fn facts(results: i32, history: Vec<PastBuild>) -> BuildFacts {
        BuildFacts {
            build: Build { id: 10, number: 10, results: Some(results), ..Build::default() },
            sourcestamps: vec![SourceStamp { branch: Some("main".into()), ..SourceStamp::default() }],
            history,
            ..BuildFacts::default()
        }
    }

    #[test]
    fn the_first_build_has_none() {
        let f = facts(FAILURE, Vec::new());
        assert_eq!(previous_results(PreviousRule::Branch, &f), None);
        assert_eq!(previous_results(PreviousRule::Builder, &f), None);
        assert_eq!(streak(PreviousRule::Branch, &f), 1);
    }

    #[test]
    fn retry_cancelled_and_skipped_are_skipped() {
        for between in [RETRY, CANCELLED, SKIPPED] {
            let f = facts(FAILURE, vec![past(9, Some(between), "main"), past(8, Some(FAILURE), "main")]);
            assert_eq!(previous(PreviousRule::Branch, &f).map(|p| p.number), Some(8), "{between}");
            assert_eq!(streak(PreviousRule::Branch, &f), 2);
        }
        // Buildbot's rule skips RETRY only.
        let f = facts(FAILURE, vec![past(9, Some(CANCELLED), "main"), past(8, Some(FAILURE), "main")]);
        assert_eq!(previous_results(PreviousRule::Builder, &f), Some(Some(CANCELLED)));
        let f = facts(FAILURE, vec![past(9, Some(RETRY), "main"), past(8, Some(SUCCESS), "main")]);
        assert_eq!(previous_results(PreviousRule::Builder, &f), Some(Some(SUCCESS)));
    }

    #[test]
    fn another_branch_is_not_compared() {
        let f = facts(SUCCESS, vec![past(9, Some(FAILURE), "feature"), past(8, Some(SUCCESS), "main")]);
        assert_eq!(previous_results(PreviousRule::Branch, &f), Some(Some(SUCCESS)));
        assert_eq!(previous_results(PreviousRule::Builder, &f), Some(Some(FAILURE)));
    }

    #[test]
    fn a_running_build_is_not_previous_on_the_branch() {
        let f = facts(FAILURE, vec![past(9, None, "main"), past(8, Some(WARNINGS), "main")]);
        assert_eq!(previous_results(PreviousRule::Branch, &f), Some(Some(WARNINGS)));
        assert_eq!(previous_results(PreviousRule::Builder, &f), Some(None));
    }

    #[test]
    fn the_streak_and_its_first_failure() {
        let f = facts(
            FAILURE,
            vec![
                past(9, Some(FAILURE), "main"),
                past(8, Some(CANCELLED), "main"),
                past(7, Some(FAILURE), "main"),
                past(6, Some(FAILURE), "other"),
                past(5, Some(SUCCESS), "main"),
            ],
        );
        assert_eq!(streak(PreviousRule::Branch, &f), 3);
        assert_eq!(first_failure(PreviousRule::Branch, &f).map(|p| p.number), Some(7));
        let numbers: Vec<i64> = failing_since_last_good(PreviousRule::Branch, &f).iter().map(|p| p.number).collect();
        assert_eq!(numbers, [9, 7]);
        let ok = facts(SUCCESS, f.history.clone());
        assert_eq!(first_failure(PreviousRule::Branch, &ok).map(|p| p.number), Some(7));
        assert_eq!(streak(PreviousRule::Branch, &ok), 0);
    }
}
