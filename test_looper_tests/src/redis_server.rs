//! A real `redis-server` on a free loopback port with its own temp dir.

use crate::ports::{free_loopback_port, is_listening};
use crate::process::ServiceProcess;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A running Redis, stopped on drop.
pub struct RedisServer {
    port: u16,
    _dir: tempfile::TempDir,
    process: ServiceProcess,
}

impl RedisServer {
    /// Starts a fresh Redis with persistence off. Panics with instructions if it cannot.
    pub fn start() -> Self {
        Self::try_start().unwrap_or_else(|err| {
            panic!("cannot start redis-server ({err:#}); run test_looper_tests/run.sh, which installs it")
        })
    }

    fn try_start() -> anyhow::Result<Self> {
        let mut last_error = None;
        for _ in 0..5 {
            let dir = tempfile::tempdir()?;
            let port = free_loopback_port();
            match Self::spawn(port, dir.path()) {
                Ok(process) => {
                    return Ok(Self {
                        port,
                        _dir: dir,
                        process,
                    })
                }
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    /// A `redis-server` on `port` keeping its files in `dir`, once it listens.
    fn spawn(port: u16, dir: &std::path::Path) -> anyhow::Result<ServiceProcess> {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir)
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut process = ServiceProcess::spawn("redis-server", command)?;
        process.wait_until(Duration::from_secs(10), || is_listening(port))?;
        Ok(process)
    }

    /// Kills the server (`SIGKILL`) and starts an empty one on the same port: a Redis
    /// restarted without persistence, or a failover to an empty replica.
    pub fn restart_empty(&mut self) {
        let dir = tempfile::tempdir().expect("temp dir");
        self.process.kill();
        self.process = Self::spawn(self.port, dir.path()).expect("redis restarts on its port");
        self._dir = dir;
    }

    /// Stops the server's process (`SIGSTOP`) for `duration`, then lets it go on: a stall.
    pub fn stall(&self, duration: Duration) {
        self.process.signal(libc::SIGSTOP);
        std::thread::sleep(duration);
        self.process.signal(libc::SIGCONT);
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A client for this server.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("valid url")
    }

    /// The server's process id (for crash tests).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}
