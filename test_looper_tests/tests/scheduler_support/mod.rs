//! Shared helpers of the scheduler system tests: worlds of definitions files resolved with
//! the real resolver, a scheduler on a real Redis with a fake clock and a local result
//! store, and stand-in workers that report artifacts and completions.

#![allow(dead_code)]

use std::sync::Arc;

use test_looper_core::definitions::memory::MemorySource;
use test_looper_core::definitions::{resolve_commit, CommitRef, DefinitionsError};
use test_looper_core::protocol::{
    ArtifactUploaded, Assignment, Completion, CompletionAck, FailureReason, MachineInfo, OsConfig,
    RunOutcome, RunResult, TestCaseResult, Work,
};
use test_looper_core::scheduling::{CommitInfo, ParseOutcome, SchedulerConfig, TestView};
use test_looper_server::scheduler::clock::FakeClock;
use test_looper_server::scheduler::results::ArtifactResultStore;
use test_looper_server::scheduler::Scheduler;
use test_looper_tests::RedisServer;

/// Fake-clock start: 1,000,000 s after the epoch.
pub const T0: u64 = 1_000_000_000;

/// A Redis, a result directory and a fake clock; opens schedulers over them.
pub struct Harness {
    pub redis: RedisServer,
    pub dir: tempfile::TempDir,
    pub clock: Arc<FakeClock>,
    pub config: SchedulerConfig,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_config(SchedulerConfig {
            id_prefix: "t".into(),
            ..SchedulerConfig::default()
        })
    }

    pub fn with_config(config: SchedulerConfig) -> Harness {
        Harness {
            redis: RedisServer::start(),
            dir: tempfile::tempdir().expect("temp dir"),
            clock: Arc::new(FakeClock::new(T0)),
            config,
        }
    }

    pub fn store(&self) -> Arc<ArtifactResultStore> {
        Arc::new(ArtifactResultStore::local(self.dir.path()))
    }

    pub async fn open(&self) -> Arc<Scheduler> {
        self.open_with(self.store()).await
    }

    /// Opens a scheduler that keeps its result records in `results`.
    pub async fn open_with(
        &self,
        results: Arc<dyn test_looper_server::scheduler::results::ResultStore>,
    ) -> Arc<Scheduler> {
        Scheduler::open(
            &self.redis.client(),
            results,
            self.config.clone(),
            self.clock.clone(),
        )
        .await
        .expect("scheduler opens")
    }

    /// Seconds since T0 → fake time.
    pub fn set_secs(&self, seconds: u64) {
        self.clock.set(T0 + seconds * 1000);
    }
}

/// A set of commits with their definitions files, resolved by the real resolver.
#[derive(Default)]
pub struct World {
    source: MemorySource,
    parents: std::collections::BTreeMap<(String, String), Vec<String>>,
}

impl World {
    pub fn new() -> World {
        World {
            source: MemorySource::new()
                .accepting_any_ref()
                .assuming_paths_exist(),
            parents: Default::default(),
        }
    }

    pub fn commit(&mut self, repo: &str, hash: &str, parents: &[&str], yaml: &str) -> &mut World {
        self.source
            .add_file(repo, hash, "testDefinitions.yml", yaml);
        self.parents.insert(
            (repo.into(), hash.into()),
            parents.iter().map(|p| p.to_string()).collect(),
        );
        self
    }

    /// Adds another file to a commit.
    pub fn file(&mut self, repo: &str, hash: &str, path: &str, text: &str) -> &mut World {
        self.source.add_file(repo, hash, path, text);
        self
    }

    pub fn info(&self, repo: &str, hash: &str) -> CommitInfo {
        let parse = match resolve_commit(&CommitRef::new(repo, hash), &self.source) {
            Ok(resolved) if resolved.definitions.is_empty() => ParseOutcome::NoTests,
            Ok(resolved) => ParseOutcome::Ok(Box::new(resolved)),
            Err(DefinitionsError::Pending { .. }) => ParseOutcome::Pending("pending".into()),
            Err(err) => ParseOutcome::Untestable(err.to_string()),
        };
        CommitInfo {
            hash: hash.into(),
            parents: self
                .parents
                .get(&(repo.to_string(), hash.to_string()))
                .cloned()
                .unwrap_or_default(),
            author: "tester".into(),
            timestamp: 1_600_000_000,
            subject: format!("commit {hash}"),
            parse,
        }
    }

