//! The fault suite: the real server binary, Redis, Docker and worker processes, with runs in
//! flight, and one injected fault per test:
//!
//! | fault | how |
//! |---|---|
//! | server killed | `kill -9` of the server, then started again |
//! | worker killed | `kill -9` of a worker process |
//! | Redis restarted empty | Redis killed, an empty one started on its port |
//! | Redis flushed | `FLUSHALL` |
//! | Redis stalled | `SIGSTOP` for 10 s, then `SIGCONT` |
//! | worker hung | `SIGSTOP` of a worker: it stops heartbeating |
//!
//! After each fault the test waits until the test has been run `RUNS` times, stops the
//! server, and compares the durable result records with what Redis holds (what the next start
//! loads): every finished run is there in the same state (none lost), and the test counts
//! exactly `RUNS` runs, each a distinct execution (none counted twice). Each test prints a
//! `fault: … lost … counted twice …` line, the README's table.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::json;
use test_looper_core::scheduling::{ResultRecord, RunRecord};
use test_looper_tests::install::{make_repo, worker_binary};
use test_looper_tests::server_process::ServerProcess;
use test_looper_tests::{DockerEngine, RedisServer};

const REPO: &str = "faults";
const TEST: &str = "work/linux";
const RUNS: usize = 8;

const YML: &str = r#"
looper_version: 4
environments:
  linux:
    platform: linux
    image:
      dockerfile_contents: |
        FROM test-looper/base:1
tests:
  work/linux:
    environment: linux
    command: echo started; sleep 2; echo finished
"#;

/// A server process over its own Redis, repo, artifacts and Docker scope.
struct Faulty {
    redis: RedisServer,
    dir: tempfile::TempDir,
    server: ServerProcess,
    commit: String,
    scope: String,
}

impl Faulty {
    async fn start(name: &str) -> Faulty {
        let redis = RedisServer::start();
        let dir = tempfile::tempdir().unwrap();
        let (_repo, commit) = make_repo(
            dir.path(),
            REPO,
            &[("testlooper.yml".to_string(), YML.to_string())],
        );
        let scope = format!("fault_{name}_{}", std::process::id());
        let config = format!(
            r#"redis:
  url: {redis}
source_control:
  local:
    path_to_repos: {dir}/repos
    poll_interval_ms: 100
artifacts:
  local_disk:
    path: {dir}/artifacts
machine_management:
  local_docker:
    local_storage_path: {dir}/workers
    docker_scope: {scope}
    idle_timeout_seconds: 600
    worker_binary: {binary}
    limits: {{max_workers: 2, max_cores: 2, max_ram_gb: 2}}
"#,
            redis = redis.url(),
            dir = dir.path().display(),
            binary = worker_binary().display(),
        );
        let server = ServerProcess::start(dir.path(), &config);
        let faulty = Faulty {
            redis,
            dir,
            server,
            commit,
            scope,
        };
        faulty
            .until(
                "the branch to be scanned",
                Duration::from_secs(60),
                || async {
                    faulty
                        .server
                        .get_json(&format!("/api/branch?repo={REPO}&branch=master"))
                        .await
                        .is_some()
                },
            )
            .await;
        faulty
            .act(
                "branch",
                json!({"repo": REPO, "branch": "master", "under_test": "true"}),
            )
            .await;
        faulty
            .act(
                "runs_desired",
                json!({"repo": REPO, "commit": faulty.commit, "test": TEST, "runs": RUNS}),
            )
            .await;
        faulty
    }

