//! Scoped Docker for jobs that ask for it (`docker_socket: true`, H5): a per-job Unix socket
//! that serves the Docker API with an HTTP server (hyper), checks every request against
//! [`super::docker_policy`] and forwards the allowed ones to the real engine with an HTTP
//! client, one engine connection per request.
//!
//! Every request of a connection is parsed, pipelined ones and chunked bodies included. JSON
//! bodies that are checked are read whole up to [`MAX_JSON_BODY_BYTES`]; other bodies (build
//! contexts, archives) are streamed. Request heads are bounded by [`MAX_HEAD_BYTES`]. A
//! connection switches to a raw copy in both directions only when the request was an attach
//! or exec start that asked for an upgrade AND the engine answered `101 Switching Protocols`;
//! an `Upgrade` header on any other request is dropped. Refusals are answered like the
//! engine's errors: a status (403 refused, 404 not the job's own, 413 too large) and a JSON
//! `{"message": …}`.
//!
//! Everything the job creates (containers, networks, volumes) carries its labels and is
//! removed by [`DockerProxy::finish`]; it can see and touch only objects carrying its run
//! label.

use super::dirs::{RunDirs, MOUNTS};
use super::docker_policy::{route, BodyCheck, Policy, Reference, Refusal};
use super::sandbox::Sandbox;
use super::Executor;
use bollard::Docker;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, HOST, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use test_looper_containers::{
    container_labels, remove_labelled, remove_labelled_networks_and_volumes, RUN_LABEL,
};
use test_looper_core::definitions::ResolvedDefinition;
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Largest request head (request line + headers) accepted.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest JSON body the proxy reads to check (container, network, volume, exec create).
pub const MAX_JSON_BODY_BYTES: usize = 4 * 1024 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = BoxBody<Bytes, BoxError>;

/// The real engine's socket: `DOCKER_HOST` when it is a `unix://` address, else
/// `/var/run/docker.sock`.
pub fn engine_socket_path() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|host| host.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
}

/// Where the socket is mounted in a job's containers (`DOCKER_HOST` points there).
pub const CONTAINER_SOCKET: &str = "/var/run/docker.sock";

/// The scoped Docker proxy of a job, when its definition asks for one: `Ok(None)` when it
/// does not, an error message (an infrastructure failure: the job must not run without the
/// socket it asked for) when the worker forbids it or the proxy cannot start.
pub fn scoped_docker_for(
    executor: &Executor,
    dirs: &RunDirs,
    definition: &ResolvedDefinition,
    id: &str,
) -> Result<Option<DockerProxy>, String> {
    if !definition.docker_socket {
        return Ok(None);
    }
    if let Some(message) = executor.sandbox.refusal(true) {
        return Err(message);
    }
    start_for_run(
        dirs,
        &executor.scope,
        &executor.machine_id,
        id,
        executor.sandbox,
    )
    .map(Some)
    .map_err(|error| {
        format!("the Docker socket this definition asks for could not be set up: {error}")
    })
}

/// Starts the scoped Docker proxy of a job: socket `<run dir>/docker/docker.sock`, everything
/// created labelled with the worker's scope, machine id and the job id (so the worker's
/// start-up reaping also finds it), binds allowed of the job's own directories.
pub fn start_for_run(
    dirs: &RunDirs,
    scope: &str,
    machine_id: &str,
    run_id: &str,
    sandbox: Sandbox,
) -> std::io::Result<DockerProxy> {
    let dir = dirs.root.join("docker");
    std::fs::create_dir_all(&dir)?;
    let labels = container_labels(scope, machine_id, run_id, &HashMap::new());
    let bind_sources = MOUNTS
        .iter()
        .filter(|(sub, _)| *sub != "command")
        .map(|(sub, container)| (dirs.root.join(sub), container.to_string()))
        .collect();
    DockerProxy::start(
        &dir.join("docker.sock"),
        engine_socket_path(),
        ProxyScope {
            run_id: run_id.to_string(),
            labels,
            bind_sources,
            sandbox,
        },
    )
}

