//! Schedulers: what turns changes and time into build requests.
//!
//! When timed (`Nightly`-style) schedulers fire is [`crate::calendar`]'s: pure, and read by the config too.

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
