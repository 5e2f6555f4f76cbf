//! The local Docker pool: `test-looper-worker` child processes within the pool's limits.
//!
//! - Event-driven: the pool re-plans ([`super::plan`]) on every change-feed event that can
//!   change demand or occupancy (work available, tests, runs, machines) and whenever one of its
//!   workers exits; there is no polling loop.
//! - Each worker gets one machine shape (`--cores`, `--ram-gb`), its own storage directory
//!   `<local_storage_path>/<machine id>`, the install's `docker_scope` (container label
//!   `test-looper.scope=<scope>` and name prefix), the artifact store, its heartbeat
//!   interval, and `--idle-exit-seconds <idle_timeout_seconds>`: an idle worker leaves by
//!   itself.
//! - Its environment is cleared: it gets only what it needs ([`worker_environment`]). The
//!   worker token and the artifact store settings (S3 credentials, M5) travel in the
//!   environment, never on the command line.
//! - A worker the scheduler has not heard from for the heartbeat timeout (hung, stopped, or
//!   never registered) is killed, and so replaced like any worker that ends.
//! - The pool holds each worker's stdin; closing it (a stop, or the server going away for
//!   any reason) makes the worker remove its containers and exit.
//! - Whenever a worker process ends (idle exit, stop, crash, `kill -9`), the pool removes the
//!   containers labelled with its machine id and its storage directory, and tells the
//!   scheduler the machine is gone: a run it held is *lost* and offered again.
//! - At start, containers of the scope left by a previous server life are removed and the
//!   scheduler forgets this pool's machines from that life.

use super::plan::{plan, Action, WorkerView};
use super::shapes::Capacity;
use crate::scheduler::Scheduler;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use test_looper_artifacts::StoreConfig;
use test_looper_containers::{remove_labelled, SCOPE_LABEL, WORKER_LABEL};
use test_looper_core::protocol::OsConfig;
use test_looper_core::scheduling::HardwareConfig;
use thiserror::Error;
use tokio::process::{ChildStdin, Command};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

/// Why the pool could not start.
#[derive(Debug, Error)]
pub enum PoolError {
    #[error(
        "the worker executable {0} does not exist (build it: cargo build -p test_looper_worker)"
    )]
    NoWorkerBinary(PathBuf),
    #[error("docker engine: {0}")]
    Docker(#[from] bollard::errors::Error),
    #[error("cannot encode the artifact store settings: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How the pool starts its workers.
#[derive(Clone, Debug)]
pub struct LocalPoolSettings {
    /// The `test-looper-worker` executable.
    pub binary: PathBuf,
    /// The server's own base URL, e.g. `http://127.0.0.1:9081`.
    pub server_url: String,
    /// `auth.worker_token`, handed to workers through their environment.
    pub token: Option<String>,
    /// Container label value and name prefix.
    pub scope: String,
    /// Parent of the workers' storage directories.
    pub storage: PathBuf,
    pub idle_timeout: Duration,
    pub artifacts: StoreConfig,
    pub capacity: Capacity,
    /// How often workers heartbeat.
    pub heartbeat: Duration,
    /// A worker not heard from for this long is killed (the scheduler's heartbeat timeout).
    pub heartbeat_timeout: Duration,
}

/// A worker process of the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolWorker {
    pub machine_id: String,
    pub pid: Option<u32>,
    pub shape: HardwareConfig,
    pub stopping: bool,
}

struct Slot {
    shape: HardwareConfig,
    pid: Option<u32>,
    stdin: Option<ChildStdin>,
    stopping: bool,
    /// The last time the worker was known alive: started, or its machine's last heartbeat.
    last_alive: Instant,
    /// Kills the process (taken when used).
    kill: Option<oneshot::Sender<()>>,
}

struct Inner {
    scheduler: Arc<Scheduler>,
    settings: LocalPoolSettings,
    docker: bollard::Docker,
    artifacts_json: String,
    workers: Mutex<BTreeMap<String, Slot>>,
    wake: Notify,
    sequence: AtomicU64,
    instance: String,
}