/// Whose proxy it is and what it allows.
#[derive(Debug, Clone)]
pub struct ProxyScope {
    pub run_id: String,
    /// Added to everything created through the proxy (`RUN_LABEL=run_id` always is).
    pub labels: HashMap<String, String>,
    /// (host directory, container path) pairs a created container may bind.
    pub bind_sources: Vec<(PathBuf, String)>,
    pub sandbox: Sandbox,
}

impl ProxyScope {
    /// A scope with labels only: no binds allowed, the default sandbox.
    pub fn new(run_id: &str, labels: HashMap<String, String>) -> Self {
        Self {
            run_id: run_id.to_string(),
            labels,
            bind_sources: Vec::new(),
            sandbox: Sandbox::default(),
        }
    }
}

/// A running proxy for one job. Call [`DockerProxy::finish`] when the job ends.
pub struct DockerProxy {
    socket: PathBuf,
    run_id: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// What every connection of a proxy shares.
struct Context {
    engine: PathBuf,
    /// Client of the engine for ownership lookups.
    lookups: Docker,
    policy: Policy,
    stop: CancellationToken,
}

impl DockerProxy {
    /// Listens on `socket` (replacing a stale file) and forwards allowed requests to `engine`.
    pub fn start(socket: &Path, engine: PathBuf, scope: ProxyScope) -> std::io::Result<Self> {
        if socket.symlink_metadata().is_ok() {
            std::fs::remove_file(socket)?;
        }
        let engine_text = engine
            .to_str()
            .ok_or_else(|| std::io::Error::other("engine socket path is not UTF-8"))?;
        let lookups = Docker::connect_with_unix(engine_text, 120, bollard::API_DEFAULT_VERSION)
            .map_err(std::io::Error::other)?;
        let listener = UnixListener::bind(socket)?;
        let stop = CancellationToken::new();
        let context = Arc::new(Context {
            engine,
            lookups,
            policy: Policy {
                run_label: (RUN_LABEL.to_string(), scope.run_id.clone()),
                labels: scope.labels,
                bind_sources: scope.bind_sources,
                sandbox: scope.sandbox,
            },
            stop: stop.clone(),
        });
        let task = tokio::spawn(accept_loop(listener, context));
        Ok(Self {
            socket: socket.to_path_buf(),
            run_id: scope.run_id,
            stop,
            task,
        })
    }

    /// The socket clients connect to.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The bind that mounts the socket at [`CONTAINER_SOCKET`] in a container.
    pub fn container_bind(&self) -> String {
        format!("{}:{CONTAINER_SOCKET}", self.socket.display())
    }

    /// Stops the proxy (open connections and streams are dropped), removes the socket file
    /// and force-removes every container, network and volume labelled with this job; returns
    /// how many containers were removed.
    pub async fn finish(mut self, docker: &Docker) -> Result<usize, bollard::errors::Error> {
        self.stop.cancel();
        let _ = (&mut self.task).await;
        if let Err(error) = std::fs::remove_file(&self.socket) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(%error, path = %self.socket.display(), "could not remove proxy socket");
            }
        }
        let removed = remove_labelled(docker, RUN_LABEL, &self.run_id).await?;
        remove_labelled_networks_and_volumes(docker, RUN_LABEL, &self.run_id).await;
        Ok(removed)
    }
}

impl Drop for DockerProxy {
    /// A proxy dropped without [`DockerProxy::finish`] (the job's future was dropped) still
    /// stops listening; what it created is left to the worker's start-up reaping.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(listener: UnixListener, context: Arc<Context>) {
    // Dropping the set at the end aborts every open connection.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = context.stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    connections.spawn(serve_connection(client, context.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "docker proxy accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Serves one client connection, request by request.
async fn serve_connection(client: UnixStream, context: Arc<Context>) {
    let service = hyper::service::service_fn(move |request| {
        let context = context.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(&context, request).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(client), service)
        .with_upgrades()
        .await;
    if let Err(error) = served {
        tracing::debug!(%error, "docker proxy connection ended");
    }
}

fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// The engine-style error answer.
fn refusal_response(refusal: &Refusal) -> Response<ProxyBody> {
    let body = serde_json::json!({ "message": refusal.message }).to_string();
    let mut response = Response::new(full(body));
    *response.status_mut() = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::FORBIDDEN);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn handle(context: &Context, request: Request<Incoming>) -> Response<ProxyBody> {
    match forward(context, request).await {
        Ok(response) => response,
        Err(refusal) => {
            tracing::debug!(message = %refusal.message, "docker proxy refused a request");
            refusal_response(&refusal)
        }
    }
}

fn bad_gateway(error: impl std::fmt::Display) -> Refusal {
    Refusal {
        status: 502,
        message: format!("test-looper docker proxy: the engine could not be reached: {error}"),
    }
}

/// Headers never copied from the client to the engine (the proxy frames the request itself).
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "upgrade"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "proxy-connection"
            | "proxy-authorization"
            | "host"
    )
}

