//! End-to-end tests: each starts the real `strata` binary on free ports and talks to it
//! over HTTP with reqwest, as a user would.

mod e2e;