/// The running pool; dropping it stops every worker.
pub struct LocalPool {
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl LocalPool {
    /// Cleans up what a previous server life left and starts serving demand.
    pub async fn start(
        scheduler: Arc<Scheduler>,
        settings: LocalPoolSettings,
    ) -> Result<LocalPool, PoolError> {
        if !settings.binary.is_file() {
            return Err(PoolError::NoWorkerBinary(settings.binary.clone()));
        }
        std::fs::create_dir_all(&settings.storage).map_err(|source| PoolError::Io {
            path: settings.storage.clone(),
            source,
        })?;
        let docker = bollard::Docker::connect_with_local_defaults()?;
        let leftovers = remove_labelled(&docker, SCOPE_LABEL, &settings.scope).await?;
        if leftovers > 0 {
            tracing::info!(leftovers, scope = %settings.scope, "removed containers of a previous server life");
        }
        let prefix = machine_prefix(&settings.scope);
        let stale: Vec<String> = scheduler
            .read(|engine| {
                engine
                    .machines()
                    .into_iter()
                    .map(|machine| machine.info.machine_id)
                    .filter(|id| id.starts_with(&prefix))
                    .collect()
            })
            .await;
        for machine_id in stale {
            if let Err(error) = scheduler.machine_gone(&machine_id).await {
                tracing::warn!(%error, %machine_id, "could not retire a machine of a previous life");
            }
        }
        let artifacts_json = serde_json::to_string(&settings.artifacts)?;
        let instance = format!("{:04x}", rand::random::<u16>());
        let inner = Arc::new(Inner {
            scheduler,
            settings,
            docker,
            artifacts_json,
            workers: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
            sequence: AtomicU64::new(1),
            instance,
        });
        let task = tokio::spawn(serve(inner.clone()));
        Ok(LocalPool { inner, task })
    }

    /// The workers alive now.
    pub fn workers(&self) -> Vec<PoolWorker> {
        self.inner
            .lock()
            .iter()
            .map(|(id, slot)| PoolWorker {
                machine_id: id.clone(),
                pid: slot.pid,
                shape: slot.shape,
                stopping: slot.stopping,
            })
            .collect()
    }

    /// Asks every worker to leave (they remove their containers first).
    pub fn stop_all(&self) {
        for slot in self.inner.lock().values_mut() {
            slot.stdin.take();
            slot.stopping = true;
        }
    }
}

impl Drop for LocalPool {
    fn drop(&mut self) {
        self.task.abort();
        self.stop_all();
    }
}

fn machine_prefix(scope: &str) -> String {
    format!("{scope}-w")
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Slot>> {
        self.workers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One planning round: read demand and occupancy, then boot and stop.
    async fn reconcile(self: &Arc<Self>) {
        let (demand, busy) = self
            .scheduler
            .read(|engine| {
                let demand: Vec<(HardwareConfig, u64)> = engine
                    .demand()
                    .into_iter()
                    .filter(|(_, os, _)| *os == OsConfig::LinuxDocker)
                    .map(|(shape, _, runs)| (shape, runs))
                    .collect();
                let busy: HashSet<String> = engine
                    .machines()
                    .into_iter()
                    .filter(|machine| !machine.is_idle())
                    .map(|machine| machine.info.machine_id)
                    .collect();
                (demand, busy)
            })
            .await;
        let views: Vec<WorkerView> = self
            .lock()
            .iter()
            .map(|(id, slot)| WorkerView {
                machine_id: id.clone(),
                shape: slot.shape,
                busy: busy.contains(id),
                stopping: slot.stopping,
            })
            .collect();
        for action in plan(&demand, &views, self.settings.capacity) {
            match action {
                Action::Boot(shape) => self.boot(shape),
                Action::Stop(machine_id) => {
                    tracing::info!(%machine_id, "stopping an idle worker to make room");
                    if let Some(slot) = self.lock().get_mut(&machine_id) {
                        slot.stdin.take();
                        slot.stopping = true;
                    }
                }
            }
        }
    }

    /// Refreshes each worker's liveness from its machine's last heartbeat and kills those
    /// silent for the heartbeat timeout. Returns when the next one would be due.
    async fn kill_silent(self: &Arc<Self>) -> Option<Instant> {
        let (now_ms, heartbeats) = self
            .scheduler
            .read(|engine| {
                let heartbeats: BTreeMap<String, u64> = engine
                    .machines()
                    .into_iter()
                    .map(|machine| (machine.info.machine_id, machine.last_heartbeat))
                    .collect();
                (self.scheduler.now(), heartbeats)
            })
            .await;
        let timeout = self.settings.heartbeat_timeout;
        let now = Instant::now();
        let mut next_due: Option<Instant> = None;
        for (machine_id, slot) in self.lock().iter_mut() {
            if let Some(last) = heartbeats.get(machine_id) {
                let age = Duration::from_millis(now_ms.saturating_sub(*last));
                if let Some(heard) = now.checked_sub(age) {
                    slot.last_alive = slot.last_alive.max(heard);
                }
            }
            let due = slot.last_alive + timeout;
            if due > now {
                next_due = Some(next_due.map_or(due, |next| next.min(due)));
            } else if let Some(kill) = slot.kill.take() {
                tracing::warn!(%machine_id, pid = ?slot.pid, silent_for = ?now - slot.last_alive,
                    "worker silent past the heartbeat timeout: killing it");
                let _ = kill.send(());
            }
        }
        next_due
    }

    fn boot(self: &Arc<Self>, shape: HardwareConfig) {
        let number = self.sequence.fetch_add(1, Ordering::Relaxed);
        let machine_id = format!(
            "{}{number}-{}",
            machine_prefix(&self.settings.scope),
            self.instance
        );
        let storage = self.settings.storage.join(&machine_id);
        let mut command = Command::new(&self.settings.binary);
        command
            .arg("--server-url")
            .arg(&self.settings.server_url)
            .arg("--machine-id")
            .arg(&machine_id)
            .arg("--storage")
            .arg(&storage)
            .arg("--scope")
            .arg(&self.settings.scope)
            .arg("--heartbeat-seconds")
            .arg(self.settings.heartbeat.as_secs().max(1).to_string())
            .arg("--cores")
            .arg(shape.cores.to_string())
            .arg("--ram-gb")
            .arg(shape.ram_gb.to_string())
            .arg("--idle-exit-seconds")
            .arg(self.settings.idle_timeout.as_secs().max(1).to_string())
            .arg("--exit-when-stdin-closes")
            .stdin(Stdio::piped())
            .kill_on_drop(false)
            .env_clear()
            .envs(worker_environment(
                std::env::vars_os(),
                &self.settings.artifacts,
            ))
            .env("TEST_LOOPER_ARTIFACTS", &self.artifacts_json);
        if let Some(token) = &self.settings.token {
            command.env("TEST_LOOPER_WORKER_TOKEN", token);
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                tracing::error!(%error, binary = %self.settings.binary.display(), "cannot start a worker");
                return;
            }
        };
        tracing::info!(%machine_id, cores = shape.cores, ram_gb = shape.ram_gb, pid = ?child.id(), "worker started");
        let (kill, killed) = oneshot::channel();
        self.lock().insert(
            machine_id.clone(),
            Slot {
                shape,
                pid: child.id(),
                stdin: child.stdin.take(),
                stopping: false,
                last_alive: Instant::now(),
                kill: Some(kill),
            },
        );
        let inner = self.clone();
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                Ok(()) = killed => {
                    if let Err(error) = child.start_kill() {
                        tracing::warn!(%machine_id, %error, "could not kill a worker");
                    }
                    child.wait().await
                }
            };
            inner.worker_exited(&machine_id, status).await;
        });
    }

    /// A worker process ended: clean up after it and let the scheduler know.
    async fn worker_exited(
        self: &Arc<Self>,
        machine_id: &str,
        status: std::io::Result<std::process::ExitStatus>,
    ) {
        match status {
            Ok(status) if status.success() => tracing::info!(%machine_id, "worker exited"),
            Ok(status) => tracing::warn!(%machine_id, %status, "worker ended abnormally"),
            Err(error) => tracing::warn!(%machine_id, %error, "lost track of a worker"),
        }
        match remove_labelled(&self.docker, WORKER_LABEL, machine_id).await {
            Ok(0) => {}
            Ok(removed) => {
                tracing::info!(%machine_id, removed, "removed the containers of a gone worker")
            }
            Err(error) => {
                tracing::warn!(%machine_id, %error, "could not remove a gone worker's containers")
            }
        }
        let storage = self.settings.storage.join(machine_id);
        if let Err(error) = std::fs::remove_dir_all(&storage) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(%error, path = %storage.display(), "could not remove a worker's storage");
            }
        }
        if let Err(error) = self.scheduler.machine_gone(machine_id).await {
            tracing::error!(%error, %machine_id, "could not tell the scheduler a worker is gone");
        }
        self.lock().remove(machine_id);
        self.wake.notify_one();
    }
}

