//! The Kiln master: the engine that decides everything. It will hold the config, the store, change sources,
//! schedulers, the build-request queue, the build runner, worker connections, reporters and the web server
//! (see DESIGN.md); for now only [`store`], the master's persistent state, and [`results`] exist.

pub mod results;
pub mod store;
