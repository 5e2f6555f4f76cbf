//! The real `test-looper-server` binary as a child process, for tests that kill it (`kill -9`)
//! and start it again over the same Redis, repos and artifacts, and an HTTP client for its
//! JSON API and actions.

use crate::install::server_binary;
use crate::ports::{free_loopback_port, is_listening_on};
use crate::process::ServiceProcess;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A running server process (killed when dropped), its configuration file and its log.
pub struct ServerProcess {
    process: Option<ServiceProcess>,
    config: PathBuf,
    log: PathBuf,
    host: String,
    port: u16,
    http: reqwest::Client,
}

impl ServerProcess {
    /// Writes `config` (YAML without a `server:` section: it is added, with a free port and
    /// `data_dir` under `dir`) to `dir/server.yml` and starts the server on it. Its standard
    /// output and error (the workers' too) are appended to `dir/server.log`.
    pub fn start(dir: &Path, config: &str) -> ServerProcess {
        Self::start_on(dir, "127.0.0.1", "", config)
    }

    /// As [`ServerProcess::start`], with the server bound to `host` (an address of this
    /// machine, also its `server.address`) and `server_keys` (indented YAML lines, e.g.
    /// `"  allowed_hosts: [ci]\n"`) added to its `server:` section.
    pub fn start_on(dir: &Path, host: &str, server_keys: &str, config: &str) -> ServerProcess {
        Self::start_on_port(dir, host, free_loopback_port(), server_keys, config)
    }

    /// As [`ServerProcess::start_on`], on a port the caller chose (when the configuration
    /// must name the server's own URL).
    pub fn start_on_port(
        dir: &Path,
        host: &str,
        port: u16,
        server_keys: &str,
        config: &str,
    ) -> ServerProcess {
        let text = format!(
            "server:\n  bind: {host}\n  address: {host}\n  http_port: {port}\n  data_dir: {}/data\n{server_keys}{config}",
            dir.display()
        );
        let config = dir.join("server.yml");
        std::fs::write(&config, text).expect("write the server configuration");
        let mut server = ServerProcess {
            process: None,
            config,
            log: dir.join("server.log"),
            host: host.to_string(),
            port,
            http: reqwest::Client::new(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the server log");
        let mut command = Command::new(server_binary());
        command
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        let mut process =
            ServiceProcess::spawn("test-looper-server", command).expect("start the server");
        let (host, port) = (self.host.clone(), self.port);
        process
            .wait_until(Duration::from_secs(60), || is_listening_on(&host, port))
            .unwrap_or_else(|err| panic!("{err:#}\n{}", self.log_text()));
        self.process = Some(process);
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.as_ref().expect("the server runs").pid()
    }

    /// `kill -9` of the server (its workers lose their link and exit).
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts the server again on the same configuration and port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Stops the server with `SIGTERM` and waits (up to 20 s) for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.signal(libc::SIGTERM);
            let _ = process.wait_exit(Duration::from_secs(20));
        }
    }

    /// What the server (and its workers) logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `http://HOST:PORT` + `path` (`HOST` is 127.0.0.1 unless started with
    /// [`ServerProcess::start_on`]).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.host, self.port)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JSON at `path`, or `None` on any error (the server may be restarting).
    pub async fn get_json(&self, path: &str) -> Option<serde_json::Value> {
        let response = self.http.get(self.url(path)).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    /// The runs of the definition `name` on a commit, as the commit page's JSON rows (empty
    /// while the server does not answer).
    pub async fn runs_of(&self, repo: &str, commit: &str, name: &str) -> Vec<serde_json::Value> {
        let Some(view) = self
            .get_json(&format!("/api/commit?repo={repo}&commit={commit}"))
            .await
        else {
            return Vec::new();
        };
        view["definitions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|row| row["name"] == name)
            .flat_map(|row| row["runs"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// Performs the API action `name` with `body`, as a browser user would (CSRF token from
    /// a page, same-origin header). Errors name the status and the answer.
    pub async fn action(&self, name: &str, body: serde_json::Value) -> anyhow::Result<()> {
        let page = self
            .http
            .get(self.url("/repos"))
            .send()
            .await?
            .text()
            .await?;
        let token = page
            .split("name=\"csrf-token\" content=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .ok_or_else(|| anyhow::anyhow!("no CSRF token on /repos"))?
            .to_string();
        let response = self
            .http
            .post(self.url(&format!("/api/actions/{name}")))
            .header("X-CSRF-Token", token)
            .header("Origin", self.url(""))
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            anyhow::bail!("{name}: {status}: {}", response.text().await?);
        }
        Ok(())
    }

    /// Worker processes the server started (its children named `test-looper-wor…`).
    pub fn worker_pids(&self) -> Vec<u32> {
        let Some(process) = &self.process else {
            return Vec::new();
        };
        let parent = process.pid();
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ...
            let Some((comm, rest)) = stat
                .split_once('(')
                .and_then(|(_, rest)| rest.rsplit_once(')'))
            else {
                continue;
            };
            let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
            if ppid == Some(parent) && comm.starts_with("test-looper-wor") {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
