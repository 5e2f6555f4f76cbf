//! Runs one shell command in a fresh container of the environment image: the run's directories
//! mounted, the run's variables as the environment, CPU and memory limits plus the sandbox's
//! (pid limit, `no-new-privileges`, dropped capabilities), output streamed to the log as it is
//! produced (decoded incrementally, so a character split across chunks survives), a deadline,
//! and the container always removed. The script itself was written before the run's first
//! container started (`command/` is mounted read-only), never here.

use super::dirs::RunDirs;
use super::sandbox::Sandbox;
use super::utf8_stream::Utf8Stream;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, KillContainerOptionsBuilder,
    RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::time::Instant;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandEnd {
    Exited(i64),
    TimedOut,
    Cancelled,
}

/// Everything needed to start one command.
pub struct CommandSpec<'a> {
    pub image: &'a str,
    /// Name of the script (already written) under the run's `command` directory.
    pub script_name: &'a str,
    pub env: &'a BTreeMap<String, String>,
    pub labels: &'a HashMap<String, String>,
    /// `host:container` binds on top of the run's directories (the scoped Docker socket).
    pub extra_binds: &'a [String],
    pub name: String,
    pub cores: u32,
    pub ram_gb: u32,
    pub deadline: Instant,
    pub sandbox: &'a Sandbox,
}

/// Runs `spec` and streams its output to `log`. The container is removed on every path.
pub async fn run_command(
    docker: &Docker,
    dirs: &RunDirs,
    spec: CommandSpec<'_>,
    log: &(dyn Fn(&str) + Send + Sync),
    cancelled: &tokio_util::sync::CancellationToken,
) -> Result<CommandEnd, bollard::errors::Error> {
    let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut host_config = HostConfig {
        binds: Some(
            dirs.binds()
                .into_iter()
                .chain(spec.extra_binds.iter().cloned())
                .collect(),
        ),
        nano_cpus: (spec.cores > 0).then(|| i64::from(spec.cores) * 1_000_000_000),
        memory: (spec.ram_gb > 0).then(|| i64::from(spec.ram_gb) * 1024 * 1024 * 1024),
        shm_size: Some(256 * 1024 * 1024),
        init: Some(true),
        ..Default::default()
    };
    spec.sandbox.harden(&mut host_config);
    let body = ContainerCreateBody {
        image: Some(spec.image.to_string()),
        cmd: Some(vec![
            "bash".into(),
            format!("/test_looper/command/{}", spec.script_name),
        ]),
        env: Some(env),
        working_dir: Some("/test_looper/test_inputs".into()),
        hostname: Some("testlooperworker".into()),
        labels: Some(spec.labels.clone()),
        host_config: Some(host_config),
        tty: Some(false),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default()
        .name(&spec.name)
        .build();
    let created = docker.create_container(Some(options), body).await?;
    let id = created.id;
    let result = drive(docker, &id, spec.deadline, log, cancelled).await;
    let remove = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    if let Err(error) = docker.remove_container(&id, Some(remove)).await {
        tracing::warn!(%id, %error, "could not remove container");
    }
    result
}

async fn drive(
    docker: &Docker,
    id: &str,
    deadline: Instant,
    log: &(dyn Fn(&str) + Send + Sync),
    cancelled: &tokio_util::sync::CancellationToken,
) -> Result<CommandEnd, bollard::errors::Error> {
    let attach = AttachContainerOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .stream(true)
        .logs(true)
        .build();
    let mut output = docker.attach_container(id, Some(attach)).await?.output;
    docker
        .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
        .await?;
    let pump = async {
        let mut text = Utf8Stream::default();
        while let Some(chunk) = output.next().await {
            match chunk {
                Ok(chunk) => log(&text.push(&chunk.into_bytes())),
                Err(error) => {
                    tracing::debug!(%error, "attach stream ended");
                    break;
                }
            }
        }
        log(&text.finish());
    };
    let wait = async {
        // The output ends when the process does; then ask for the exit code.
        pump.await;
        let options = WaitContainerOptionsBuilder::default()
            .condition("not-running")
            .build();
        let mut waiter = docker.wait_container(id, Some(options));
        match waiter.next().await {
            Some(Ok(response)) => Ok(CommandEnd::Exited(response.status_code)),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                Ok(CommandEnd::Exited(code))
            }
            Some(Err(error)) => Err(error),
            None => Ok(CommandEnd::Exited(-1)),
        }
    };
    let end = tokio::select! {
        result = wait => result?,
        _ = tokio::time::sleep_until(deadline) => CommandEnd::TimedOut,
        _ = cancelled.cancelled() => CommandEnd::Cancelled,
    };
    if end != CommandEnd::Exited(0) && !matches!(end, CommandEnd::Exited(_)) {
        let kill = KillContainerOptionsBuilder::default()
            .signal("SIGKILL")
            .build();
        let _ = docker.kill_container(id, Some(kill)).await;
    }
    Ok(end)
}

/// Time left until `deadline`, for messages.
pub fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}
