//! A real git server on loopback: `git daemon` serving every repo below a directory over
//! `git://127.0.0.1:<port>/<name>`, with pushes enabled. Stands in for GitHub/GitLab clone,
//! fetch and push in tests (their REST APIs use a small HTTP stand-in instead).

use crate::ports::{free_loopback_port, is_listening};
use crate::process::ServiceProcess;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A running `git daemon`; stopped when dropped.
pub struct GitDaemon {
    _process: ServiceProcess,
    port: u16,
    base: PathBuf,
}

impl GitDaemon {
    /// Serves every repo below `base` (fetch and push).
    pub fn start(base: &Path) -> Self {
        std::fs::create_dir_all(base).expect("create git daemon base dir");
        let mut last_error = None;
        for _ in 0..5 {
            let port = free_loopback_port();
            let mut command = Command::new("git");
            command
                .arg("daemon")
                .arg("--reuseaddr")
                .arg("--export-all")
                .arg("--enable=receive-pack")
                .arg("--listen=127.0.0.1")
                .arg(format!("--port={port}"))
                .arg(format!("--base-path={}", base.display()))
                .arg(base)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut process = match ServiceProcess::spawn("git daemon", command) {
                Ok(process) => process,
                Err(error) => panic!("cannot start `git daemon` (install git): {error}"),
            };
            match process.wait_until(Duration::from_secs(10), || is_listening(port)) {
                Ok(()) => {
                    return Self {
                        _process: process,
                        port,
                        base: base.to_path_buf(),
                    }
                }
                Err(error) => last_error = Some(error),
            }
        }
        panic!("git daemon did not start: {last_error:?}");
    }

    /// `git://127.0.0.1:<port>` (a clone-URL base: append `/<name>`).
    pub fn base_url(&self) -> String {
        format!("git://127.0.0.1:{}", self.port)
    }

    /// The URL of repo `name` (a path relative to the base directory).
    pub fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base_url())
    }

    /// The directory served.
    pub fn base_dir(&self) -> &Path {
        &self.base
    }
}
