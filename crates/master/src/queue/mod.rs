//! The build request queue: which request runs next, on which worker.
//!
//! Builders are served by their most urgent request (highest priority, then oldest); within a builder,
//! requests go in the same order. `plan` decides which requests start on which workers (room, pauses, locks),
//! `locks` holds the master's locks, `collapse` decides which queued requests a new one makes unnecessary. All
//! three are pure or in memory; the master gathers their input from the store and carries out their decisions.

pub mod collapse;
pub mod locks;
pub mod plan;

use std::collections::HashMap;

use crate::model::BuildRequest;

/// The order in which builders are served: by their most urgent request (highest priority, then oldest
/// submission, then lowest id), then by name.
pub fn builder_order(pending: &HashMap<String, Vec<BuildRequest>>) -> Vec<&str> {
    let mut builders: Vec<(&str, (i32, i64, i64))> = pending
        .iter()
        .filter_map(|(name, requests)| requests.iter().map(urgency).min().map(|key| (name.as_str(), key)))
        .collect();
    builders.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(b.0)));
    builders.into_iter().map(|(name, _)| name).collect()
}

/// Sort key of a request: smaller is more urgent.
pub fn urgency(request: &BuildRequest) -> (i32, i64, i64) {
    (-request.priority, request.submitted_at, request.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pending request of builder 1, alone in its buildset.
    pub(super) fn request(id: i64, priority: i32, submitted_at: i64) -> BuildRequest {
        BuildRequest {
            id,
            buildsetid: id,
            builderid: 1,
            priority,
            submitted_at,
            complete: false,
            results: None,
            complete_at: None,
            waited_for: false,
            superseded_by: None,
            claimed_by_masterid: None,
        }
    }

    #[test]
    fn builders_by_most_urgent_request() {
        let mut pending = HashMap::new();
        pending.insert("old".to_string(), vec![request(1, 0, 100)]);
        pending.insert("urgent".to_string(), vec![request(3, 5, 300), request(4, 0, 50)]);
        pending.insert("new".to_string(), vec![request(2, 0, 200)]);
        pending.insert("idle".to_string(), vec![]);
        assert_eq!(builder_order(&pending), vec!["urgent", "old", "new"]);
    }
}
