//! Changes: new commits (from a git poller, a forge's webhook, `kiln sendchange`) and new package releases.
//! Every source turns what it saw into [`NewChange`]s; the store keeps them and schedulers decide what to build.

pub mod git_poller;
pub mod release_poller;
pub mod webhooks;

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use crate::model::NewChange;
pub use git_poller::PollError;

/// A change source the master polls (`git_poller`, `release_poller`): a poll finds the changes since the saved
/// state; the new state is saved only once those changes are stored.
pub trait Poller {
    /// The source's name (it keys the saved state).
    fn name(&self) -> &str;
    /// Finds the changes since the saved state; keeps the new state pending.
    fn poll(&mut self) -> impl Future<Output = Result<Vec<NewChange>, PollError>> + Send;
    /// Saves the pending state of the last poll, once its changes are stored.
    fn commit_state(&mut self) -> impl Future<Output = Result<(), PollError>> + Send;
    /// Forgets the pending state (its changes were not stored): the next poll finds them again.
    fn discard(&mut self);
}

/// Polls every `interval` (the first time at once) until `stop`, and at once whenever `now` is notified (the
/// `poller` change hook): each poll's changes go to `deliver`, which answers whether it stored them; only then
/// is the source's state saved, so a failure or a crash in between delivers the changes again rather than losing
/// them. Errors are logged and the next poll tries again.
pub async fn run_poller<P, F, Fut>(
    mut poller: P,
    interval: Duration,
    now: std::sync::Arc<tokio::sync::Notify>,
    stop: CancellationToken,
    mut deliver: F,
) where
    P: Poller,
    F: FnMut(Vec<NewChange>) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
            _ = now.notified() => {
                tracing::info!(source = %poller.name(), "polling now, as asked through the poller hook");
                // The next periodic poll counts from this one.
                ticks.reset();
            }
        }
        let polled = tokio::select! {
            _ = stop.cancelled() => return,
            polled = poller.poll() => polled,
        };
        let changes = match polled {
            Ok(changes) => changes,
            Err(e) => {
                tracing::warn!(source = %poller.name(), "poll failed: {e}");
                continue;
            }
        };
        let count = changes.len();
        if changes.is_empty() || deliver(changes).await {
            match poller.commit_state().await {
                Err(e) => {
                    tracing::warn!(source = %poller.name(), "cannot save the state (the changes will come again): {e}")
                }
                Ok(()) if count > 0 => tracing::info!(source = %poller.name(), "{count} new change(s)"),
                Ok(()) => {}
            }
        } else {
            poller.discard();
            tracing::warn!(source = %poller.name(), "{count} change(s) not stored; retrying at the next poll");
        }
    }
}
