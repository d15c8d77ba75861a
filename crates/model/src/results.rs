//! Buildbot's result codes as the integers many signatures still carry, and how they combine: a thin layer over
//! [`Results`], which new code uses instead.

pub use crate::model::Results;

/// The build, step or request succeeded.
pub const SUCCESS: i32 = Results::Success.code();
/// Succeeded with warnings.
pub const WARNINGS: i32 = Results::Warnings.code();
/// Failed.
pub const FAILURE: i32 = Results::Failure.code();
/// Did not run (also: a request collapsed into a newer one).
pub const SKIPPED: i32 = Results::Skipped.code();
/// Something went wrong in the master or the worker, not in what was built.
pub const EXCEPTION: i32 = Results::Exception.code();
/// Interrupted by something outside the build (worker lost, master restarted); the request runs again.
pub const RETRY: i32 = Results::Retry.code();
/// Stopped on purpose.
pub const CANCELLED: i32 = Results::Cancelled.code();

/// The name Buildbot gives a result code (`"success"` …), or `None` for an unknown code.
pub fn name(results: i32) -> Option<&'static str> {
    Results::from_code(results).map(Results::name)
}

/// The worse of two result codes (Buildbot's `worst_status`, [`Results::worst`]), e.g. a buildset's result from
/// its requests'. An unknown code ranks below all.
pub fn worst_status(a: i32, b: i32) -> i32 {
    match (Results::from_code(a), Results::from_code(b)) {
        (Some(x), Some(y)) => x.worst(y).code(),
        (None, Some(_)) => b,
        _ => a,
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

    #[test]
    fn unknown_codes_rank_below_all() {
        assert_eq!(worst_status(9, SKIPPED), SKIPPED);
        assert_eq!(worst_status(SKIPPED, 9), SKIPPED);
        assert_eq!(worst_status(9, -1), 9);
    }
}