async fn serve(inner: Arc<Inner>) {
    let mut feed = inner.scheduler.subscribe();
    loop {
        let next_check = inner.kill_silent().await;
        inner.reconcile().await;
        // Sleep until something that can change the plan happens, or a worker's heartbeat
        // deadline.
        let check = async move {
            match next_check {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(check);
        loop {
            let wanted = tokio::select! {
                _ = &mut check => true,
                event = feed.recv() => match event {
                    Ok(event) => super::changes_pool_demand(&event),
                    Err(RecvError::Lagged(_)) => true,
                    Err(RecvError::Closed) => return,
                },
                _ = inner.wake.notified() => true,
            };
            if wanted {
                break;
            }
        }
        // Coalesce the rest of a burst into the same planning round.
        loop {
            match feed.try_recv() {
                Ok(_) | Err(TryRecvError::Lagged(_)) => {}
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => return,
            }
        }
    }
}

/// Variables of the server's environment a worker gets (everything else is cleared):
/// the executable search path and home, logging, the Docker engine's address, time zone and
/// locale, the instance-metadata switch, and the standard AWS variables when the artifact
/// store is S3 without static credentials (its credentials then come from there).
pub fn worker_environment(
    server_env: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    artifacts: &StoreConfig,
) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    const KEPT: [&str; 13] = [
        "PATH",
        "HOME",
        "USER",
        "LANG",
        "LC_ALL",
        "TZ",
        "TMPDIR",
        "RUST_LOG",
        "RUST_BACKTRACE",
        "DOCKER_HOST",
        "DOCKER_CERT_PATH",
        "DOCKER_TLS_VERIFY",
        "AWS_EC2_METADATA_DISABLED",
    ];
    let aws_chain = matches!(
        artifacts,
        StoreConfig::S3 {
            credentials: None,
            ..
        }
    );
    server_env
        .into_iter()
        .filter(|(name, _)| {
            name.to_str()
                .is_some_and(|name| KEPT.contains(&name) || (aws_chain && name.starts_with("AWS_")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(env: Vec<(std::ffi::OsString, std::ffi::OsString)>) -> Vec<String> {
        let mut names: Vec<String> = env
            .into_iter()
            .map(|(name, _)| name.into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_worker_gets_only_the_variables_it_needs() {
        let server: Vec<(std::ffi::OsString, std::ffi::OsString)> = [
            ("PATH", "/usr/bin"),
            ("HOME", "/root"),
            ("RUST_LOG", "info"),
            ("DOCKER_HOST", "unix:///run/docker.sock"),
            ("TEST_LOOPER_WEBHOOK_SECRET", "s3cret"),
            ("GITHUB_TOKEN", "ghp_x"),
            ("AWS_SECRET_ACCESS_KEY", "aws"),
        ]
        .into_iter()
        .map(|(name, value)| (name.into(), value.into()))
        .collect();
        let disk = StoreConfig::LocalDisk {
            path: "/srv/artifacts".into(),
        };
        assert_eq!(
            names(worker_environment(server.clone(), &disk)),
            ["DOCKER_HOST", "HOME", "PATH", "RUST_LOG"]
        );
        let s3 = |credentials| StoreConfig::S3 {
            bucket: "b".into(),
            region: "r".into(),
            key_prefix: String::new(),
            endpoint_url: None,
            credentials,
        };
        assert_eq!(
            names(worker_environment(
                server.clone(),
                &s3(Some(("id".into(), "key".into())))
            )),
            ["DOCKER_HOST", "HOME", "PATH", "RUST_LOG"]
        );
        assert_eq!(
            names(worker_environment(server, &s3(None))),
            [
                "AWS_SECRET_ACCESS_KEY",
                "DOCKER_HOST",
                "HOME",
                "PATH",
                "RUST_LOG"
            ]
        );
    }
}
