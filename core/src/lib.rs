//! Pure logic of test-looper, the statistical CI server: no I/O, no async, deterministic.
//! The server and the `tl` tool build on it; the fuzzer and the benches drive it directly.
//!
//! - [`definitions`]: the test-definitions language (the `.testlooper.yml` a commit
//!   carries) and commit resolution, documented for users in `docs/definitions.md`.
//!   Everything outside (files, other commits) comes through a
//!   [`DefinitionsSource`](definitions::DefinitionsSource); [`definitions::memory`] holds one
//!   in memory.
//! - [`scheduling`]: the scheduler's state machine. Git scans, user actions and worker
//!   reports go in with the current time; priorities, the work order, run lifecycles and
//!   failure-rate statistics come out, and [`Changes`](scheduling::Changes) lists what the
//!   server must persist.
//! - [`protocol`]: the types exchanged between the scheduler and workers.
//! - [`scrollback`]: the bounded tail of a byte stream with absolute offsets (terminal
//!   output, kept by server and worker alike).
//!
//! # Example
//!
//! Resolve a commit's definitions, hand the commit to the scheduler, and play one worker
//! that runs the build and then the test:
//!
//! ```
//! use test_looper_core::definitions::memory::MemorySource;
//! use test_looper_core::definitions::{resolve_commit, CommitRef};
//! use test_looper_core::protocol::{Completion, CompletionAck, MachineInfo, OsConfig};
//! use test_looper_core::protocol::{RunOutcome, RunResult, Work};
//! use test_looper_core::scheduling::{CommitInfo, Engine, ParseOutcome, SchedulerConfig};
//!
//! let commit = "0123456789abcdef0123456789abcdef01234567";
//! let mut source = MemorySource::new();
//! source.add_file("app", commit, ".testlooper.yml", r#"
//! looper_version: 4
//! environments:
//!   linux:
//!     platform: linux
//!     image: {dockerfile_contents: "FROM test-looper/base:1"}
//! builds:
//!   build/linux: {command: make}
//! tests:
//!   unit/linux: {command: ./run_tests, dependencies: {bin: build/linux}}
//! "#);
//! let resolved = resolve_commit(&CommitRef::new("app", commit), &source).unwrap();
//! let test = &resolved.definitions["unit/linux"];
//! assert_eq!(test.environment.name, "linux");
//! assert_eq!(test.hash.len(), 64); // the identity hash
//!
//! // The scheduler learns about the branch and its commit, and a user enables the branch.
//! let mut engine = Engine::new(SchedulerConfig::default());
//! let info = CommitInfo {
//!     hash: commit.into(),
//!     parents: vec![],
//!     author: "dev".into(),
//!     timestamp: 1_700_000_000,
//!     subject: "first".into(),
//!     parse: ParseOutcome::Ok(Box::new(resolved)),
//! };
//! let mut now = 1_000;
//! engine.ingest_branch_scan("app", "main", commit, vec![info], now);
//! engine.set_branch_under_test("app", "main", true, now).unwrap();
//!
//! // A worker registers and asks for work: the build comes first, then the test.
//! let machine = MachineInfo {
//!     machine_id: "m1".into(),
//!     cores: 4,
//!     ram_gb: 16,
//!     os: OsConfig::LinuxDocker,
//!     shares_cores: false,
//! };
//! engine.register_machine(machine, now);
//! let mut ran = Vec::new();
//! while let Some(Work::Run(assignment)) = engine.next_work("m1", now).unwrap() {
//!     now += 1_000;
//!     ran.push(assignment.definition.name.clone());
//!     let outcome = RunOutcome {
//!         result: RunResult::Passed,
//!         test_cases: vec![],
//!         artifacts: assignment.artifacts.clone(),
//!     };
//!     let completion = Completion { run_id: assignment.run_id.clone(), outcome };
//!     assert_eq!(engine.record_completion(&completion, now), CompletionAck::Recorded);
//! }
//! assert_eq!(ran, ["build/linux", "unit/linux"]);
//!
//! let view = engine.commit_view("app", commit).unwrap();
//! let unit = view.tests.iter().find(|t| t.name == "unit/linux").unwrap();
//! assert_eq!((unit.counts.runs, unit.counts.failures), (1, 0));
//! ```

pub mod definitions;
/// The EC2 machine pool's pure decision core (reconciler step, packing, simulator).
pub mod pool;
pub mod protocol;
pub mod scheduling;
pub mod scrollback;
pub mod stats;
