//! The test-looper worker (the `test-looper-worker` binary): one machine's daemon.
//!
//! - [`daemon`]: the session with the server (websocket, work requests, completions kept for
//!   replay, live logs, deployment terminals) and the HTTP source fetcher.
//! - [`executor`]: runs one assignment or deployment in Docker (images, inputs, stages,
//!   artifacts, results, the scoped Docker socket), labelling and reaping its containers with
//!   `test_looper_containers`.
//!
//! The developer CLI `tl` lives in its own crate (`cli/`).

pub mod daemon;
pub mod executor;
