//! Buildbot's result codes (`master/buildbot/process/results.py`) and how they combine.

/// The build, step or request succeeded.
pub const SUCCESS: i32 = 0;
/// Succeeded with warnings.
pub const WARNINGS: i32 = 1;
/// Failed.
pub const FAILURE: i32 = 2;
/// Did not run (also: a request collapsed into a newer one).
pub const SKIPPED: i32 = 3;
/// Something went wrong in the master or the worker, not in what was built.
pub const EXCEPTION: i32 = 4;
/// Interrupted by something outside the build (worker lost, master restarted); the request runs again.
pub const RETRY: i32 = 5;
/// Stopped on purpose.
pub const CANCELLED: i32 = 6;

/// Buildbot's names of the results, indexed by code.
const NAMES: [&str; 7] = ["success", "warnings", "failure", "skipped", "exception", "retry", "cancelled"];

/// The name Buildbot gives a result code (`"success"` …), or `None` for an unknown code.
pub fn name(results: i32) -> Option<&'static str> {
    usize::try_from(results).ok().and_then(|i| NAMES.get(i).copied())
}

/// How bad a result is, in Buildbot's `worst_status` order:
/// SKIPPED < SUCCESS < WARNINGS < FAILURE < EXCEPTION < RETRY < CANCELLED. Unknown codes rank below all.
fn severity(results: i32) -> i32 {
    match results {
        SKIPPED => 0,
        SUCCESS => 1,
        WARNINGS => 2,
        FAILURE => 3,
        EXCEPTION => 4,
        RETRY => 5,
        CANCELLED => 6,
        _ => -1,
    }
}

/// The worse of two results (Buildbot's `worst_status`), e.g. a buildset's result from its requests'.
pub fn worst_status(a: i32, b: i32) -> i32 {
    if severity(b) > severity(a) {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_buildbots() {
        assert_eq!([SUCCESS, WARNINGS, FAILURE, SKIPPED, EXCEPTION, RETRY, CANCELLED], [0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(name(SUCCESS), Some("success"));
        assert_eq!(name(CANCELLED), Some("cancelled"));
        assert_eq!(name(7), None);
        assert_eq!(name(-1), None);
    }

    #[test]
    fn worst_status_follows_buildbots_order() {
        let order = [SKIPPED, SUCCESS, WARNINGS, FAILURE, EXCEPTION, RETRY, CANCELLED];
        for (i, &a) in order.iter().enumerate() {
            for (j, &b) in order.iter().enumerate() {
                let expected = order[i.max(j)];
                assert_eq!(worst_status(a, b), expected, "worst_status({a}, {b})");
            }
        }
    }

    #[test]
    fn worst_status_of_many_is_a_fold() {
        let all = [SUCCESS, SKIPPED, WARNINGS, SUCCESS];
        assert_eq!(all.into_iter().fold(SKIPPED, worst_status), WARNINGS);
        assert_eq!([SKIPPED].into_iter().fold(SKIPPED, worst_status), SKIPPED);
    }
}
