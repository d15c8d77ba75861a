//! Schedulers: what turns changes and time into build requests.
//!
//! When timed (`Nightly`-style) schedulers fire is [`crate::calendar`]'s: pure, and read by the config too.

pub mod change_feed;
pub mod dependent;
pub mod force;
pub mod on_change;
pub mod timed;

#[cfg(test)]
mod testing;

/// The object-state name of the scheduler `name` (where it keeps what must survive a restart).
pub fn state_name(name: &str) -> String {
    format!("scheduler:{name}")
}

/// The object-state key of the id of the last change a scheduler that takes changes has classified: the
/// changes after it are read from the store when it starts ([`change_feed`]). Stored in the same transaction as
/// what the scheduler keeps of the changes it classified (its waiting changes, or the buildset it submits).
pub const LAST_CLASSIFIED_KEY: &str = "last_classified";

/// How long a scheduler whose store write failed waits before it starts again from its stored state.
pub const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// How a scheduler's serving loop ended.
pub(crate) enum Served {
    Stopped,
    /// A store operation failed: start again from the stored state.
    Failed,
}

/// After a failed store write of scheduler `name`: waits [`RETRY_AFTER`] (running `drain`, which drops the live
/// announcements meanwhile: the store has them) before it starts again from its stored state. `false` when the
/// master stops meanwhile.
pub(crate) async fn wait_to_retry(
    name: &str,
    stop: &tokio_util::sync::CancellationToken,
    drain: impl std::future::Future<Output = ()>,
) -> bool {
    tracing::warn!(scheduler = %name, "the scheduler starts again from its stored state in {RETRY_AFTER:?}");
    tokio::select! {
        () = stop.cancelled() => false,
        () = tokio::time::sleep(RETRY_AFTER) => true,
        () = drain => true,
    }
}

/// After how many changes taken without writing anything a scheduler stores its [`LAST_CLASSIFIED_KEY`] anyway
/// (so a restart reads back few of them; reading back an ignored change again does nothing).
pub const SAVE_IGNORED_EVERY: u32 = change_feed::PAGE;
