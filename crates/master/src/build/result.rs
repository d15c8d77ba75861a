//! How a step's result counts toward its build (Buildbot's `computeResultAndTermination`).

use crate::results::{worst_status, CANCELLED, EXCEPTION, FAILURE, RETRY, SUCCESS, WARNINGS};

/// A step's options for how its result counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepFlags {
    /// A failure stops the build (steps marked `always_run` still run).
    pub halt_on_failure: bool,
    /// A failure makes the build fail.
    pub flunk_on_failure: bool,
    /// A failure makes the build WARNINGS (when `flunk_on_failure` is off).
    pub warn_on_failure: bool,
    /// Warnings make the build fail.
    pub flunk_on_warnings: bool,
    /// Warnings make the build WARNINGS.
    pub warn_on_warnings: bool,
}

impl Default for StepFlags {
    /// A shell step's defaults.
    fn default() -> Self {
        StepFlags {
            halt_on_failure: false,
            flunk_on_failure: true,
            warn_on_failure: false,
            flunk_on_warnings: false,
            warn_on_warnings: true,
        }
    }
}

/// The build's result after a step that ended with `step_result`, and whether the build stops there.
pub fn merge(build_result: i32, step_result: i32, flags: StepFlags) -> (i32, bool) {
    let mut counted = step_result;
    let mut terminate = false;
    match step_result {
        FAILURE => {
            counted = if flags.flunk_on_failure {
                FAILURE
            } else if flags.warn_on_failure {
                WARNINGS
            } else {
                SUCCESS
            };
            terminate = flags.halt_on_failure;
        }
        WARNINGS => {
            counted = if flags.flunk_on_warnings {
                FAILURE
            } else if flags.warn_on_warnings {
                WARNINGS
            } else {
                SUCCESS
            };
        }
        EXCEPTION | RETRY | CANCELLED => terminate = true,
        _ => {}
    }
    (worst_status(build_result, counted), terminate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::SKIPPED;

    #[test]
    fn failure_rules() {
        let flags = StepFlags::default();
        assert_eq!(merge(SUCCESS, FAILURE, flags), (FAILURE, false));
        assert_eq!(merge(SUCCESS, FAILURE, StepFlags { halt_on_failure: true, ..flags }), (FAILURE, true));
        let warn = StepFlags { flunk_on_failure: false, warn_on_failure: true, ..flags };
        assert_eq!(merge(SUCCESS, FAILURE, warn), (WARNINGS, false));
        let ignore = StepFlags { flunk_on_failure: false, ..flags };
        assert_eq!(merge(SUCCESS, FAILURE, ignore), (SUCCESS, false));
        assert_eq!(merge(WARNINGS, FAILURE, ignore), (WARNINGS, false));
    }

    #[test]
    fn warnings_and_terminal_results() {
        let flags = StepFlags::default();
        assert_eq!(merge(SUCCESS, WARNINGS, flags), (WARNINGS, false));
        assert_eq!(merge(SUCCESS, WARNINGS, StepFlags { flunk_on_warnings: true, ..flags }), (FAILURE, false));
        assert_eq!(merge(SUCCESS, WARNINGS, StepFlags { warn_on_warnings: false, ..flags }), (SUCCESS, false));
        assert_eq!(merge(FAILURE, EXCEPTION, flags), (EXCEPTION, true));
        assert_eq!(merge(SUCCESS, RETRY, flags), (RETRY, true));
        assert_eq!(merge(RETRY, CANCELLED, flags), (CANCELLED, true));
        assert_eq!(merge(FAILURE, SUCCESS, flags), (FAILURE, false));
        assert_eq!(merge(SUCCESS, SKIPPED, flags), (SUCCESS, false));
    }
}
