//! Scoped Docker for tests (runtime spec 5.8): a per-run Unix socket that forwards the Docker
//! API to the real engine, labels every container created through it with the run's labels,
//! and removes those containers when the run ends.
//!
//! Forwarding is byte-level. Only the client→engine direction is parsed, request by request
//! (request line and headers, bodies by `Content-Length`); the engine→client direction is a
//! plain copy. `POST …/containers/create` bodies get the run's labels merged into `Labels`.
//! A chunked create body is refused with `400` (the labels could not be added). After a
//! hijacking request (`Upgrade`/`Connection: Upgrade`, `…/attach`, `…/exec/<id>/start`) or any
//! other chunked request body, the connection switches to a raw copy in both directions, so
//! attach and exec streams work.

use super::dirs::RunDirs;
use super::reaper::{container_labels, remove_labelled, RUN_LABEL};
use bollard::Docker;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Largest request head (request line + headers) accepted.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest `containers/create` body accepted.
const MAX_CREATE_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The real engine's socket: `DOCKER_HOST` when it is a `unix://` address, else
/// `/var/run/docker.sock`.
pub fn engine_socket_path() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|host| host.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
}

/// Where the socket is mounted in a run's containers (`DOCKER_HOST` points there).
pub const CONTAINER_SOCKET: &str = "/var/run/docker.sock";

/// Starts the scoped Docker proxy of a run: socket `<run dir>/docker/docker.sock`, containers
/// labelled with the worker's scope, machine id and the run id (so the worker's start-up
/// reaping also finds them).
pub fn start_for_run(
    dirs: &RunDirs,
    scope: &str,
    machine_id: &str,
    run_id: &str,
) -> std::io::Result<DockerProxy> {
    let dir = dirs.root.join("docker");
    std::fs::create_dir_all(&dir)?;
    let labels = container_labels(scope, machine_id, run_id, &HashMap::new());
    DockerProxy::start(
        &dir.join("docker.sock"),
        engine_socket_path(),
        run_id,
        labels,
    )
}

/// A running proxy for one run. Call [`DockerProxy::finish`] when the run ends.
pub struct DockerProxy {
    socket: PathBuf,
    run_id: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl DockerProxy {
    /// Listens on `socket` (replacing a stale file) and forwards to `engine`. `labels` are
    /// added to every container created through the proxy; `RUN_LABEL=run_id` is always among
    /// them.
    pub fn start(
        socket: &Path,
        engine: PathBuf,
        run_id: &str,
        mut labels: HashMap<String, String>,
    ) -> std::io::Result<Self> {
        if socket.exists() {
            std::fs::remove_file(socket)?;
        }
        let listener = UnixListener::bind(socket)?;
        labels.insert(RUN_LABEL.to_string(), run_id.to_string());
        let labels = Arc::new(labels);
        let stop = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, engine, labels, stop.clone()));
        Ok(Self {
            socket: socket.to_path_buf(),
            run_id: run_id.to_string(),
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

    /// Stops the proxy (open connections are dropped), removes the socket file and
    /// force-removes every container labelled with this run; returns how many were removed.
    pub async fn finish(mut self, docker: &Docker) -> Result<usize, bollard::errors::Error> {
        self.stop.cancel();
        let _ = (&mut self.task).await;
        if let Err(error) = std::fs::remove_file(&self.socket) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(%error, path = %self.socket.display(), "could not remove proxy socket");
            }
        }
        remove_labelled(docker, RUN_LABEL, &self.run_id).await
    }
}