    pub fn infos(&self, repo: &str, hashes: &[&str]) -> Vec<CommitInfo> {
        hashes.iter().map(|hash| self.info(repo, hash)).collect()
    }
}

pub fn linux(id: &str, cores: u32) -> MachineInfo {
    MachineInfo {
        machine_id: id.into(),
        cores,
        ram_gb: 16,
        os: OsConfig::LinuxDocker,
        shares_cores: false,
    }
}

pub fn run_of(work: Option<Work>) -> Assignment {
    match work {
        Some(Work::Run(assignment)) => *assignment,
        other => panic!("expected a run assignment, got {other:?}"),
    }
}

pub fn passed(artifacts: Vec<String>) -> RunOutcome {
    RunOutcome {
        result: RunResult::Passed,
        test_cases: vec![TestCaseResult {
            name: "case".into(),
            passed: true,
            has_logs: false,
        }],
        artifacts,
    }
}

pub fn failed(artifacts: Vec<String>) -> RunOutcome {
    RunOutcome {
        result: RunResult::Failed {
            reason: FailureReason::TestFailure,
            message: "exit code 1".into(),
        },
        test_cases: vec![TestCaseResult {
            name: "case".into(),
            passed: false,
            has_logs: true,
        }],
        artifacts,
    }
}

/// Reports every artifact of the assignment (none when it fails, like a failing build
/// stage), then completes it.
pub async fn finish(
    scheduler: &Scheduler,
    assignment: &Assignment,
    success: bool,
) -> CompletionAck {
    let uploaded = if success {
        assignment.artifacts.clone()
    } else {
        Vec::new()
    };
    for artifact in &uploaded {
        scheduler
            .artifact_uploaded(&ArtifactUploaded {
                run_id: assignment.run_id.clone(),
                artifact: artifact.clone(),
            })
            .await
            .expect("artifact report");
    }
    let outcome = if success {
        passed(uploaded)
    } else {
        failed(uploaded)
    };
    scheduler
        .record_completion(&Completion {
            run_id: assignment.run_id.clone(),
            outcome,
        })
        .await
        .expect("completion")
}

/// The view of the definition `name` declared by `repo/commit`.
pub async fn test_of(scheduler: &Scheduler, repo: &str, commit: &str, name: &str) -> TestView {
    scheduler
        .read(|engine| {
            engine
                .commit_view(repo, commit)
                .and_then(|view| view.tests.into_iter().find(|test| test.name == name))
        })
        .await
        .unwrap_or_else(|| panic!("{repo}/{commit} declares {name}"))
}

/// A definitions file with one Linux environment and the given builds/tests sections.
pub fn definitions(body: &str) -> String {
    format!(
        "looper_version: 4\nenvironments:\n  linux:\n    platform: linux\n    image:\n      dockerfile_contents: \"FROM test-looper/base:1\"\n{body}"
    )
}

/// Build B and test T depending on it.
pub fn build_and_test() -> String {
    definitions(
        "builds:\n  B:\n    environment: linux\n    command: \"make\"\ntests:\n  T:\n    environment: linux\n    command: \"test\"\n    dependencies:\n      b: B\n",
    )
}

/// Ingests repo `r` with one commit `c` declaring one test `T`, on branch `main`, and
/// enables the branch.
pub async fn enable_one_test(scheduler: &Scheduler) {
    let mut world = World::new();
    world.commit(
        "r",
        "c",
        &[],
        &definitions("tests:\n  T:\n    environment: linux\n    command: \"c\"\n"),
    );
    scheduler
        .ingest_branch_scan("r", "main", "c", world.infos("r", &["c"]))
        .await
        .unwrap();
    scheduler
        .set_branch_under_test("r", "main", true)
        .await
        .unwrap();
}