/// Checks `request`, forwards it to the engine and returns the engine's answer.
async fn forward(
    context: &Context,
    mut request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Refusal> {
    let method = request.method().as_str().to_string();
    let path = request.uri().path().to_string();
    let mut query = request.uri().query().unwrap_or("").to_string();
    let endpoint = route(&method, &path)?;
    if endpoint.filtered_list {
        query = context.policy.filtered_query(&query)?;
    }
    context.policy.check_query(&endpoint, &query)?;
    let target = match &endpoint.target {
        Some(reference) => Some(context.own(reference).await?),
        None => None,
    };
    if let Some(exec) = &endpoint.exec {
        context.own_exec(exec).await?;
    }
    let upgrade_asked = request.headers().get(UPGRADE).cloned();
    let client_upgrade = match (&upgrade_asked, endpoint.hijacks) {
        (Some(_), true) => Some(hyper::upgrade::on(&mut request)),
        _ => None,
    };
    let (parts, body) = request.into_parts();
    let rewritten = endpoint.body != BodyCheck::Stream;
    let body = if rewritten {
        let bytes = Limited::new(body, MAX_JSON_BODY_BYTES)
            .collect()
            .await
            .map_err(|error| Refusal {
                status: 413,
                message: format!(
                    "test-looper docker proxy: the request body could not be read or is larger \
                     than {MAX_JSON_BODY_BYTES} bytes ({error})"
                ),
            })?
            .to_bytes();
        full(context.check_body(endpoint.body, &bytes).await?)
    } else {
        body.map_err(|e| Box::new(e) as BoxError).boxed()
    };
    let rest = match &target {
        Some(id) => endpoint.path_template.replace("{}", id),
        None => endpoint.path_template.clone(),
    };
    let uri = if query.is_empty() {
        format!("{}{rest}", endpoint.version)
    } else {
        format!("{}{rest}?{query}", endpoint.version)
    };
    let mut outgoing = Request::builder().method(parts.method).uri(uri);
    for (name, value) in &parts.headers {
        if hop_by_hop(name) || (rewritten && name == CONTENT_LENGTH) {
            continue;
        }
        outgoing = outgoing.header(name, value);
    }
    outgoing = outgoing.header(HOST, "docker");
    if let (Some(value), Some(_)) = (&upgrade_asked, &client_upgrade) {
        outgoing = outgoing
            .header(CONNECTION, "Upgrade")
            .header(UPGRADE, value.clone());
    }
    let outgoing = outgoing.body(body).map_err(|error| Refusal {
        status: 400,
        message: format!("test-looper docker proxy: bad request: {error}"),
    })?;

    let stream = UnixStream::connect(&context.engine)
        .await
        .map_err(bad_gateway)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(bad_gateway)?;
    let stop = context.stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = connection.with_upgrades() => {}
            _ = stop.cancelled() => {}
        }
    });
    let mut response = sender.send_request(outgoing).await.map_err(bad_gateway)?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        // The only way to a raw copy: a hijacking request that asked for it, and a real 101.
        let Some(client_upgrade) = client_upgrade else {
            return Err(bad_gateway("the engine switched protocols unasked"));
        };
        let engine_upgrade = hyper::upgrade::on(&mut response);
        let stop = context.stop.clone();
        tokio::spawn(async move {
            let (Ok(client), Ok(engine)) = (client_upgrade.await, engine_upgrade.await) else {
                return;
            };
            let (mut client, mut engine) = (TokioIo::new(client), TokioIo::new(engine));
            tokio::select! {
                copied = tokio::io::copy_bidirectional(&mut client, &mut engine) => {
                    if let Err(error) = copied {
                        tracing::debug!(%error, "docker proxy stream ended");
                    }
                }
                _ = stop.cancelled() => {}
            }
        });
        let (parts, _) = response.into_parts();
        return Ok(Response::from_parts(parts, full(Bytes::new())));
    }
    let (mut parts, body) = response.into_parts();
    for name in ["connection", "keep-alive", "transfer-encoding", "upgrade"] {
        parts.headers.remove(name);
    }
    Ok(Response::from_parts(
        parts,
        body.map_err(|e| Box::new(e) as BoxError).boxed(),
    ))
}

