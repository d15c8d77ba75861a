//! Kiln's vocabulary, shared by every part of the master: [`model`], the domain's plain types (changes, source
//! stamps, buildsets, requests, builds, steps, logs, workers, `Results`); [`results`], Buildbot's result codes as
//! integers; and [`events`], what changed and the bus it travels on.
//!
//! This crate depends on no other crate of the workspace, so the store, the engine and the web can all use it
//! without depending on each other.

pub mod events;
pub mod model;
pub mod results;
