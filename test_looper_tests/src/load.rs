//! A light closed-loop HTTP/1.1 load generator for the API benchmark. Each client holds one
//! keep-alive connection (hyper's connection-level client: no pool, no redirects, no
//! decompression) and sends its requests one after another, timing each from the moment it
//! is sent to the last byte of its body. The clients run on a thread and runtime of their
//! own, so they take as little as possible from the server they measure.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// One request as it went.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Which endpoint it asked (the index given by the plan).
    pub endpoint: usize,
    pub latency: Duration,
    /// A 2xx status and a whole body.
    pub ok: bool,
    pub bytes: usize,
}

/// What every client asks: `request(client, i)` is the endpoint and path of the `i`-th
/// request of `client`.
pub struct Plan {
    pub clients: usize,
    pub per_client: usize,
    pub request: Box<dyn Fn(usize, usize) -> (usize, String) + Send + Sync>,
}

/// The samples of every request and how long the whole load took.
pub struct Outcome {
    pub samples: Vec<Sample>,
    pub elapsed: Duration,
}

/// Runs `plan` against `addr` on a thread of its own; awaiting it does not block the caller's
/// runtime (the server under test may share it).
pub async fn run(addr: SocketAddr, plan: Plan) -> anyhow::Result<Outcome> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("load".into())
        .spawn(move || {
            let outcome = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| runtime.block_on(drive(addr, Arc::new(plan))));
            let _ = done.send(outcome);
        })?;
    result.await?
}

async fn drive(addr: SocketAddr, plan: Arc<Plan>) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let clients: Vec<_> = (0..plan.clients)
        .map(|client| tokio::spawn(one_client(addr, plan.clone(), client)))
        .collect();
    let mut samples = Vec::with_capacity(plan.clients * plan.per_client);
    for client in clients {
        samples.extend(client.await??);
    }
    Ok(Outcome {
        samples,
        elapsed: started.elapsed(),
    })
}

type Sender = http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn one_client(
    addr: SocketAddr,
    plan: Arc<Plan>,
    client: usize,
) -> anyhow::Result<Vec<Sample>> {
    let host = addr.to_string();
    let mut sender = connect(addr).await?;
    let mut samples = Vec::with_capacity(plan.per_client);
    for i in 0..plan.per_client {
        let (endpoint, path) = (plan.request)(client, i);
        let request = Request::get(path)
            .header(hyper::header::HOST, &host)
            .body(Empty::<Bytes>::new())?;
        let sent = Instant::now();
        let answer = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let ok = response.status().is_success();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((ok, body.len()))
        }
        .await;
        let latency = sent.elapsed();
        let (ok, bytes) = match answer {
            Ok(answer) => answer,
            Err(_) => {
                // A broken connection: count the failure and carry on over a new one.
                sender = connect(addr).await?;
                (false, 0)
            }
        };
        samples.push(Sample {
            endpoint,
            latency,
            ok,
            bytes,
        });
    }
    Ok(samples)
}
