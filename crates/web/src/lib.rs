//! Kiln's HTTP side: [`web`], Buildbot's REST data API under `/api/v2`, the live API (SSE, `/ws`, log follow),
//! the change hooks and the web UI; [`auth`], users, logins, sessions, API tokens and who may do what; and
//! [`metrics`], the Prometheus metrics counted from the events bus.
//!
//! It stands on the engine (`kiln-master`), the store (`kiln-store`) and the shared vocabulary (`kiln-model`),
//! imported below under their module names so that paths read as in the engine (`crate::store::Store`); none
//! of them depends on this crate.

pub mod auth;
mod launch;
pub mod metrics;
pub mod web;

pub use launch::{launch, RunningMaster};

use kiln_master::{changes, config, connections, master, queue, schedulers, secrets, tls};
use kiln_model::{events, model, results};
use kiln_store as store;
