//! The terminal hub: one output stream per deployment (bounded scrollback with absolute
//! offsets, server banners and the worker's deduplicated output), the browser terminals
//! subscribed to it (counted), and the route of their input to the worker session that holds
//! the deployment. In memory only: after a server restart a reconnecting worker's resent
//! output fills it again. The route is a bounded queue (L4): input a browser sends faster than
//! the worker link drains it is refused ([`InputSent::Overflow`]) and the browser terminal is
//! closed, instead of queueing without limit.

use super::scrollback::{Scrollback, WorkerCursor};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use test_looper_core::protocol::TerminalInput;
use tokio::sync::{mpsc, watch};

/// Output kept per deployment.
pub const SCROLLBACK_BYTES: usize = 1024 * 1024;
/// Streams of ended deployments kept (so a late terminal still sees how it ended).
const ENDED_KEPT: usize = 64;

/// Input records queued per worker session (each at most one frame, 1 MiB).
pub const INPUT_QUEUE: usize = 32;

/// Where a worker session receives the input of the deployments it holds.
pub type InputRoute = mpsc::Sender<(String, TerminalInput)>;

/// What became of browser input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputSent {
    /// Queued for the worker holding the deployment.
    Queued,
    /// No worker holds the deployment now (a resize is remembered).
    NoWorker,
    /// The worker's queue is full: the input was dropped.
    Overflow,
}

/// A slice of a deployment's output stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputChunk {
    /// Offset of the first byte (may be past the offset asked for: older bytes were dropped).
    pub offset: u64,
    pub bytes: Vec<u8>,
    /// The deployment was shut down: nothing more will come.
    pub ended: bool,
}

struct Terminal {
    scrollback: Scrollback,
    worker: WorkerCursor,
    /// The stream's end offset, watched by subscribers.
    length: watch::Sender<u64>,
    ended: bool,
    clients: usize,
    route: Option<InputRoute>,
    /// The last size a browser asked for (sent to a worker when it takes the deployment).
    size: Option<(u16, u16)>,
    /// Since when no browser terminal is attached (`None` while one is).
    idle_since: Option<Instant>,
}

impl Terminal {
    fn new() -> Self {
        Terminal {
            scrollback: Scrollback::new(SCROLLBACK_BYTES),
            worker: WorkerCursor::default(),
            length: watch::Sender::new(0),
            ended: false,
            clients: 0,
            route: None,
            size: None,
            idle_since: Some(Instant::now()),
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.scrollback.push(bytes);
        self.length.send_replace(self.scrollback.end());
    }
}

#[derive(Default)]
struct Terminals {
    by_id: HashMap<String, Terminal>,
    ended: VecDeque<String>,
}

impl Terminals {
    fn get(&mut self, id: &str) -> &mut Terminal {
        self.by_id
            .entry(id.to_string())
            .or_insert_with(Terminal::new)
    }
}

/// Every deployment's terminal stream (see the module docs). Cheap to clone.
#[derive(Clone, Default)]
pub struct TerminalHub {
    inner: Arc<Mutex<Terminals>>,
}

/// `"<UTC time> TestLooper> <text>"` as a terminal line.
pub fn banner(text: &str) -> String {
    let time = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC");
    format!("\r\n{time} TestLooper> {text}\r\n")
}

impl TerminalHub {
    fn lock(&self) -> MutexGuard<'_, Terminals> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes a server banner line into the stream.
    pub fn announce(&self, deployment_id: &str, text: &str) {
        self.lock().get(deployment_id).push(banner(text).as_bytes());
    }

    /// Takes in worker output (`data` starts at byte `offset` of the worker's own stream);
    /// returns how many bytes were new. Output after the shutdown is dropped.
    pub fn worker_output(&self, deployment_id: &str, offset: u64, data: &[u8]) -> usize {
        let mut terminals = self.lock();
        let terminal = terminals.get(deployment_id);
        if terminal.ended {
            return 0;
        }
        let unseen = terminal.worker.unseen(offset, data);
        terminal.push(unseen);
        unseen.len()
    }

