//! Collapsing (Buildbot's `BuildRequestCollapser` and `BuildRequest.canBeCollapsed`): when a request is added,
//! the older queued requests of its builder that it covers need not run; they end SKIPPED, superseded by it.
//!
//! The decision is pure, over descriptions of the requests; the store claims and completes them atomically.

use std::collections::BTreeMap;

use crate::model::{Property, SourceStamp};

/// What collapsing looks at in a request.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedRequest {
    pub brid: i64,
    pub buildsetid: i64,
    /// The buildset's source stamps, each with whether changes belong to it.
    pub stamps: Vec<Stamp>,
    /// The buildset's properties set by its scheduler (source `Scheduler`), except `scheduler` itself.
    pub scheduler_properties: BTreeMap<String, serde_json::Value>,
}

/// A source stamp and whether it has changes (a build of changes, rather than of a fixed revision).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub sourcestamp: SourceStamp,
    pub has_changes: bool,
}

impl QueuedRequest {
    /// The description of request `brid` of buildset `buildsetid`, from the buildset's stamps and properties.
    pub fn new(brid: i64, buildsetid: i64, stamps: Vec<Stamp>, properties: &[Property]) -> QueuedRequest {
        let scheduler_properties = properties
            .iter()
            .filter(|p| p.source == "Scheduler" && p.name != "scheduler")
            .map(|p| (p.name.clone(), p.value.clone()))
            .collect();
        QueuedRequest { brid, buildsetid, stamps, scheduler_properties }
    }

    fn by_codebase(&self) -> BTreeMap<&str, &Stamp> {
        self.stamps.iter().map(|s| (s.sourcestamp.codebase.as_str(), s)).collect()
    }
}

/// Whether `new` makes `old` unnecessary (`canBeCollapsed`): same buildset; or `old` is not newer, both build
/// the same codebases from the same repository, branch and project, each codebase either with changes on both
/// sides or with none and the same revision, and their scheduler properties are equal.
pub fn can_collapse(new: &QueuedRequest, old: &QueuedRequest) -> bool {
    if new.buildsetid == old.buildsetid {
        return true;
    }
    if new.brid < old.brid {
        return false;
    }
    let (new_stamps, old_stamps) = (new.by_codebase(), old.by_codebase());
    if new_stamps.len() != old_stamps.len() || new_stamps.keys().ne(old_stamps.keys()) {
        return false;
    }
    let stamps_match = new_stamps.values().zip(old_stamps.values()).all(|(n, o)| {
        let (ns, os) = (&n.sourcestamp, &o.sourcestamp);
        ns.repository == os.repository
            && ns.branch == os.branch
            && ns.project == os.project
            && match (n.has_changes, o.has_changes) {
                (true, true) => true,
                (false, false) => ns.revision == os.revision,
                _ => false,
            }
    });
    stamps_match && new.scheduler_properties == old.scheduler_properties
}

