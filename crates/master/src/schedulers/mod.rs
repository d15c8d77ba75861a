//! Schedulers: what turns changes and time into build requests.
//!
//! [`calendar`] is the pure calendar of timed (`Nightly`-style) schedulers: when they fire, in a time zone.

pub mod calendar;
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
