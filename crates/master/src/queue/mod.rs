//! The build request queue: which request runs next, on which worker.
//!
//! Builders are served by their most urgent request (highest priority, then oldest); within a builder,
//! requests go in the same order. A request goes to a connected worker of its builder that has room
//! (`max_builds`), the least busy first. A request never waits while such a worker is idle.

pub mod collapse;

use std::collections::HashMap;

use crate::store::BuildRequest;

/// A worker's load, as the queue sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerLoad {
    pub name: String,
    pub running: usize,
    pub max_builds: Option<usize>,
}

impl WorkerLoad {
    fn has_room(&self) -> bool {
        self.max_builds.is_none_or(|max| self.running < max)
    }
}

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

/// Picks a worker with room among `candidates` (the builder's connected workers): the least busy, then the
/// first by name.
pub fn pick_worker(candidates: &[WorkerLoad]) -> Option<&WorkerLoad> {
    candidates.iter().filter(|w| w.has_room()).min_by(|a, b| a.running.cmp(&b.running).then(a.name.cmp(&b.name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: i64, priority: i32, submitted_at: i64) -> BuildRequest {
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

    fn load(name: &str, running: usize, max_builds: Option<usize>) -> WorkerLoad {
        WorkerLoad { name: name.into(), running, max_builds }
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

    #[test]
    fn least_busy_worker_with_room() {
        let workers = [load("a", 2, Some(2)), load("b", 1, None), load("c", 0, Some(1))];
        assert_eq!(pick_worker(&workers).map(|w| w.name.as_str()), Some("c"));
        let full = [load("a", 1, Some(1)), load("b", 3, Some(3))];
        assert_eq!(pick_worker(&full), None);
        assert_eq!(pick_worker(&[]), None);
    }
}
