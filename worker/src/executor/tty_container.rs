//! One interactive container: created with a TTY and an open stdin, attached before it starts
//! (so no output is missed), its published ports read back; then its output is pumped to a
//! sink in coalesced chunks while keystrokes go to its stdin and resizes to its TTY, until the
//! process ends or a shutdown is requested. The container gets the sandbox's limits. The
//! caller removes it with [`TtyContainer::remove`].

use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder,
    ResizeContainerTTYOptionsBuilder, WaitContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::{FutureExt, Stream, StreamExt};
use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use test_looper_core::protocol::TerminalInput;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

/// Largest chunk handed to the output sink at once (small reads are merged up to this).
pub const MAX_OUTPUT_CHUNK: usize = 64 * 1024;
/// TTY size until the first resize arrives.
pub const DEFAULT_SIZE: (u16, u16) = (80, 24);

/// Everything needed to create the container.
pub struct TtySpec<'a> {
    pub image: &'a str,
    pub cmd: Vec<String>,
    pub env: &'a BTreeMap<String, String>,
    pub labels: &'a HashMap<String, String>,
    pub binds: Vec<String>,
    pub working_dir: &'a str,
    pub name: String,
    pub cores: u32,
    pub ram_gb: u32,
    /// Ports to publish on 127.0.0.1 (random host ports), by name.
    pub ports: Vec<(String, u64)>,
    pub sandbox: &'a super::sandbox::Sandbox,
}

/// Where a declared port landed on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedPort {
    pub name: String,
    pub container_port: u64,
    /// `ip:port` on the host; `None` when the engine reported no binding.
    pub host: Option<String>,
}

/// How serving the container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtyEnd {
    /// The container's process ended (its exit code when the engine reported one).
    Exited(Option<i64>),
    /// A shutdown was requested.
    ShutDown,
}

type OutputStream = Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

/// A started interactive container.
pub struct TtyContainer {
    docker: Docker,
    id: String,
    output: OutputStream,
    input: Pin<Box<dyn AsyncWrite + Send>>,
}

