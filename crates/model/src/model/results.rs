//! Buildbot's results (`master/buildbot/process/results.py`): what a build, step, request or buildset ended
//! with, and how two of them combine.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a build, step, build request or buildset ended with. Stored, sent and shown as Buildbot's integer codes
/// (`SUCCESS` = 0 … `CANCELLED` = 6): serde reads and writes the integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Results {
    /// It succeeded.
    Success = 0,
    /// It succeeded with warnings.
    Warnings = 1,
    /// It failed.
    Failure = 2,
    /// It did not run (also: a request collapsed into a newer one).
    Skipped = 3,
    /// Something went wrong in the master or the worker, not in what was built.
    Exception = 4,
    /// Interrupted by something outside the build (worker lost, master restarted); the request runs again.
    Retry = 5,
    /// Stopped on purpose.
    Cancelled = 6,
}

/// A result code that is none of Buildbot's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown result code {0}")]
pub struct UnknownResults(pub i32);

impl Results {
    /// Every result, in the order of their codes.
    pub const ALL: [Results; 7] = [
        Results::Success,
        Results::Warnings,
        Results::Failure,
        Results::Skipped,
        Results::Exception,
        Results::Retry,
        Results::Cancelled,
    ];

    /// Buildbot's code of the result.
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// The result of Buildbot's code `code`, if it is one.
    pub fn from_code(code: i32) -> Option<Results> {
        usize::try_from(code).ok().and_then(|i| Results::ALL.get(i).copied())
    }

    /// The name Buildbot gives it: `"success"`, `"warnings"`, … `"cancelled"`.
    pub const fn name(self) -> &'static str {
        match self {
            Results::Success => "success",
            Results::Warnings => "warnings",
            Results::Failure => "failure",
            Results::Skipped => "skipped",
            Results::Exception => "exception",
            Results::Retry => "retry",
            Results::Cancelled => "cancelled",
        }
    }

    /// How bad it is, in Buildbot's `worst_status` order:
    /// SKIPPED < SUCCESS < WARNINGS < FAILURE < EXCEPTION < RETRY < CANCELLED.
    const fn severity(self) -> u8 {
        match self {
            Results::Skipped => 0,
            Results::Success => 1,
            Results::Warnings => 2,
            Results::Failure => 3,
            Results::Exception => 4,
            Results::Retry => 5,
            Results::Cancelled => 6,
        }
    }

    /// The worse of the two (Buildbot's `worst_status`), e.g. a buildset's result from its requests'.
    pub fn worst(self, other: Results) -> Results {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }
}

impl From<Results> for i32 {
    fn from(results: Results) -> i32 {
        results.code()
    }
}

impl TryFrom<i32> for Results {
    type Error = UnknownResults;

    fn try_from(code: i32) -> Result<Results, UnknownResults> {
        Results::from_code(code).ok_or(UnknownResults(code))
    }
}

impl fmt::Display for Results {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Results {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i32(self.code())
    }
}

impl<'de> Deserialize<'de> for Results {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Results, D::Error> {
        let code = i32::deserialize(deserializer)?;
        Results::try_from(code).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_are_buildbots() {
        let codes: Vec<i32> = Results::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5, 6]);
        let names: Vec<&str> = Results::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names, ["success", "warnings", "failure", "skipped", "exception", "retry", "cancelled"]);
        for r in Results::ALL {
            assert_eq!(Results::from_code(r.code()), Some(r));
        }
        assert_eq!(Results::from_code(7), None);
        assert_eq!(Results::try_from(-1), Err(UnknownResults(-1)));
        assert_eq!(Results::Failure.to_string(), "failure");
    }

    #[test]
    fn worst_follows_buildbots_order() {
        use Results::*;
        let order = [Skipped, Success, Warnings, Failure, Exception, Retry, Cancelled];
        for (i, &a) in order.iter().enumerate() {
            for (j, &b) in order.iter().enumerate() {
                assert_eq!(a.worst(b), order[i.max(j)], "worst({a}, {b})");
            }
        }
        assert_eq!([Success, Skipped, Warnings].into_iter().fold(Skipped, Results::worst), Warnings);
    }

    #[test]
    fn serde_reads_and_writes_the_integer() {
        assert_eq!(serde_json::to_string(&Results::Cancelled).ok().as_deref(), Some("6"));
        assert_eq!(serde_json::from_str::<Results>("2").ok(), Some(Results::Failure));
        assert!(serde_json::from_str::<Results>("9").is_err());
        assert!(serde_json::from_str::<Results>("\"failure\"").is_err());
    }
}
