//! The test-looper worker: the programs that run on the machines and the library they share.
//!
//! Two binaries are built from this crate:
//! - `test-looper-worker` (`src/bin/worker.rs`), the daemon. The server's local machine
//!   pool starts one per worker (or start one by hand with `--server-url`, `--token`,
//!   `--machine-id` and `--storage`). It connects to the server's worker websocket, asks
//!   for work, runs each assignment in the local Docker engine, streams the log, stores
//!   artifacts in the configured store and reports the completion until it is
//!   acknowledged.
//! - `tl` (`src/bin/tl.rs`), the command line tool: `tl info` resolves the definitions of a
//!   checkout exactly as the server does (see the README and `docs/definitions.md`).
//!
//! Modules:
//! - [`daemon`]: the websocket session with the server: registration, heartbeats,
//!   reconnection with backoff, and replaying a run's log, artifacts and completion after
//!   a reconnect; deployments' terminals.
//! - [`executor`]: runs one assignment in Docker: run directories, the environment image,
//!   dependencies unpacked into `TEST_INPUTS`, each stage and its cleanup in a fresh
//!   container, artifacts packed and uploaded, per-case results from `testSummary.json` and
//!   JUnit XML. What a test may and may not do is in `docs/sandbox.md`.
//! - `tl`: the subcommands of `tl`.

pub mod daemon;
pub mod executor;
pub mod tl;
