//! Child processes the tests start and stop: `redis-server` and `oidc-provider-mock`.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// A child process killed (and reaped) on drop.
pub struct Service {
    name: &'static str,
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl Service {
    fn spawn(name: &'static str, mut command: Command, port: u16, dir: tempfile::TempDir) -> Self {
        let log = dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file);
        let child = command.spawn().unwrap_or_else(|err| {
            panic!("cannot start {name} ({err}); run deploy/install_deps.sh test")
        });
        let mut service = Self {
            name,
            child,
            port,
            _dir: dir,
            log,
        };
        service.wait_listening(Duration::from_secs(20));
        service
    }

    fn wait_listening(&mut self, timeout: Duration) {
        let start = Instant::now();
        while !listening(self.port) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before listening on {}:\n{}",
                    self.name,
                    self.port,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < timeout,
                "{} did not listen on {} within {timeout:?}:\n{}",
                self.name,
                self.port,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the process wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh `redis-server` with persistence off.
pub fn redis_server() -> Service {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut command = Command::new("redis-server");
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--dir")
        .arg(dir.path())
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"]);
    Service::spawn("redis-server", command, port, dir)
}

/// Where `deploy/install_deps.sh test` puts `oidc-provider-mock`.
pub fn oidc_provider_mock_binary() -> PathBuf {
    let cache = std::env::var_os("TEST_LOOPER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/test-looper")
        });
    let binary = cache.join("venv/bin/oidc-provider-mock");
    assert!(
        binary.is_file(),
        "{} is missing: the OpenID Connect tests need the real provider; install it with \
         `deploy/install_deps.sh oidc` (or `test`)",
        binary.display()
    );
    binary
}

/// A real OpenID Connect provider (`oidc-provider-mock`) on a free port, nonce required,
/// with predefined users (`--user-claims`, JSON objects with `sub`).
pub fn oidc_provider(users: &[serde_json::Value]) -> Service {
    oidc_provider_on(free_port(), users)
}

/// The same on a given port (a restarted provider draws new signing keys).
pub fn oidc_provider_on(port: u16, users: &[serde_json::Value]) -> Service {
    let binary = oidc_provider_mock_binary();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(binary);
    command.args([
        "-p",
        &port.to_string(),
        "-H",
        "127.0.0.1",
        "--require-nonce",
        "true",
    ]);
    for user in users {
        command.arg("--user-claims").arg(user.to_string());
    }
    command.env("PYTHONWARNINGS", "ignore");
    Service::spawn("oidc-provider-mock", command, port, dir)
}
