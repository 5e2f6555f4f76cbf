//! The test-looper worker (the `test-looper-worker` binary, `src/bin/worker.rs`): one
//! machine's daemon. The server's local machine pool starts one per worker (or start one by
//! hand with `--server-url`, `--token`, `--machine-id` and `--storage`). It connects to the
//! server's worker websocket, asks for work, runs each assignment in the local Docker engine,
//! streams the log, stores artifacts in the configured store and reports the completion until
//! it is acknowledged.
//!
//! - [`daemon`]: the websocket session with the server: registration, heartbeats,
//!   reconnection with backoff, and replaying a run's log, artifacts and completion after a
//!   reconnect; deployments' terminals; the HTTP source fetcher.
//! - [`executor`]: runs one assignment or deployment in Docker: run directories, the
//!   environment image, dependencies unpacked into `TEST_INPUTS`, each stage and its cleanup
//!   in a fresh container, artifacts packed and uploaded, per-case results from
//!   `testSummary.json` and JUnit XML, the scoped Docker socket, containers labelled and
//!   reaped with `test_looper_containers`. What a test may and may not do is in
//!   `docs/sandbox.md`.
//!
//! The developer CLI `tl` lives in its own crate (`cli/`).

pub mod daemon;
pub mod executor;