impl TtyContainer {
    /// Creates, attaches and starts the container, and reads back its published ports. On an
    /// error the container (if it was created) is removed.
    pub async fn start(
        docker: &Docker,
        spec: TtySpec<'_>,
    ) -> Result<(TtyContainer, Vec<PublishedPort>), bollard::errors::Error> {
        let keys: Vec<String> = spec
            .ports
            .iter()
            .map(|(_, port)| format!("{port}/tcp"))
            .collect();
        let bindings: HashMap<String, Option<Vec<PortBinding>>> = keys
            .iter()
            .map(|key| {
                let binding = PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(String::new()),
                };
                (key.clone(), Some(vec![binding]))
            })
            .collect();
        let mut host_config = HostConfig {
            binds: Some(spec.binds.clone()),
            nano_cpus: (spec.cores > 0).then(|| i64::from(spec.cores) * 1_000_000_000),
            memory: (spec.ram_gb > 0).then(|| i64::from(spec.ram_gb) * 1024 * 1024 * 1024),
            shm_size: Some(256 * 1024 * 1024),
            init: Some(true),
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            ..Default::default()
        };
        spec.sandbox.harden(&mut host_config);
        let body = ContainerCreateBody {
            image: Some(spec.image.to_string()),
            cmd: Some(spec.cmd.clone()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            working_dir: Some(spec.working_dir.to_string()),
            hostname: Some("testlooperworker".into()),
            labels: Some(spec.labels.clone()),
            exposed_ports: (!keys.is_empty()).then(|| keys.clone()),
            host_config: Some(host_config),
            tty: Some(true),
            open_stdin: Some(true),
            stdin_once: Some(false),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        let id = docker.create_container(Some(options), body).await?.id;
        match attach_and_start(docker, &id).await {
            Ok((output, input)) => {
                let container = TtyContainer {
                    docker: docker.clone(),
                    id,
                    output,
                    input,
                };
                let ports = published_ports(docker, &container.id, &spec.ports).await;
                Ok((container, ports))
            }
            Err(error) => {
                remove(docker, &id).await;
                Err(error)
            }
        }
    }

    /// The container's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Pumps output to `sink` and applies `controls` until the process ends or `shutdown`
    /// fires. The TTY starts at [`DEFAULT_SIZE`].
    pub async fn serve(
        &mut self,
        sink: &(dyn Fn(Vec<u8>) + Send + Sync),
        controls: &mut UnboundedReceiver<TerminalInput>,
        shutdown: &CancellationToken,
    ) -> TtyEnd {
        resize(&self.docker, &self.id, DEFAULT_SIZE.0, DEFAULT_SIZE.1).await;
        let mut controls_open = true;
        loop {
            tokio::select! {
                chunk = self.output.next() => match chunk {
                    Some(Ok(first)) => {
                        let (data, ended) = self.coalesce(first.into_bytes().to_vec());
                        sink(data);
                        if ended {
                            break;
                        }
                    }
                    Some(Err(error)) => {
                        tracing::debug!(%error, id = %self.id, "attach stream ended");
                        break;
                    }
                    None => break,
                },
                control = controls.recv(), if controls_open => match control {
                    Some(TerminalInput::Keys { data }) => {
                        let written = async {
                            self.input.write_all(data.as_bytes()).await?;
                            self.input.flush().await
                        };
                        if let Err(error) = written.await {
                            tracing::debug!(%error, id = %self.id, "could not write to the container");
                        }
                    }
                    Some(TerminalInput::Resize { cols, rows }) => {
                        resize(&self.docker, &self.id, cols, rows).await
                    }
                    None => controls_open = false,
                },
                _ = shutdown.cancelled() => return TtyEnd::ShutDown,
            }
        }
        TtyEnd::Exited(exit_code(&self.docker, &self.id).await)
    }

    /// `data` plus whatever output is already waiting, up to [`MAX_OUTPUT_CHUNK`]; `true`
    /// when the stream ended meanwhile.
    fn coalesce(&mut self, mut data: Vec<u8>) -> (Vec<u8>, bool) {
        while data.len() < MAX_OUTPUT_CHUNK {
            match self.output.next().now_or_never() {
                Some(Some(Ok(more))) => data.extend_from_slice(&more.into_bytes()),
                Some(Some(Err(error))) => {
                    tracing::debug!(%error, id = %self.id, "attach stream ended");
                    return (data, true);
                }
                Some(None) => return (data, true),
                None => break,
            }
        }
        (data, false)
    }

    /// Force-removes the container (and its anonymous volumes).
    pub async fn remove(self) {
        remove(&self.docker, &self.id).await;
    }
}

async fn attach_and_start(
    docker: &Docker,
    id: &str,
) -> Result<(OutputStream, Pin<Box<dyn AsyncWrite + Send>>), bollard::errors::Error> {
    let attach = AttachContainerOptionsBuilder::default()
        .stdin(true)
        .stdout(true)
        .stderr(true)
        .stream(true)
        .logs(true)
        .build();
    let attached = docker.attach_container(id, Some(attach)).await?;
    docker
        .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
        .await?;
    Ok((attached.output, attached.input))
}

async fn remove(docker: &Docker, id: &str) {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    if let Err(error) = docker.remove_container(id, Some(options)).await {
        tracing::warn!(%id, %error, "could not remove the deployment's container");
    }
}

/// Where each declared port landed (the engine's view of the container).
async fn published_ports(
    docker: &Docker,
    id: &str,
    declared: &[(String, u64)],
) -> Vec<PublishedPort> {
    let bound = match docker.inspect_container(id, None).await {
        Ok(details) => details
            .network_settings
            .and_then(|settings| settings.ports)
            .unwrap_or_default(),
        Err(error) => {
            tracing::warn!(%error, %id, "could not read the published ports");
            HashMap::new()
        }
    };
    declared
        .iter()
        .map(|(name, port)| {
            let host = bound
                .get(&format!("{port}/tcp"))
                .and_then(|bindings| bindings.as_ref())
                .and_then(|bindings| bindings.first())
                .and_then(|binding| {
                    let port = binding.host_port.as_deref().filter(|p| !p.is_empty())?;
                    let ip = binding.host_ip.as_deref().unwrap_or("127.0.0.1");
                    Some(format!("{ip}:{port}"))
                });
            PublishedPort {
                name: name.clone(),
                container_port: *port,
                host,
            }
        })
        .collect()
}

async fn resize(docker: &Docker, id: &str, cols: u16, rows: u16) {
    if cols == 0 || rows == 0 {
        return;
    }
    let options = ResizeContainerTTYOptionsBuilder::default()
        .w(i32::from(cols))
        .h(i32::from(rows))
        .build();
    if let Err(error) = docker.resize_container_tty(id, options).await {
        tracing::debug!(%error, %id, "could not resize the container's TTY");
    }
}

async fn exit_code(docker: &Docker, id: &str) -> Option<i64> {
    let options = WaitContainerOptionsBuilder::default()
        .condition("not-running")
        .build();
    match docker.wait_container(id, Some(options)).next().await {
        Some(Ok(response)) => Some(response.status_code),
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Some(code),
        _ => None,
    }
}
