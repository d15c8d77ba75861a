//! The domain's plain types: what a change source reports, what a scheduler asks for, what the queue holds,
//! what a build, step and log are, and Buildbot's [`Results`].
//!
//! Plain data with the few rules that belong to the data itself (a change's source stamp, a request's priority,
//! the worst of two results). This module depends on nothing else in the crate, so every other module (the
//! store, the events, the web, the engine) can use it without depending on each other; their old paths
//! re-export these types (`store::Build`, `changes::NewChange`, `master::Submitted`, …).

mod build;
mod buildset;
mod change;
mod notification;
mod results;

pub use build::{Build, Log, Step, Worker};
pub use buildset::{
    BuildRequest, Buildset, CompletedBuildset, NewBuildset, Property, SourceStamp, StateWrite, Submitted,
};
pub use change::{Change, NewChange, CHANGE_PROPERTY_SOURCE};
pub use notification::{
    BuildFacts, BuildsetFacts, NewNotification, Notification, NotificationCounts, NotificationState, PastBuild, HISTORY,
};
pub use results::{Results, UnknownResults};
