//! What builds and steps say they are doing: Buildbot 4.3.0's state strings.
//!
//! A step says its current summary while it runs and its result summary when it ends (`BuildStep
//! .getCurrentSummary`/`getResultSummary`): its description if it has one, else `running` / `finished`, the result
//! in parentheses unless it succeeded. A shell step's result summary is its command's first words
//! (`util.command_to_string`: `'make -j4'`, `'make -C src ...'`). A build says `starting`, `pinging worker`,
//! `building`, then after each step whose result its policy counts (`updateBuildSummaryPolicy`: exceptions,
//! retries, cancellations, failures and warnings by default) the joined summaries of those steps, and at the end
//! its result's word before them (`Build.allStepsDone`): `build successful`, `failed 'make -j4' (failure)`.

use crate::config::{ShellCommand, StepDef};
use crate::interpolate::render;
use crate::results::{name, CANCELLED, EXCEPTION, FAILURE, RETRY, SUCCESS, WARNINGS};

use super::properties::BuildProperties;

/// The build's state before its worker answered its ping (Buildbot's).
pub(crate) const PINGING: &str = "pinging worker";
/// The build's state while its steps run, before a step changes it.
pub(crate) const BUILDING: &str = "building";
/// A step's current summary when it has no description.
pub(crate) const RUNNING: &str = "running";
/// A step's result summary when it has no description.
const FINISHED: &str = "finished";

/// What a step says about itself: its description while it runs and its description when done (`None`: the
/// generic words).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Description {
    running: Option<String>,
    done: Option<String>,
}

impl Description {
    /// The step's description, as Buildbot's equivalent step gives it: a shell step by its command, a git step
    /// (Buildbot's `Source`) `updating`/`update` with its codebase, an upload `uploading NAME`, a download
    /// `downloading to NAME`; a trigger step says what it triggered ([`triggered`]).
    pub(crate) fn of(step: &StepDef, props: &BuildProperties) -> Description {
        match step {
            StepDef::Shell(shell) => {
                let words: Vec<String> = match &shell.command {
                    ShellCommand::Shell(script) => {
                        render(script, props).split_whitespace().map(str::to_string).collect()
                    }
                    ShellCommand::Argv(argv) => argv.iter().map(|word| render(word, props)).collect(),
                };
                Description { running: None, done: command_to_string(&words) }
            }
            StepDef::Git(git) => {
                // Buildbot's `Source` keys its words on the mode, and a git mode (`full`, `incremental`) is
                // never one of those it names (`clobber`, `export`): always `updating`.
                let suffix = if git.codebase.is_empty() { String::new() } else { format!(" {}", git.codebase) };
                Description { running: Some(format!("updating{suffix}")), done: Some(format!("update{suffix}")) }
            }
            StepDef::Upload(upload) if upload.directory => Description {
                running: None,
                done: Some(format!("uploading {}", basename(&render(&upload.workersrc, props)))),
            },
            StepDef::Upload(upload) => {
                let words = format!("uploading {}", basename(&render(&upload.workersrc, props)));
                Description { running: Some(words.clone()), done: Some(words) }
            }
            StepDef::Download(download) => Description {
                running: None,
                done: Some(format!("downloading to {}", basename(&render(&download.workerdest, props)))),
            },
            StepDef::Trigger(_) => Description { running: None, done: None },
        }
    }

    /// What the step says while it runs.
    pub(crate) fn running(&self) -> &str {
        self.running.as_deref().unwrap_or(RUNNING)
    }

    /// What the step says once it ended with `results`.
    pub(crate) fn done(&self, results: i32) -> String {
        let words = self.done.as_deref().or(self.running.as_deref()).unwrap_or(FINISHED);
        with_result(words, results)
    }
}

/// `words`, followed by the result in parentheses unless it is SUCCESS.
fn with_result(words: &str, results: i32) -> String {
    match results {
        SUCCESS => words.to_string(),
        other => format!("{words} ({})", name(other).unwrap_or("Invalid status")),
    }
}

/// Buildbot's `command_to_string`: the command's words quoted, the first two and `...` when there are more than
/// two; `None` for no words.
pub(crate) fn command_to_string(words: &[String]) -> Option<String> {
    match words {
        [] => None,
        [_] | [_, _] => Some(format!("'{}'", words.join(" "))),
        [first, second, ..] => Some(format!("'{first} {second} ...'")),
    }
}

/// A trigger step's summary (Buildbot's `Trigger.getCurrentSummary`): `triggered a, b`, then the count of each
/// result of what it waited for (`, 2 success, 1 failure`); `running` until it triggered something.
pub(crate) fn triggered(schedulers: &[String], results: &[i32]) -> String {
    if schedulers.is_empty() {
        return RUNNING.to_string();
    }
    let mut summary = format!("triggered {}", schedulers.join(", "));
    for code in [SUCCESS, WARNINGS, FAILURE, crate::results::SKIPPED, EXCEPTION, RETRY, CANCELLED] {
        let count = results.iter().filter(|&&r| r == code).count();
        if count > 0 {
            summary.push_str(&format!(", {count} {}", plural(code, count)));
        }
    }
    summary
}

