//! Real headless Chromium driven over WebDriver (chromedriver + fantoccini).
//!
//! [`Browser::start`] runs `chromedriver` on a free loopback port and opens a headless Chromium
//! session with a fresh profile. Screenshots go to `<target dir>/browser-screenshots/` so a
//! reader can look at the pages the tests saw.

use crate::ports::{free_loopback_port, is_listening};
use crate::process::ServiceProcess;
use fantoccini::{Client, ClientBuilder};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Flags that make Chromium work headless in a container without network access.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1000",
];

/// A WebDriver session in headless Chromium; the driver stops when this drops.
pub struct Browser {
    pub client: Client,
    _profile: tempfile::TempDir,
    _driver: ServiceProcess,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session. Panics with instructions if they
    /// are not installed.
    pub async fn start() -> Self {
        let port = free_loopback_port();
        let mut command = Command::new("chromedriver");
        command
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut driver = ServiceProcess::spawn("chromedriver", command).unwrap_or_else(|err| {
            panic!("cannot start chromedriver ({err}); run test_looper_tests/run.sh, which installs chromium-driver")
        });
        driver
            .wait_until(Duration::from_secs(20), || is_listening(port))
            .expect("chromedriver listening");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({"args": args, "binary": chromium_binary()}),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("WebDriver session");
        Self {
            client,
            _profile: profile,
            _driver: driver,
        }
    }

    /// Saves a PNG of the current page as `<target dir>/browser-screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Ends the WebDriver session (the browser process exits).
    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

fn chromium_binary() -> String {
    std::env::var("TEST_LOOPER_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// `$CARGO_TARGET_DIR/browser-screenshots` (or `target/` in the workspace).
pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::paths::workspace_root().join("target"))
        .join("browser-screenshots")
}
