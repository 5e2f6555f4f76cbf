//! A whole test-looper for end-to-end tests: real Redis, a real git repo under the server's
//! local source control, the server in-process with every service started from its config
//! (scheduler, git feed, artifact store, worker socket) and the local machine pool running
//! real `test-looper-worker` processes against the real Docker engine.

use crate::paths::{test_projects, workspace_root};
use crate::{DockerEngine, GitRepo, RedisServer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use test_looper_server::config::Config;
use test_looper_server::scheduler::Scheduler;
use test_looper_server::services::{self, Services};
use test_looper_server::AppContext;

/// The `test-looper-worker` executable of this build, built on first use (the test binaries'
/// build does not produce other packages' binaries).
pub fn worker_binary() -> PathBuf {
    workspace_binary("test_looper_worker", "test-looper-worker")
}

/// The `test-looper-server` executable of this build, built on first use.
pub fn server_binary() -> PathBuf {
    workspace_binary("test_looper_server", "test-looper-server")
}

/// The `tl` executable of this build, built on first use.
pub fn tl_binary() -> PathBuf {
    workspace_binary("test_looper_cli", "tl")
}

/// The executable `bin` of workspace package `package`, built once per test process with the
/// profile and target directory of the running test.
fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(path) = built.get(bin) {
        return path.clone();
    }
    let exe = std::env::current_exe().expect("test executable");
    // <target>/<profile>/deps/<test> or <target>/<profile>/<bin> → <target>/<profile>
    let mut profile_dir = exe.parent().expect("executable directory").to_path_buf();
    if profile_dir.file_name().is_some_and(|n| n == "deps") {
        profile_dir.pop();
    }
    let target_dir = profile_dir
        .parent()
        .expect("target directory")
        .to_path_buf();
    let mut command = std::process::Command::new(env!("CARGO"));
    command
        .current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", &target_dir)
        .args(["build", "-q", "-p", package, "--bin", bin]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        command.arg("--release");
    }
    let status = command.status().expect("run cargo build");
    assert!(status.success(), "building {bin} failed");
    let binary = profile_dir.join(bin);
    assert!(binary.is_file(), "{} missing", binary.display());
    built.insert(bin.to_string(), binary.clone());
    binary
}

/// The worker_suite fixture's files (scripts and Dockerfile), without its definitions file.
pub fn suite_files() -> Vec<(String, String)> {
    let root = test_projects().join("worker_suite");
    let mut files = Vec::new();
    for relative in [
        "build.sh",
        "docker/Dockerfile",
        "tests/pass.sh",
        "tests/fail.sh",
        "tests/flaky.sh",
        "tests/summary.sh",
        "tests/junit.sh",
        "tests/uses_build.sh",
    ] {
        let text = std::fs::read_to_string(root.join(relative)).expect("fixture file");
        files.push((relative.to_string(), text));
    }
    files
}

/// Pool settings of a test install.
pub struct PoolOptions {
    pub max_workers: u32,
    pub max_cores: u32,
    pub max_ram_gb: u32,
    pub idle_timeout_seconds: u64,
    /// `machine_management.heartbeat_timeout_seconds`.
    pub heartbeat_timeout_seconds: u64,
    /// Start the local pool (off: only workers the test starts itself connect).
    pub start_pool: bool,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_workers: 2,
            max_cores: 2,
            max_ram_gb: 2,
            idle_timeout_seconds: 60,
            heartbeat_timeout_seconds: 60,
            start_pool: true,
        }
    }
}

/// A running install.
pub struct Install {
    pub redis: RedisServer,
    pub dir: tempfile::TempDir,
    pub scope: String,
    pub context: Arc<AppContext>,
    pub services: Services,
    pub base_url: String,
    handle: actix_web::dev::ServerHandle,
}

fn unique_scope(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}_{}_{nanos:x}", std::process::id())
}

impl Install {
    /// Creates the directories (call `repo` before `start` to have repos at the first scan).
    pub fn prepare() -> (RedisServer, tempfile::TempDir) {
        (RedisServer::start(), tempfile::tempdir().unwrap())
    }