impl Drop for DockerProxy {
    /// A proxy dropped without [`DockerProxy::finish`] (the run's future was dropped) still
    /// stops listening; its containers are left to the worker's start-up reaping.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(
    listener: UnixListener,
    engine: PathBuf,
    labels: Arc<HashMap<String, String>>,
    stop: CancellationToken,
) {
    // Dropping the set at the end aborts every open connection.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    let engine = engine.clone();
                    let labels = labels.clone();
                    connections.spawn(async move {
                        if let Err(error) = serve(client, &engine, &labels).await {
                            tracing::debug!(%error, "docker proxy connection ended");
                        }
                    });
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

/// One client connection: requests forwarded one by one, responses copied back raw.
async fn serve(
    client: UnixStream,
    engine: &Path,
    labels: &HashMap<String, String>,
) -> std::io::Result<()> {
    let upstream = UnixStream::connect(engine).await?;
    let (mut client_read, client_write) = client.into_split();
    let (engine_read, mut engine_write) = upstream.into_split();
    let responses = tokio::spawn(async move {
        let mut engine_read = engine_read;
        let mut client_write = client_write;
        let copied = tokio::io::copy(&mut engine_read, &mut client_write).await;
        (copied, client_write)
    });
    let forwarded = forward_requests(&mut client_read, &mut engine_write, labels).await;
    // Either way nothing more goes to the engine; it closes after its last response.
    let _ = engine_write.shutdown().await;
    let (copied, mut client_write) = responses.await.map_err(std::io::Error::other)?;
    if let Ok(Forwarded::Refused(response)) = &forwarded {
        client_write.write_all(response.as_bytes()).await?;
    }
    let _ = client_write.shutdown().await;
    forwarded?;
    copied.map(|_| ())
}

/// How the client→engine direction ended.
#[derive(Debug)]
enum Forwarded {
    /// Client closed its side (everything was forwarded).
    Done,
    /// A request was refused before reaching the engine; this response goes to the client
    /// after the engine's earlier responses, and the connection closes.
    Refused(&'static str),
}

/// The `400` answer to a create request whose body cannot be labelled.
const CHUNKED_CREATE_REFUSED: &str = "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"message\":\"test-looper docker proxy: chunked container create bodies are not supported\"}";
/// The answer to an oversized request head or create body.
const TOO_LARGE_REFUSED: &str = "HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"message\":\"test-looper docker proxy: request too large\"}";

/// Reads more client bytes into `buf`; returns how many (0 at end of stream).
async fn read_more<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let mut chunk = [0u8; 16 * 1024];
    let n = reader.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// Forwards requests from `client` to `engine` until the client closes, a hijack switches the
/// connection to raw copy, or a request is refused.
async fn forward_requests<R, W>(
    client: &mut R,
    engine: &mut W,
    labels: &HashMap<String, String>,
) -> std::io::Result<Forwarded>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let head_end = loop {
            if let Some(pos) = find(&buf, b"\r\n\r\n") {
                break pos + 4;
            }
            if buf.len() > MAX_HEAD_BYTES {
                return Ok(Forwarded::Refused(TOO_LARGE_REFUSED));
            }
            if read_more(client, &mut buf).await? == 0 {
                engine.write_all(&buf).await?;
                return Ok(Forwarded::Done);
            }
        };
        let head_bytes: Vec<u8> = buf.drain(..head_end).collect();
        let Some(head) = RequestHead::parse(&head_bytes) else {
            // Not HTTP as expected: stop interpreting and pass everything through.
            engine.write_all(&head_bytes).await?;
            return raw_copy(client, engine, &mut buf).await;
        };
        if head.is_create() {
            if head.chunked {
                return Ok(Forwarded::Refused(CHUNKED_CREATE_REFUSED));
            }
            let length = head.content_length.unwrap_or(0);
            if length > MAX_CREATE_BODY_BYTES {
                return Ok(Forwarded::Refused(TOO_LARGE_REFUSED));
            }
            while buf.len() < length {
                if read_more(client, &mut buf).await? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
            let body: Vec<u8> = buf.drain(..length).collect();
            let body = label_create_body(&body, labels);
            engine.write_all(&head.render(body.len())).await?;
            engine.write_all(&body).await?;
            continue;
        }
        engine.write_all(&head_bytes).await?;
        if head.hijacks() || head.chunked {
            return raw_copy(client, engine, &mut buf).await;
        }
        let mut remaining = head.content_length.unwrap_or(0);
        let buffered = remaining.min(buf.len());
        engine.write_all(&buf[..buffered]).await?;
        buf.drain(..buffered);
        remaining -= buffered;
        if remaining > 0 {
            let wanted = remaining as u64;
            let copied = tokio::io::copy(&mut (&mut *client).take(wanted), engine).await?;
            if copied < wanted {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

/// Passes the buffered bytes and then everything else from `client` to `engine`.
async fn raw_copy<R, W>(
    client: &mut R,
    engine: &mut W,
    buf: &mut Vec<u8>,
) -> std::io::Result<Forwarded>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    engine.write_all(buf).await?;
    buf.clear();
    tokio::io::copy(client, engine).await?;
    Ok(Forwarded::Done)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The parts of a request head the proxy looks at.
#[derive(Debug)]
struct RequestHead {
    method: String,
    /// Path without the query string.
    path: String,
    /// The request line and header lines, as received (without line ends).
    lines: Vec<String>,
    content_length: Option<usize>,
    chunked: bool,
    upgrade: bool,
}

impl RequestHead {
    /// Parses `head` (ending with the empty line); `None` when it is not an HTTP request head.
    fn parse(head: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(head).ok()?;
        let mut lines: Vec<String> = text.split("\r\n").map(str::to_string).collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        let mut request = lines.first()?.split(' ');
        let method = request.next()?.to_string();
        let target = request.next()?;
        if !request.next()?.starts_with("HTTP/") {
            return None;
        }
        let path = target.split('?').next().unwrap_or(target).to_string();
        let mut content_length = None;
        let mut chunked = false;
        let mut upgrade = false;
        for line in lines.iter().skip(1) {
            let (name, value) = line.split_once(':')?;
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => content_length = Some(value.parse().ok()?),
                "transfer-encoding" => {
                    chunked |= value.to_ascii_lowercase().contains("chunked");
                }
                "upgrade" => upgrade = true,
                "connection" => upgrade |= value.to_ascii_lowercase().contains("upgrade"),
                _ => {}
            }
        }
        Some(Self {
            method,
            path,
            lines,
            content_length,
            chunked,
            upgrade,
        })
    }

    fn is_create(&self) -> bool {
        self.method.eq_ignore_ascii_case("POST") && self.path.ends_with("/containers/create")
    }

    /// Whether the engine takes the connection over after this request (attach, exec start).
    fn hijacks(&self) -> bool {
        self.upgrade
            || self.path.ends_with("/attach")
            || (self.path.contains("/exec/") && self.path.ends_with("/start"))
    }

    /// The head again, with `Content-Length: content_length`.
    fn render(&self, content_length: usize) -> Vec<u8> {
        let mut out = String::new();
        for line in &self.lines {
            let is_length = line
                .split_once(':')
                .is_some_and(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"));
            if !is_length {
                out.push_str(line);
                out.push_str("\r\n");
            }
        }
        out.push_str(&format!("Content-Length: {content_length}\r\n\r\n"));
        out.into_bytes()
    }
}

/// The create body with `labels` merged into its `Labels` (the run's labels win). A body that
/// is not a JSON object is passed on unchanged (the engine rejects it).
fn label_create_body(body: &[u8], labels: &HashMap<String, String>) -> Vec<u8> {
    let Ok(serde_json::Value::Object(mut object)) = serde_json::from_slice(body) else {
        return body.to_vec();
    };
    let entry = object
        .entry("Labels")
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    if !entry.is_object() {
        *entry = serde_json::Value::Object(Default::default());
    }
    if let Some(existing) = entry.as_object_mut() {
        for (name, value) in labels {
            existing.insert(name.clone(), serde_json::Value::String(value.clone()));
        }
    }
    serde_json::to_vec(&object).unwrap_or_else(|_| body.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_heads_are_recognised_and_rerendered() {
        let head = RequestHead::parse(
            b"POST /v1.47/containers/create?name=x HTTP/1.1\r\nHost: d\r\ncontent-length: 2\r\n\r\n",
        )
        .unwrap();
        assert!(head.is_create() && !head.hijacks());
        assert_eq!(head.content_length, Some(2));
        assert_eq!(
            String::from_utf8(head.render(10)).unwrap(),
            "POST /v1.47/containers/create?name=x HTTP/1.1\r\nHost: d\r\nContent-Length: 10\r\n\r\n"
        );
        let exec = RequestHead::parse(b"POST /v1.47/exec/abc/start HTTP/1.1\r\n\r\n").unwrap();
        assert!(exec.hijacks());
        assert!(RequestHead::parse(b"garbage\r\n\r\n").is_none());
    }

    #[test]
    fn labels_are_merged_into_create_bodies() {
        let labels = HashMap::from([(RUN_LABEL.to_string(), "r1".to_string())]);
        let body = label_create_body(br#"{"Image":"x","Labels":{"a":"b"}}"#, &labels);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["Labels"]["a"], "b");
        assert_eq!(value["Labels"][RUN_LABEL], "r1");
        let body = label_create_body(br#"{"Image":"x","Labels":null}"#, &labels);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["Labels"][RUN_LABEL], "r1");
        assert_eq!(label_create_body(b"not json", &labels), b"not json");
    }
}
