//! The live endpoints (`/api/v2/events`, `/api/v2/logs/{id}/follow`, `/ws`) over real sockets, on a master
//! whose bus the tests publish on.
