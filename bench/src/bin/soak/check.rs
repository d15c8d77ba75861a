//! The soak's verdict, from what the load was answered (the ledger) and what the store holds at the end (read
//! through the REST API): every accepted commit and change stored exactly once, every change a buildset from
//! each scheduler that wants it, every build request RETRY* then exactly one final build, no build running.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::load::{Ledger, Via};
use crate::master::{schedulers_for, MAIN_BUILDER};

/// Buildbot's result codes the checks name.
const SUCCESS: i64 = 0;
const RETRY: i64 = 5;

/// What the store holds at the end.
pub struct Stored {
    pub changes: Vec<Value>,
    pub buildsets: Vec<Value>,
    pub requests: Vec<Value>,
    pub builds: Vec<Value>,
    pub builder_id: i64,
}

/// The figures and the violations.
#[derive(Debug, Default)]
pub struct Verdict {
    pub lines: Vec<String>,
    pub violations: Vec<String>,
}

impl Verdict {
    fn violation(&mut self, text: String) {
        self.violations.push(text);
    }
}

fn int(value: &Value, field: &str) -> i64 {
    value[field].as_i64().unwrap_or(-1)
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field].as_str().unwrap_or_default()
}

/// The revisions of the changes in the store, each with its change ids and branch.
fn changes_by_revision(stored: &Stored) -> BTreeMap<String, (Vec<i64>, String)> {
    let mut by_revision: BTreeMap<String, (Vec<i64>, String)> = BTreeMap::new();
    for change in &stored.changes {
        let entry = by_revision.entry(text(change, "revision").to_owned()).or_default();
        entry.0.push(int(change, "changeid"));
        entry.1 = text(change, "branch").to_owned();
    }
    by_revision
}

/// Whether every accepted commit is stored and every change has its buildsets and every request is complete
/// with no build running: what the end of the soak waits for.
pub fn settled(ledger: &Ledger, stored: &Stored) -> bool {
    let by_revision = changes_by_revision(stored);
    let commits_in = ledger.commits.iter().all(|(hash, _)| by_revision.contains_key(hash));
    let wanted: usize = by_revision.values().map(|(_, branch)| schedulers_for(branch).len()).sum();
    let from_schedulers = stored.buildsets.iter().filter(|b| !text(b, "scheduler").starts_with("force-")).count();
    commits_in
        && from_schedulers >= wanted
        && stored.requests.iter().all(|r| r["complete"].as_bool() == Some(true))
        && stored.builds.iter().all(|b| b["complete"].as_bool() == Some(true))
}