    /// Ends the stream with a "Session Terminated" banner (once) and drops the input route.
    pub fn terminate(&self, deployment_id: &str) {
        let mut terminals = self.lock();
        let terminal = terminals.get(deployment_id);
        if terminal.ended {
            return;
        }
        terminal.push(banner("Session Terminated").as_bytes());
        terminal.ended = true;
        terminal.route = None;
        terminal.length.send_modify(|_| {});
        terminals.ended.push_back(deployment_id.to_string());
        while terminals.ended.len() > ENDED_KEPT {
            if let Some(old) = terminals.ended.pop_front() {
                terminals.by_id.remove(&old);
            }
        }
    }

    /// Whether the hub has a stream for this deployment.
    pub fn knows(&self, deployment_id: &str) -> bool {
        self.lock().by_id.contains_key(deployment_id)
    }

    /// Browser terminals attached now.
    pub fn clients(&self, deployment_id: &str) -> usize {
        self.lock()
            .by_id
            .get(deployment_id)
            .map_or(0, |t| t.clients)
    }

    /// How long no browser terminal has been attached to the deployment (zero while one is).
    /// A deployment the hub has not seen yet (e.g. after a server restart) is idle from now.
    pub fn idle_for(&self, deployment_id: &str) -> std::time::Duration {
        self.lock()
            .get(deployment_id)
            .idle_since
            .map_or(std::time::Duration::ZERO, |since| since.elapsed())
    }

    /// Attaches a browser terminal (counted until the subscription drops).
    pub fn subscribe(&self, deployment_id: &str) -> TerminalSubscription {
        let mut terminals = self.lock();
        let terminal = terminals.get(deployment_id);
        terminal.clients += 1;
        terminal.idle_since = None;
        TerminalSubscription {
            hub: self.clone(),
            deployment_id: deployment_id.to_string(),
            length: terminal.length.subscribe(),
        }
    }

    /// The worker session owning `route` now holds the deployment: browser input goes there.
    /// The last size a browser asked for is sent at once.
    pub fn route_input(&self, deployment_id: &str, route: InputRoute) {
        let mut terminals = self.lock();
        let terminal = terminals.get(deployment_id);
        if terminal.ended {
            return;
        }
        if let Some((cols, rows)) = terminal.size {
            let _ = route.try_send((
                deployment_id.to_string(),
                TerminalInput::Resize { cols, rows },
            ));
        }
        terminal.route = Some(route);
    }

    /// Forgets `route` for the deployment (its worker session ended), unless another
    /// session has taken over.
    pub fn unroute(&self, deployment_id: &str, route: &InputRoute) {
        let mut terminals = self.lock();
        if let Some(terminal) = terminals.by_id.get_mut(deployment_id) {
            if terminal
                .route
                .as_ref()
                .is_some_and(|r| r.same_channel(route))
            {
                terminal.route = None;
            }
        }
    }

    /// Sends browser input to the worker holding the deployment (a resize is also
    /// remembered for the worker that takes it).
    pub fn send_input(&self, deployment_id: &str, input: TerminalInput) -> InputSent {
        let mut terminals = self.lock();
        let Some(terminal) = terminals.by_id.get_mut(deployment_id) else {
            return InputSent::NoWorker;
        };
        if let TerminalInput::Resize { cols, rows } = input {
            terminal.size = Some((cols, rows));
        }
        let Some(route) = &terminal.route else {
            return InputSent::NoWorker;
        };
        match route.try_send((deployment_id.to_string(), input)) {
            Ok(()) => InputSent::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => InputSent::Overflow,
            Err(mpsc::error::TrySendError::Closed(_)) => InputSent::NoWorker,
        }
    }

    fn read(&self, deployment_id: &str, offset: u64, max: usize) -> OutputChunk {
        let terminals = self.lock();
        match terminals.by_id.get(deployment_id) {
            Some(terminal) => {
                let (offset, bytes) = terminal.scrollback.read_from(offset, max);
                OutputChunk {
                    offset,
                    bytes,
                    ended: terminal.ended,
                }
            }
            None => OutputChunk {
                offset,
                bytes: Vec::new(),
                ended: true,
            },
        }
    }