    /// Starts the server with every service and the local pool. Within an actix system.
    pub async fn start(
        redis: RedisServer,
        dir: tempfile::TempDir,
        scope_prefix: &str,
        pool: PoolOptions,
    ) -> Install {
        let scope = unique_scope(scope_prefix);
        let text = format!(
            r#"
server:
  data_dir: {dir}/data
redis:
  url: {redis}
source_control:
  local:
    path_to_repos: {dir}/repos
    poll_interval_ms: 100
artifacts:
  local_disk:
    path: {dir}/artifacts
machine_management:
  heartbeat_timeout_seconds: {heartbeat_timeout}
  local_docker:
    local_storage_path: {dir}/workers
    docker_scope: {scope}
    idle_timeout_seconds: {idle}
    worker_binary: {binary}
    limits: {{max_workers: {workers}, max_cores: {cores}, max_ram_gb: {ram}}}
"#,
            dir = dir.path().display(),
            redis = redis.url(),
            idle = pool.idle_timeout_seconds,
            heartbeat_timeout = pool.heartbeat_timeout_seconds,
            binary = worker_binary().display(),
            workers = pool.max_workers,
            cores = pool.max_cores,
            ram = pool.max_ram_gb,
        );
        let mut config = Config::from_text(&text, |_| None).expect("valid config");
        config.server.http_port = 0;
        let context = AppContext::new(config).expect("context");
        let mut services = services::start(&context).await.expect("services start");
        let (server, addrs) =
            test_looper_server::web::start(context.clone(), ("127.0.0.1".into(), 0)).expect("bind");
        let handle = server.handle();
        actix_web::rt::spawn(server);
        let base_url = services::own_url(&addrs);
        if pool.start_pool {
            services
                .start_machine_pool(&context, &base_url)
                .await
                .expect("machine pool");
        }
        Install {
            redis,
            dir,
            scope,
            context,
            services,
            base_url,
            handle,
        }
    }

    /// Starts an install whose repo `repo` holds `yml` as its definitions file on `master`,
    /// waits for the first scan and puts the branch under test. Returns the commit too.
    pub async fn start_enabled(
        repo: &str,
        yml: &str,
        scope_prefix: &str,
        pool: PoolOptions,
    ) -> (Install, String) {
        let (redis, dir) = Install::prepare();
        let (_repo, commit) = make_repo(
            dir.path(),
            repo,
            &[("testlooper.yml".to_string(), yml.to_string())],
        );
        let install = Install::start(redis, dir, scope_prefix, pool).await;
        install.wait_for_branch(repo, "master").await;
        install
            .scheduler()
            .set_branch_under_test(repo, "master", true)
            .await
            .expect("enable the branch");
        (install, commit)
    }

    pub fn scheduler(&self) -> &Arc<Scheduler> {
        &self.services.scheduler
    }

    pub fn artifacts_dir(&self) -> PathBuf {
        self.dir.path().join("artifacts")
    }

    /// Waits until the scheduler knows `branch` of `repo` (the first scan reached it).
    pub async fn wait_for_branch(&self, repo: &str, branch: &str) {
        wait_until(
            Duration::from_secs(30),
            "the branch to be scanned",
            || async {
                self.scheduler()
                    .read(|engine| engine.branch(repo, branch).is_some())
                    .await
            },
        )
        .await;
    }

    /// Containers (running or not) of this install's scope.
    pub async fn scope_containers(&self, engine: &DockerEngine) -> Vec<String> {
        engine
            .containers_labelled("test-looper.scope", &self.scope)
            .await
    }

    /// Stops the workers and waits until they are gone.
    pub async fn shutdown(self) {
        if let Some(pool) = self.services.pool() {
            pool.stop_all();
            let deadline = Instant::now() + Duration::from_secs(20);
            while !pool.workers().is_empty() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        drop(self.handle.stop(false));
    }
}

/// Polls `check` every 100 ms until it is true; panics after `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates a bare repo `name` under the install's repos directory with one commit on `master`.
pub fn make_repo(dir: &Path, name: &str, files: &[(String, String)]) -> (GitRepo, String) {
    let repo = GitRepo::init_bare(&dir.join("repos").join(name));
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(path, text)| (path.as_str(), text.as_str()))
        .collect();
    let oid = repo.commit("master", "suite", &borrowed);
    (repo, oid.to_string())
}

/// A definitions file with one test `<name>/linux` that runs `command` in the base image.
pub fn one_test_yml(name: &str, command: &str) -> String {
    format!(
        "looper_version: 4\nenvironments:\n  linux:\n    platform: linux\n    image:\n      \
         dockerfile_contents: |\n        FROM test-looper/base:1\ntests:\n  {name}/linux:\n    \
         environment: linux\n    command: {command}\n"
    )
}
