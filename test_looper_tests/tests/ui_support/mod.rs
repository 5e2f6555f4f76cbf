//! A test-looper server with its real services (scheduler over Redis, git feed, artifact
//! store) on a free loopback port, for UI system and browser tests; and the scheduler moves
//! a worker would make (register a machine, take work, append log chunks, upload an
//! artifact, complete), so tests stay fast and need no Docker.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use test_looper_core::protocol::{
    ArtifactUploaded, Completion, FailureReason, MachineInfo, OsConfig, RunOutcome, RunResult,
    TestCaseResult, Work,
};
use test_looper_server::scheduler::Scheduler;
use test_looper_server::services::{self, Services};
use test_looper_server::AppContext;

/// A running server with its services; stopped when dropped.
pub struct LiveServer {
    pub base_url: String,
    pub context: Arc<AppContext>,
    pub services: Services,
    handle: actix_web::dev::ServerHandle,
}

impl LiveServer {
    /// Starts the services and the HTTP listener for local repos under `dir/repos`. Must be
    /// called within an actix system (`#[actix_web::test]`).
    pub async fn start(dir: &Path, redis_url: &str) -> Self {
        Self::start_with(dir, redis_url, |_| {}).await
    }

    /// [`LiveServer::start`] with the configuration adjusted by `adjust` first.
    pub async fn start_with(
        dir: &Path,
        redis_url: &str,
        adjust: impl FnOnce(&mut test_looper_server::config::Config),
    ) -> Self {
        let mut config = test_looper_tests::server::local_config(dir, redis_url);
        adjust(&mut config);
        config.server.http_port = 0;
        config.server.bind = "127.0.0.1".into();
        let context = AppContext::new(config).expect("context");
        let services = services::start(&context).await.expect("services start");
        let (server, addrs) =
            test_looper_server::web::start(context.clone(), ("127.0.0.1".into(), 0)).expect("bind");
        let handle = server.handle();
        actix_web::rt::spawn(server);
        LiveServer {
            base_url: format!("http://{}", addrs[0]),
            context,
            services,
            handle,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn scheduler(&self) -> &Arc<Scheduler> {
        &self.services.scheduler
    }

    /// Waits until the scheduler has ingested `branch` of `repo` at `head`.
    pub async fn wait_for_branch(&self, repo: &str, branch: &str, head: &str) {
        let scheduler = self.scheduler().clone();
        wait_until("the scheduler ingests the branch", || {
            let scheduler = scheduler.clone();
            let (repo, branch, head) = (repo.to_string(), branch.to_string(), head.to_string());
            async move {
                scheduler
                    .read(|engine| {
                        engine
                            .branch(&repo, &branch)
                            .is_some_and(|b| b.head.as_deref() == Some(head.as_str()))
                    })
                    .await
            }
        })
        .await;
    }

    /// The CSRF token every page carries.
    pub async fn csrf(&self) -> String {
        let page = reqwest::get(self.url("/repos"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        page.split("name=\"csrf-token\" content=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("csrf meta tag")
            .to_string()
    }

    /// POSTs a JSON action to `/api/actions/<name>`; returns the status and body.
    pub async fn act(&self, name: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let response = reqwest::Client::new()
            .post(self.url(&format!("/api/actions/{name}")))
            .header("X-CSRF-Token", self.csrf().await)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let response = reqwest::get(self.url(path)).await.unwrap();
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    /// Registers a fake machine that can run Linux Docker work.
    pub async fn register_machine(&self, machine_id: &str) {
        self.scheduler()
            .register_machine(MachineInfo {
                machine_id: machine_id.into(),
                cores: 4,
                ram_gb: 8,
                os: OsConfig::LinuxDocker,
                shares_cores: false,
            })
            .await
            .expect("register machine");
    }

    /// The next run for `machine_id`: (run id, test hash, definition name).
    pub async fn take_work(&self, machine_id: &str) -> Option<(String, String, String)> {
        match self
            .scheduler()
            .next_work(machine_id)
            .await
            .expect("next work")
        {
            Some(Work::Run(assignment)) => Some((
                assignment.run_id.clone(),
                assignment.test_hash.clone(),
                assignment.definition.name.clone(),
            )),
            _ => None,
        }
    }

    /// Takes runs until one of definition `name` comes (completing builds on the way).
    pub async fn take_run_of(&self, machine_id: &str, name: &str) -> (String, String) {
        for _ in 0..20 {
            let (run_id, hash, got) = self.take_work(machine_id).await.expect("work available");
            if got == name {
                return (run_id, hash);
            }
            self.complete(&run_id, true).await;
        }
        panic!("no run of {name} was offered");
    }

    /// Appends a log chunk through the real log intake (as the worker socket does).
    pub async fn append_log(&self, run_id: &str, offset: u64, text: &str) -> u64 {
        let limits =
            test_looper_server::logs::intake::LiveLogLimits::from_config(&self.context.config);
        test_looper_server::logs::intake::append(&self.context.redis, &limits, run_id, offset, text)
            .await
            .expect("append log")
    }

    /// Stores a file of a run (like a kept output file) in the artifact store.
    pub async fn store_run_file(&self, test_hash: &str, run_id: &str, name: &str, bytes: &[u8]) {
        let key = test_looper_artifacts::ArtifactKey::run(test_hash, run_id, name).unwrap();
        self.services
            .artifacts
            .put_bytes(&key, bytes.to_vec())
            .await
            .expect("store run file");
    }

    /// Stores and reports every artifact the run's definition declares (as a worker does
    /// before it reports success), skipping those already reported.
    pub async fn upload_declared_artifacts(&self, run_id: &str) {
        let (hash, name, declared, reported) = self
            .scheduler()
            .read(|engine| {
                let run = engine.run(run_id).expect("known run");
                let definition = &engine
                    .test_record(&run.test_hash)
                    .expect("known test")
                    .definition;
                (
                    run.test_hash.clone(),
                    definition.name.clone(),
                    definition
                        .artifact_names()
                        .into_iter()
                        .map(String::from)
                        .collect::<Vec<_>>(),
                    run.artifacts.clone(),
                )
            })
            .await;
        for artifact in declared.iter().filter(|a| !reported.contains(a)) {
            let file = test_looper_worker::executor::inputs::build_artifact_file(&name, artifact);
            let key = test_looper_artifacts::ArtifactKey::run(&hash, run_id, &file).unwrap();
            self.services
                .artifacts
                .put_bytes(&key, format!("artifact {artifact}").into_bytes())
                .await
                .expect("store artifact");
            self.scheduler()
                .artifact_uploaded(&ArtifactUploaded {
                    run_id: run_id.into(),
                    artifact: artifact.clone(),
                })
                .await
                .expect("artifact reported");
        }
    }

    /// Completes a run as a worker would: declared artifacts first, then the result.
    pub async fn complete(&self, run_id: &str, passed: bool) {
        self.upload_declared_artifacts(run_id).await;
        let result = if passed {
            RunResult::Passed
        } else {
            RunResult::Failed {
                reason: FailureReason::TestFailure,
                message: "exit code 1".into(),
            }
        };
        self.complete_with(run_id, result, Vec::new()).await;
    }

    pub async fn complete_with(&self, run_id: &str, result: RunResult, cases: Vec<TestCaseResult>) {
        let artifacts = self
            .scheduler()
            .read(|engine| engine.run(run_id).map(|run| run.artifacts.clone()))
            .await
            .unwrap_or_default();
        self.scheduler()
            .record_completion(&Completion {
                run_id: run_id.into(),
                outcome: RunOutcome {
                    result,
                    test_cases: cases,
                    artifacts,
                },
            })
            .await
            .expect("completion");
    }
}

impl Drop for LiveServer {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

/// Polls `check` every 50 ms until it is true; panics after 20 s.
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