/// Buildbot's `statusToString(status, count)`: the plural words for several.
fn plural(results: i32, count: usize) -> &'static str {
    const MULTIPLE: [&str; 7] = ["successes", "warnings", "failures", "skipped", "exceptions", "retries", "cancelled"];
    if count > 1 {
        usize::try_from(results).ok().and_then(|i| MULTIPLE.get(i).copied()).unwrap_or("Invalid status")
    } else {
        name(results).unwrap_or("Invalid status")
    }
}

/// Whether a step's result summary goes into its build's state string (Buildbot's default
/// `updateBuildSummaryPolicy`): exceptions, retries and cancellations always; failures when the step's failure
/// counts (`flunk_on_failure`, `halt_on_failure` or `warn_on_failure`); warnings when they count.
pub(crate) fn counts_for_build(results: i32, failure_counts: bool, warnings_count: bool) -> bool {
    match results {
        EXCEPTION | RETRY | CANCELLED => true,
        FAILURE => failure_counts,
        WARNINGS => warnings_count,
        _ => false,
    }
}

/// The build's final state string (Buildbot's `allStepsDone`): its result's words, then the summaries of the
/// steps that counted.
pub(crate) fn build_finished(results: i32, steps: &[String]) -> String {
    let head = match results {
        FAILURE => "failed",
        WARNINGS => "warnings",
        EXCEPTION => "exception",
        RETRY => "retry",
        CANCELLED => "cancelled",
        _ => "build successful",
    };
    std::iter::once(head).chain(steps.iter().map(String::as_str)).collect::<Vec<_>>().join(" ")
}

/// The last part of a path (Python's `os.path.basename`: after the last `/`, empty for a path ending in one).
fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::SKIPPED;

    fn words(command: &str) -> Vec<String> {
        command.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn a_command_is_described_by_its_first_words() {
        assert_eq!(command_to_string(&words("make")).as_deref(), Some("'make'"));
        assert_eq!(command_to_string(&words("make -j4")).as_deref(), Some("'make -j4'"));
        assert_eq!(command_to_string(&words("make -C src all")).as_deref(), Some("'make -C ...'"));
        assert_eq!(command_to_string(&[]), None);
    }

    #[test]
    fn steps_say_running_then_their_words_with_the_result_unless_success() {
        let shell = Description { running: None, done: command_to_string(&words("make -j4")) };
        assert_eq!(shell.running(), "running");
        assert_eq!(shell.done(SUCCESS), "'make -j4'");
        assert_eq!(shell.done(FAILURE), "'make -j4' (failure)");
        assert_eq!(shell.done(CANCELLED), "'make -j4' (cancelled)");
        let git = Description { running: Some("updating".into()), done: Some("update".into()) };
        assert_eq!((git.running(), git.done(SUCCESS).as_str()), ("updating", "update"));
        assert_eq!(git.done(EXCEPTION), "update (exception)");
        let plain = Description { running: None, done: None };
        assert_eq!((plain.running(), plain.done(SUCCESS).as_str()), ("running", "finished"));
        assert_eq!(plain.done(WARNINGS), "finished (warnings)");
    }

    #[test]
    fn a_build_ends_with_its_result_then_the_steps_that_counted() {
        assert_eq!(build_finished(SUCCESS, &[]), "build successful");
        assert_eq!(build_finished(SKIPPED, &[]), "build successful");
        assert_eq!(build_finished(FAILURE, &["'make -j4' (failure)".into()]), "failed 'make -j4' (failure)");
        assert_eq!(
            build_finished(EXCEPTION, &["'a' (failure)".into(), "'b' (exception)".into()]),
            "exception 'a' (failure) 'b' (exception)"
        );
        assert_eq!(build_finished(RETRY, &[]), "retry");
        assert_eq!(build_finished(CANCELLED, &["'sleep 60' (cancelled)".into()]), "cancelled 'sleep 60' (cancelled)");
        assert_eq!(build_finished(WARNINGS, &[]), "warnings");
    }

    #[test]
    fn the_build_summary_policy_counts_what_changes_the_build() {
        for always in [EXCEPTION, RETRY, CANCELLED] {
            assert!(counts_for_build(always, false, false));
        }
        assert!(counts_for_build(FAILURE, true, false));
        assert!(!counts_for_build(FAILURE, false, true), "a failure that does not count");
        assert!(counts_for_build(WARNINGS, false, true));
        assert!(!counts_for_build(SUCCESS, true, true));
        assert!(!counts_for_build(SKIPPED, true, true));
    }

    #[test]
    fn a_trigger_step_says_what_it_triggered_and_how_those_ended() {
        assert_eq!(triggered(&[], &[]), "running");
        let names = vec!["a".to_string(), "b".to_string()];
        assert_eq!(triggered(&names, &[]), "triggered a, b");
        assert_eq!(triggered(&names, &[SUCCESS, FAILURE, SUCCESS]), "triggered a, b, 2 successes, 1 failure");
    }

    #[test]
    fn names_are_the_last_part_of_a_path() {
        assert_eq!(basename("dist/app.tar.gz"), "app.tar.gz");
        assert_eq!(basename("app"), "app");
    }
}
