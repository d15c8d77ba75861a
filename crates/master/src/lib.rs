//! The Kiln engine: the part of the master that decides everything.
//!
//! [`config`] reads `master.toml`; [`changes`] and [`schedulers`] turn commits and time into buildsets; [`queue`]
//! decides which request runs where; [`workers`] is the worker port and each worker's connection; [`build`] runs
//! a build's steps on a worker; [`reporters`] tell people about builds; [`master`] ties them together with the
//! actions people take. The store ([`store`], crate `kiln-store`) and the shared vocabulary ([`model`],
//! [`results`], [`events`], crate `kiln-model`) are crates below this one, imported here under their module
//! names so that every path of the engine reads the same (`crate::store::Store`). The web (crate `kiln-web`)
//! is above: the engine knows nothing of how it is shown.
//!
//! This crate knows nothing of the command line; `kiln` calls [`master::Master::start`].

pub mod build;
pub mod calendar;
pub mod changes;
pub mod config;
pub mod connections;
pub mod interpolate;
pub mod master;
pub mod queue;
pub mod reporters;
pub mod schedulers;
pub mod secrets;
pub mod tls;
pub mod workers;

pub use kiln_model::{events, model, results};
pub use kiln_store as store;
