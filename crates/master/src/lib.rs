//! The Kiln master: the engine that decides everything.
//!
//! [`config`] reads `master.toml`; [`store`] is the persistent state every stage writes before the next acts;
//! [`workers`] is the worker port and each worker's connection; [`queue`] decides which request runs where;
//! [`build`] runs a build's steps on a worker; [`master`] ties them together with the actions people take;
//! [`web`] serves the REST API. Change sources, schedulers beyond force, and reporters come later (DESIGN.md).
//!
//! This crate knows nothing of the command line; `kiln` calls [`master::Master::start`].

pub mod auth;
pub mod build;
pub mod calendar;
pub mod changes;
pub mod config;
pub mod connections;
pub mod events;
pub mod interpolate;
pub mod master;
pub mod metrics;
pub mod model;
pub mod queue;
pub mod reporters;
pub mod results;
pub mod schedulers;
pub mod secrets;
pub mod store;
mod tls;
pub mod web;
pub mod workers;
