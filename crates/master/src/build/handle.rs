//! What a build needs from the master that runs it, and nothing more: the `trigger` step submits buildsets
//! through triggerable schedulers, cancels their requests and notices the master
//! stopping. The master implements it; the build knows nothing else of the master.

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::model::{NewBuildset, Submitted};

/// Why the master refused what a step asked (shown in the step's log).
pub type HandleError = Box<dyn std::error::Error + Send + Sync>;

/// The master as a running build sees it.
pub trait MasterHandle: Send + Sync {
    /// Submits `buildset` through the triggerable scheduler `scheduler`, for its builders.
    fn trigger<'a>(
        &'a self,
        scheduler: &'a str,
        buildset: NewBuildset,
    ) -> BoxFuture<'a, Result<Submitted, HandleError>>;

    /// Cancels build request `brid`: a queued one ends CANCELLED, a running one has its build stopped.
    fn cancel_request(&self, brid: i64) -> BoxFuture<'_, Result<(), HandleError>>;

    /// Cancelled when the master begins to stop.
    fn stopping(&self) -> &CancellationToken;

    /// The name of the builder with store id `builderid`, if the config has it.
    fn builder_name(&self, builderid: i64) -> Option<String>;

    /// The master's web address (`url` in the config), for links in logs.
    fn url(&self) -> String;
}