/// The requests among `queued` (the builder's other unclaimed, incomplete requests) that `new` collapses.
pub fn collapsed_by(new: &QueuedRequest, queued: &[QueuedRequest]) -> Vec<i64> {
    queued.iter().filter(|old| old.brid != new.brid && can_collapse(new, old)).map(|old| old.brid).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stamp(codebase: &str, branch: &str, revision: Option<&str>, has_changes: bool) -> Stamp {
        Stamp {
            sourcestamp: SourceStamp {
                branch: Some(branch.into()),
                revision: revision.map(Into::into),
                repository: "https://example.invalid/repo.git".into(),
                project: "p".into(),
                codebase: codebase.into(),
            },
            has_changes,
        }
    }

    fn request(brid: i64, stamps: Vec<Stamp>) -> QueuedRequest {
        QueuedRequest::new(brid, brid, stamps, &[])
    }

    #[test]
    fn buildbot_rules() {
        let main_changes = |brid, rev| request(brid, vec![stamp("", "main", Some(rev), true)]);
        // Newer changes on the same branch cover older ones, whatever their revisions.
        assert!(can_collapse(&main_changes(2, "b"), &main_changes(1, "a")));
        // Never an older request collapsing a newer one.
        assert!(!can_collapse(&main_changes(1, "a"), &main_changes(2, "b")));
        // Another branch, or changes against a fixed revision: no.
        assert!(!can_collapse(&main_changes(2, "b"), &request(1, vec![stamp("", "dev", Some("a"), true)])));
        assert!(!can_collapse(&main_changes(2, "b"), &request(1, vec![stamp("", "main", Some("a"), false)])));
        // Without changes: only the same revision (forced builds of the branch head: both None).
        let forced = |brid, rev| request(brid, vec![stamp("", "main", rev, false)]);
        assert!(can_collapse(&forced(2, None), &forced(1, None)));
        assert!(can_collapse(&forced(2, Some("a")), &forced(1, Some("a"))));
        assert!(!can_collapse(&forced(2, Some("b")), &forced(1, Some("a"))));
        // No source stamps at all (a force without sources): the same thing twice.
        assert!(can_collapse(&request(2, vec![]), &request(1, vec![])));
        // Other codebases: no.
        assert!(!can_collapse(&request(2, vec![]), &forced(1, None)));
        // Same buildset: yes, even when "older".
        let mut same = forced(1, Some("x"));
        same.buildsetid = 9;
        let mut other = forced(2, Some("y"));
        other.buildsetid = 9;
        assert!(can_collapse(&same, &other));
        // Scheduler properties must be equal; `scheduler` itself and other sources do not count.
        let props = |value: &str| {
            vec![
                Property { name: "scheduler".into(), value: serde_json::json!(value), source: "Scheduler".into() },
                Property { name: "owner".into(), value: serde_json::json!(value), source: "Force Build Form".into() },
            ]
        };
        let a = QueuedRequest::new(1, 1, vec![], &props("a"));
        let b = QueuedRequest::new(2, 2, vec![], &props("b"));
        assert!(can_collapse(&b, &a));
        let mut c = b.clone();
        c.scheduler_properties.insert("mode".into(), serde_json::json!("full"));
        assert!(!can_collapse(&c, &a));
        assert_eq!(collapsed_by(&b, &[a.clone(), b.clone(), c.clone()]), vec![1]);
    }

    /// Whether `new` covers `old` as a person would say it: for every codebase `old` builds, `new` builds the
    /// same line of development (repository, branch, project) and at least what `old` builds — newer changes
    /// when `old` built changes, the very same revision when it built a fixed one — and nothing else differs.
    fn covers(new: &QueuedRequest, old: &QueuedRequest) -> bool {
        if new.buildsetid == old.buildsetid {
            return true;
        }
        fn codebases(r: &QueuedRequest) -> Vec<&str> {
            let mut c: Vec<&str> = r.stamps.iter().map(|s| s.sourcestamp.codebase.as_str()).collect();
            c.sort_unstable();
            c.dedup();
            c
        }
        new.brid > old.brid
            && codebases(new) == codebases(old)
            && old.stamps.iter().all(|o| {
                new.stamps.iter().any(|n| {
                    let (ns, os) = (&n.sourcestamp, &o.sourcestamp);
                    ns.codebase == os.codebase
                        && (ns.repository.as_str(), ns.branch.as_deref(), ns.project.as_str())
                            == (os.repository.as_str(), os.branch.as_deref(), os.project.as_str())
                        && if o.has_changes { n.has_changes } else { !n.has_changes && ns.revision == os.revision }
                })
            })
            && new.scheduler_properties == old.scheduler_properties
    }

    fn arb_request(brid: i64) -> impl Strategy<Value = QueuedRequest> {
        let arb_stamp = (
            prop::sample::select(vec!["", "lib"]),
            prop::sample::select(vec!["main", "dev"]),
            prop::option::of(prop::sample::select(vec!["r1", "r2"])),
            any::<bool>(),
        )
            .prop_map(|(codebase, branch, revision, has_changes)| stamp(codebase, branch, revision, has_changes));
        let arb_props = prop::option::of(prop::sample::select(vec!["full", "incremental"]));
        (prop::collection::vec(arb_stamp, 0..3), arb_props).prop_map(move |(stamps, mode)| {
            let mut stamps = stamps;
            stamps.sort_by(|a, b| a.sourcestamp.codebase.cmp(&b.sourcestamp.codebase));
            stamps.dedup_by(|a, b| a.sourcestamp.codebase == b.sourcestamp.codebase);
            let properties: Vec<Property> = mode
                .map(|m| Property { name: "mode".into(), value: serde_json::json!(m), source: "Scheduler".into() })
                .into_iter()
                .collect();
            QueuedRequest::new(brid, brid, stamps, &properties)
        })
    }

    proptest! {
        /// Requests arrive one by one; each collapses what it may of the queue. Every request that ends SKIPPED
        /// is covered by the request that superseded it, and the chain of supersessions ends at a request that
        /// still runs and covers it too: nothing whose sources are not covered by a newer request is dropped.
        #[test]
        fn collapsing_never_drops_an_uncovered_request(
            requests in prop::collection::vec(any::<u8>(), 1..12).prop_flat_map(|seeds| {
                seeds.iter().enumerate().map(|(i, _)| arb_request(i as i64 + 1)).collect::<Vec<_>>()
            }),
            claimed in prop::collection::vec(any::<bool>(), 12),
        ) {
            let mut queued: Vec<QueuedRequest> = Vec::new();
            let mut superseded_by: BTreeMap<i64, i64> = BTreeMap::new();
            for (i, new) in requests.iter().enumerate() {
                // Claimed requests (being built) are not in the queue that collapsing sees.
                let skipped = collapsed_by(new, &queued);
                for brid in &skipped {
                    superseded_by.insert(*brid, new.brid);
                }
                queued.retain(|r| !skipped.contains(&r.brid));
                if claimed[i] {
                    continue;
                }
                queued.push(new.clone());
            }
            let by_id: BTreeMap<i64, &QueuedRequest> = requests.iter().map(|r| (r.brid, r)).collect();
            for (&old, &new) in &superseded_by {
                prop_assert!(covers(by_id[&new], by_id[&old]), "{old} skipped for {new}");
                let mut last = new;
                while let Some(&next) = superseded_by.get(&last) {
                    prop_assert!(next > last);
                    last = next;
                }
                prop_assert!(covers(by_id[&last], by_id[&old]), "{old} skipped, finally for {last}");
            }
        }
    }
}