    fn detach(&self, deployment_id: &str) {
        if let Some(terminal) = self.lock().by_id.get_mut(deployment_id) {
            terminal.clients = terminal.clients.saturating_sub(1);
            if terminal.clients == 0 {
                terminal.idle_since = Some(Instant::now());
            }
        }
    }
}

/// One attached browser terminal: reads the stream from its own offset and waits for more.
pub struct TerminalSubscription {
    hub: TerminalHub,
    deployment_id: String,
    length: watch::Receiver<u64>,
}

impl TerminalSubscription {
    /// Up to `max` bytes of output from `offset`.
    pub fn read_from(&mut self, offset: u64, max: usize) -> OutputChunk {
        self.length.mark_unchanged();
        self.hub.read(&self.deployment_id, offset, max)
    }

    /// Resolves when output was added (or the stream ended) since the last read.
    pub async fn changed(&mut self) {
        if self.length.changed().await.is_err() {
            // The stream was dropped (long ended): nothing will ever come.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for TerminalSubscription {
    fn drop(&mut self) {
        self.hub.detach(&self.deployment_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_see_banners_and_new_worker_output_once() {
        let hub = TerminalHub::default();
        hub.announce("d1", "Deployment for t (abcd1234) waiting for hardware.");
        let mut terminal = hub.subscribe("d1");
        assert_eq!(hub.clients("d1"), 1);
        let first = terminal.read_from(0, 1 << 20);
        assert!(String::from_utf8_lossy(&first.bytes).contains("waiting for hardware."));
        let end = first.bytes.len() as u64;
        assert_eq!(hub.worker_output("d1", 0, b"$ "), 2);
        assert_eq!(hub.worker_output("d1", 0, b"$ ls"), 2);
        terminal.changed().await;
        let next = terminal.read_from(end, 1 << 20);
        assert_eq!((next.offset, next.bytes.as_slice()), (end, &b"$ ls"[..]));
        hub.terminate("d1");
        hub.terminate("d1");
        terminal.changed().await;
        let last = terminal.read_from(end + 4, 1 << 20);
        let text = String::from_utf8_lossy(&last.bytes).into_owned();
        assert!(last.ended);
        assert_eq!(text.matches("Session Terminated").count(), 1, "{text}");
        assert_eq!(hub.worker_output("d1", 4, b"late"), 0);
        drop(terminal);
        assert_eq!(hub.clients("d1"), 0);
    }

    #[test]
    fn input_goes_to_the_routed_session_and_a_late_worker_gets_the_size() {
        let hub = TerminalHub::default();
        hub.announce("d1", "booting");
        assert_eq!(
            hub.send_input("d1", TerminalInput::Resize { cols: 80, rows: 24 }),
            InputSent::NoWorker
        );
        let (route, mut inputs) = mpsc::channel(INPUT_QUEUE);
        hub.route_input("d1", route.clone());
        assert_eq!(
            inputs.try_recv().unwrap(),
            ("d1".into(), TerminalInput::Resize { cols: 80, rows: 24 })
        );
        assert_eq!(
            hub.send_input(
                "d1",
                TerminalInput::Keys {
                    data: "ls\r".into()
                }
            ),
            InputSent::Queued
        );
        assert_eq!(
            inputs.try_recv().unwrap().1,
            TerminalInput::Keys {
                data: "ls\r".into()
            }
        );
        hub.unroute("d1", &route);
        assert_eq!(
            hub.send_input("d1", TerminalInput::Keys { data: "x".into() }),
            InputSent::NoWorker
        );
    }

    #[test]
    fn input_beyond_the_queue_is_refused() {
        let hub = TerminalHub::default();
        hub.announce("d1", "booting");
        let (route, mut inputs) = mpsc::channel(INPUT_QUEUE);
        hub.route_input("d1", route);
        let keys = || TerminalInput::Keys { data: "y".into() };
        for _ in 0..INPUT_QUEUE {
            assert_eq!(hub.send_input("d1", keys()), InputSent::Queued);
        }
        assert_eq!(hub.send_input("d1", keys()), InputSent::Overflow);
        inputs.try_recv().unwrap();
        assert_eq!(hub.send_input("d1", keys()), InputSent::Queued);
    }
}