fn not_own(kind: &str, name: &str) -> Refusal {
    Refusal {
        status: 404,
        message: format!(
            "No such {kind}: {name} (test-looper docker proxy: a job sees only the {kind}s it \
             created through its own socket)"
        ),
    }
}

fn is_not_found(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

impl Context {
    fn carries_run_label(&self, labels: Option<&HashMap<String, String>>) -> bool {
        let (name, value) = &self.policy.run_label;
        labels.and_then(|l| l.get(name)) == Some(value)
    }

    /// The full id of `reference` when it carries the job's label.
    async fn own(&self, reference: &Reference) -> Result<String, Refusal> {
        match reference {
            Reference::Container(name) => match self.lookups.inspect_container(name, None).await {
                Ok(found)
                    if self.carries_run_label(
                        found.config.as_ref().and_then(|c| c.labels.as_ref()),
                    ) =>
                {
                    Ok(found.id.unwrap_or_else(|| name.clone()))
                }
                Ok(_) => Err(not_own("container", name)),
                Err(error) if is_not_found(&error) => Err(not_own("container", name)),
                Err(error) => Err(bad_gateway(error)),
            },
            Reference::Network(name) => match self.lookups.inspect_network(name, None).await {
                Ok(found) if self.carries_run_label(found.labels.as_ref()) => {
                    Ok(found.id.unwrap_or_else(|| name.clone()))
                }
                Ok(_) => Err(not_own("network", name)),
                Err(error) if is_not_found(&error) => Err(not_own("network", name)),
                Err(error) => Err(bad_gateway(error)),
            },
            Reference::Volume(name) => match self.lookups.inspect_volume(name).await {
                Ok(found) if self.carries_run_label(Some(&found.labels)) => Ok(found.name),
                Ok(_) => Err(not_own("volume", name)),
                Err(error) if is_not_found(&error) => Err(not_own("volume", name)),
                Err(error) => Err(bad_gateway(error)),
            },
        }
    }

    /// Succeeds when exec `id` runs in one of the job's containers.
    async fn own_exec(&self, id: &str) -> Result<(), Refusal> {
        match self.lookups.inspect_exec(id).await {
            Ok(found) => {
                let container = found.container_id.unwrap_or_default();
                self.own(&Reference::Container(container))
                    .await
                    .map(drop)
                    .map_err(|_| not_own("exec instance", id))
            }
            Err(error) if is_not_found(&error) => Err(not_own("exec instance", id)),
            Err(error) => Err(bad_gateway(error)),
        }
    }

    /// The checked (and possibly rewritten) JSON body of a request.
    async fn check_body(&self, check: BodyCheck, body: &[u8]) -> Result<Vec<u8>, Refusal> {
        match check {
            BodyCheck::Stream => Ok(body.to_vec()),
            BodyCheck::ContainerCreate => {
                let (body, references) = self.policy.check_create(body)?;
                for reference in &references {
                    self.own(reference).await?;
                }
                Ok(body)
            }
            BodyCheck::NetworkCreate => self.policy.check_network(body),
            BodyCheck::VolumeCreate => self.policy.check_volume(body),
            BodyCheck::ExecCreate => self.policy.check_exec(body),
            BodyCheck::NetworkConnect => {
                let container = self.policy.connect_target(body)?;
                self.own(&container).await?;
                Ok(body.to_vec())
            }
        }
    }
}