    /// An action, retried while the server is unavailable (restarting, recovering).
    async fn act(&self, name: &str, body: serde_json::Value) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.server.action(name, body.clone()).await {
                Ok(()) => return,
                Err(err) if Instant::now() < deadline => {
                    eprintln!("{name} not accepted yet: {err:#}");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(err) => panic!("{name}: {err:#}"),
            }
        }
    }

    async fn until<F, Fut>(&self, what: &str, limit: Duration, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + limit;
        while !check().await {
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; server log:\n{}",
                    tail(&self.server.log_text())
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The durable result records, by run id.
    fn records(&self) -> BTreeMap<String, RunRecord> {
        let root = self.dir.path().join("artifacts/scheduler/results");
        let mut records = BTreeMap::new();
        for hash in std::fs::read_dir(root).into_iter().flatten().flatten() {
            for file in std::fs::read_dir(hash.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = file.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || !name.ends_with(".json") {
                    continue;
                }
                let text = std::fs::read_to_string(file.path()).unwrap();
                let record: ResultRecord = serde_json::from_str(&text).unwrap();
                records.insert(record.run.run_id.clone(), record.run);
            }
        }
        records
    }

    /// The runs Redis holds (what a server start loads), by run id.
    fn stored_runs(&self) -> BTreeMap<String, RunRecord> {
        let Ok(mut connection) = self.redis.client().get_connection() else {
            return BTreeMap::new();
        };
        let fields: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg("tl:runs")
            .query(&mut connection)
            .unwrap_or_default();
        fields
            .into_iter()
            .filter_map(|(id, text)| Some((id, serde_json::from_str(&text).ok()?)))
            .collect()
    }

    fn counted_records(&self) -> usize {
        self.records().values().filter(|run| run.counted()).count()
    }

    /// Waits until some runs finished and one is in flight: the moment to inject a fault.
    async fn runs_in_flight(&self) {
        self.until(
            "finished runs and one in flight",
            Duration::from_secs(180),
            || async {
                self.counted_records() >= 2
                    && self.stored_runs().values().any(|run| run.state.is_active())
            },
        )
        .await;
    }

    /// Waits for the test to reach `RUNS` counted runs, stops the server and checks the
    /// accounting (see the module docs). Prints the README's table row.
    async fn settle_and_check(mut self, fault: &str) {
        self.until(
            "every run to be counted",
            Duration::from_secs(300),
            || async { self.counted_records() >= RUNS },
        )
        .await;
        self.server.stop();
        let records = self.records();
        let stored = self.stored_runs();
        let lost: Vec<&String> = records
            .iter()
            .filter(|(id, run)| stored.get(*id).map(|s| s.state) != Some(run.state))
            .map(|(id, _)| id)
            .collect();
        let counted: BTreeSet<&String> = stored
            .iter()
            .filter(|(_, run)| run.counted())
            .map(|(id, _)| id)
            .collect();
        let counted_records: BTreeSet<&String> = records
            .iter()
            .filter(|(_, run)| run.counted())
            .map(|(id, _)| id)
            .collect();
        let twice = counted.len().saturating_sub(RUNS);
        println!(
            "fault: {fault} | runs lost: {} | runs counted twice: {twice} | runs counted: {}",
            lost.len(),
            counted.len()
        );
        assert!(lost.is_empty(), "finished runs lost: {lost:?}");
        assert_eq!(counted.len(), RUNS, "counted runs: {counted:?}");
        assert_eq!(
            counted, counted_records,
            "redis and the durable records agree"
        );
        let mut connection = self.redis.client().get_connection().unwrap();
        let epoch: Option<String> = redis::cmd("GET")
            .arg("tl:meta")
            .query(&mut connection)
            .unwrap();
        assert!(epoch.is_some(), "redis holds a whole state");
        self.cleanup().await;
    }

    async fn cleanup(&self) {
        for pid in self.server.worker_pids() {
            signal(pid, libc::SIGKILL);
        }
        let engine = DockerEngine::connect().await;
        let _ = test_looper_containers::remove_labelled(
            engine.client(),
            "test-looper.scope",
            &self.scope,
        )
        .await;
    }
}

fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) on a worker process this test's server started.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

#[tokio::test]
async fn server_killed() {
    let mut faulty = Faulty::start("server").await;
    faulty.runs_in_flight().await;
    faulty.server.kill();
    faulty.server.restart();
    faulty.settle_and_check("server killed (kill -9)").await;
}

#[tokio::test]
async fn worker_killed() {
    let faulty = Faulty::start("worker").await;
    faulty.runs_in_flight().await;
    let workers = faulty.server.worker_pids();
    assert!(!workers.is_empty(), "the pool runs workers");
    signal(workers[0], libc::SIGKILL);
    faulty.settle_and_check("worker killed (kill -9)").await;
}

#[tokio::test]
async fn redis_restarted_empty() {
    let mut faulty = Faulty::start("redis_restart").await;
    faulty.runs_in_flight().await;
    faulty.redis.restart_empty();
    faulty
        .settle_and_check("Redis killed, restarted empty")
        .await;
}

#[tokio::test]
async fn redis_flushed() {
    let faulty = Faulty::start("flushall").await;
    faulty.runs_in_flight().await;
    let mut connection = faulty.redis.client().get_connection().unwrap();
    redis::cmd("FLUSHALL").query::<()>(&mut connection).unwrap();
    faulty.settle_and_check("FLUSHALL").await;
}

#[tokio::test]
async fn redis_stalled() {
    let faulty = Faulty::start("stall").await;
    faulty.runs_in_flight().await;
    let stall = Duration::from_secs(10);
    faulty.redis.stall(stall);
    faulty.settle_and_check("Redis stalled for 10 s").await;
}

#[tokio::test]
async fn worker_hung() {
    let faulty = Faulty::start("hung").await;
    faulty.runs_in_flight().await;
    let workers = faulty.server.worker_pids();
    assert!(!workers.is_empty(), "the pool runs workers");
    signal(workers[0], libc::SIGSTOP);
    faulty
        .settle_and_check("worker hung (SIGSTOP, no heartbeats)")
        .await;
}