pub fn check(ledger: &Ledger, stored: &Stored) -> Verdict {
    let mut verdict = Verdict::default();
    let by_revision = changes_by_revision(stored);

    // Every revision once in the store (each commit and each change sent has its own).
    for (revision, (ids, _)) in &by_revision {
        if ids.len() > 1 {
            verdict.violation(format!("revision {revision} stored {} times: changes {ids:?}", ids.len()));
        }
    }
    let mut known: BTreeSet<&str> = BTreeSet::new();
    for (hash, _) in &ledger.commits {
        known.insert(hash);
        if !by_revision.contains_key(hash) {
            verdict.violation(format!("commit {hash} was never stored"));
        }
    }
    verdict.lines.push(format!(
        "commits: {} made, {} stored exactly once",
        ledger.commits.len(),
        ledger.commits.iter().filter(|(h, _)| by_revision.get(h).is_some_and(|(ids, _)| ids.len() == 1)).count()
    ));
    for via in [Via::Sendchange, Via::Hook] {
        let sent: Vec<_> = ledger.sent.iter().filter(|s| s.via == via).collect();
        let (mut answered, mut answered_ok, mut unanswered, mut unanswered_stored) = (0, 0, 0, 0);
        let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &sent {
            known.insert(&s.revision);
            let (stored_ids, branch) = by_revision.get(&s.revision).cloned().unwrap_or_default();
            if !stored_ids.is_empty() && branch != s.branch {
                verdict.violation(format!("{via:?} {} was sent on {} but stored on {branch:?}", s.revision, s.branch));
            }
            match s.answered {
                Some(id) => {
                    answered += 1;
                    if stored_ids == [id] {
                        answered_ok += 1;
                    } else {
                        verdict.violation(format!(
                            "{via:?} {} was answered with change {id} but the store has {stored_ids:?}",
                            s.revision
                        ));
                    }
                }
                None => {
                    unanswered += 1;
                    *reasons.entry(s.why.as_deref().unwrap_or("?")).or_default() += 1;
                    unanswered_stored += usize::from(!stored_ids.is_empty());
                }
            }
        }
        verdict.lines.push(format!(
            "{}: {answered} answered, {answered_ok} of them stored exactly once under the answered id; {unanswered} \
             not answered (master down or killed), {unanswered_stored} of those stored (once); why not: {reasons:?}",
            if via == Via::Hook { "hook POSTs" } else { "sendchange" }
        ));
    }
    let strangers: Vec<&String> = by_revision.keys().filter(|r| !known.contains(r.as_str())).collect();
    if !strangers.is_empty() {
        verdict.violation(format!("{} changes nobody sent: {strangers:?}", strangers.len()));
    }

    // Every change a buildset from each scheduler that wants it, exactly one.
    let mut buildsets: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut forced_sets = 0;
    for set in &stored.buildsets {
        let scheduler = text(set, "scheduler");
        if scheduler.starts_with("force-") {
            forced_sets += 1;
            continue;
        }
        let revision = set["sourcestamps"][0]["revision"].as_str().unwrap_or_default();
        *buildsets.entry((scheduler.to_owned(), revision.to_owned())).or_default() += 1;
    }
    let (mut wanted, mut got_once) = (0, 0);
    for (revision, (_, branch)) in &by_revision {
        for scheduler in schedulers_for(branch) {
            wanted += 1;
            match buildsets.remove(&(scheduler.to_owned(), revision.clone())).unwrap_or(0) {
                1 => got_once += 1,
                n => verdict.violation(format!("change {revision} ({branch}) has {n} buildsets of {scheduler}")),
            }
        }
    }
    for ((scheduler, revision), n) in &buildsets {
        verdict.violation(format!("{n} buildsets of {scheduler} for {revision}, which is no change it wants"));
    }
    verdict.lines.push(format!(
        "changes: {} stored; {wanted} (change, scheduler) pairs wanted, {got_once} with exactly one buildset; {} \
         forced buildsets",
        by_revision.len(),
        forced_sets
    ));

    // Every request RETRY* then exactly one final build; no build running.
    let mut builds_of: BTreeMap<i64, Vec<&Value>> = BTreeMap::new();
    for build in &stored.builds {
        builds_of.entry(int(build, "buildrequestid")).or_default().push(build);
        if build["complete"].as_bool() != Some(true) {
            verdict.violation(format!("build {} is still running", int(build, "buildid")));
        }
    }
    let (mut retried, mut retries, mut shapely) = (0, 0, 0);
    let mut finals: BTreeMap<i64, usize> = BTreeMap::new();
    for request in &stored.requests {
        let brid = int(request, "buildrequestid");
        let mut builds = builds_of.remove(&brid).unwrap_or_default();
        builds.sort_by_key(|b| int(b, "buildid"));
        let results: Vec<i64> = builds.iter().map(|b| int(b, "results")).collect();
        let Some((last, before)) = results.split_last() else {
            verdict.violation(format!("request {brid} has no build (complete: {})", request["complete"]));
            continue;
        };
        *finals.entry(*last).or_default() += 1;
        let ok = before.iter().all(|r| *r == RETRY) && *last != RETRY;
        if !ok {
            verdict.violation(format!("request {brid}: builds' results {results:?}, not RETRY* then one final"));
        } else if *last != SUCCESS {
            verdict.violation(format!("request {brid}: its final build's result is {last}, not SUCCESS"));
        } else if request["complete"].as_bool() != Some(true) || int(request, "results") != *last {
            verdict.violation(format!("request {brid} is not complete with its final build's result: {request}"));
        } else {
            shapely += 1;
        }
        retried += usize::from(!before.is_empty());
        retries += before.len();
    }
    for brid in builds_of.keys() {
        verdict.violation(format!("builds of request {brid}, which the store does not list"));
    }
    for brid in &ledger.forced {
        match stored.requests.iter().find(|r| int(r, "buildrequestid") == *brid) {
            Some(r) if int(r, "builderid") == stored.builder_id => {}
            Some(r) => verdict.violation(format!("forced request {brid} is of builder {}", int(r, "builderid"))),
            None => verdict.violation(format!("forced request {brid} (answered) is not in the store")),
        }
    }
    verdict.lines.push(format!(
        "requests: {} ({} forced of {MAIN_BUILDER} answered, {} forces not answered); {shapely} RETRY* then one \
         final SUCCESS build; {retried} had RETRY builds ({retries} in all); final results {finals:?}",
        stored.requests.len(),
        ledger.forced.len(),
        ledger.unanswered_forces
    ));
    verdict.lines.push(format!(
        "builds: {}, {} running",
        stored.builds.len(),
        stored.builds.iter().filter(|b| b["complete"].as_bool() != Some(true)).count()
    ));
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Sent;
    use serde_json::json;

    fn stored() -> Stored {
        Stored {
            changes: vec![json!({"changeid": 1, "revision": "abc", "branch": "main"})],
            buildsets: vec![
                json!({"bsid": 1, "scheduler": "on-main", "sourcestamps": [{"revision": "abc"}]}),
                json!({"bsid": 2, "scheduler": "any-branch", "sourcestamps": [{"revision": "abc"}]}),
            ],
            requests: vec![
                json!({"buildrequestid": 1, "builderid": 1, "complete": true, "results": 0}),
                json!({"buildrequestid": 2, "builderid": 2, "complete": true, "results": 0}),
            ],
            builds: vec![
                json!({"buildid": 1, "buildrequestid": 1, "complete": true, "results": 5}),
                json!({"buildid": 2, "buildrequestid": 1, "complete": true, "results": 0}),
                json!({"buildid": 3, "buildrequestid": 2, "complete": true, "results": 0}),
            ],
            builder_id: 1,
        }
    }

    fn ledger() -> Ledger {
        Ledger { commits: vec![("abc".into(), "main")], forced: vec![1], ..Ledger::default() }
    }

    #[test]
    fn a_clean_store_passes() {
        let verdict = check(&ledger(), &stored());
        assert!(verdict.violations.is_empty(), "{:?}", verdict.violations);
        assert!(settled(&ledger(), &stored()));
    }

    #[test]
    fn each_kind_of_loss_or_double_is_a_violation() {
        // A change stored twice, one never stored, a buildset missing, a build after the final one, one running.
        let mut store = stored();
        store.changes.push(json!({"changeid": 2, "revision": "abc", "branch": "main"}));
        let mut ledger = ledger();
        ledger.commits.push(("def".into(), "topic"));
        ledger.sent.push(Sent {
            via: Via::Hook,
            revision: "hook-1".into(),
            branch: "main",
            answered: Some(9),
            why: None,
        });
        store.buildsets.remove(1);
        store.builds.push(json!({"buildid": 4, "buildrequestid": 2, "complete": false, "results": null}));
        let verdict = check(&ledger, &store);
        let all = verdict.violations.join("\n");
        for expected in [
            "revision abc stored 2 times",
            "commit def was never stored",
            "hook-1 was answered with change 9",
            "has 0 buildsets of any-branch",
            "build 4 is still running",
            "request 2: builds' results [0, -1]",
        ] {
            assert!(all.contains(expected), "{expected:?} in:\n{all}");
        }
        assert!(!settled(&ledger, &store));
    }
}
