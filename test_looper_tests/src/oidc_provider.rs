//! A real OpenID Connect provider for tests: `oidc-provider-mock` (PyPI, pinned and installed
//! by `deploy/install_deps.sh test`) on a free loopback port, nonces required, with the given
//! users. Its authorization page is a form where a browser (or [`OidcProvider::authorize`])
//! types the subject to log in as.

use crate::ports::{free_loopback_port, is_listening};
use crate::process::ServiceProcess;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A running provider; killed on drop.
pub struct OidcProvider {
    pub port: u16,
    _process: ServiceProcess,
    _dir: tempfile::TempDir,
}

/// Where `deploy/install_deps.sh test` installs the provider.
pub fn binary() -> PathBuf {
    let cache = std::env::var_os("TEST_LOOPER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/test-looper")
        });
    let binary = cache.join("venv/bin/oidc-provider-mock");
    assert!(
        binary.is_file(),
        "{} is missing: install it with `deploy/install_deps.sh test`",
        binary.display()
    );
    binary
}

impl OidcProvider {
    /// Starts the provider with `users` (JSON claims, each with `sub`).
    pub fn start(users: &[serde_json::Value]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_loopback_port();
        let log = std::fs::File::create(dir.path().join("oidc.log")).expect("log file");
        let mut command = Command::new(binary());
        command
            .args(["-p", &port.to_string(), "-H", "127.0.0.1"])
            .args(["--require-nonce", "true"])
            .env("PYTHONWARNINGS", "ignore")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        for user in users {
            command.arg("--user-claims").arg(user.to_string());
        }
        let mut process = ServiceProcess::spawn("oidc-provider-mock", command)
            .expect("oidc-provider-mock starts");
        process
            .wait_until(Duration::from_secs(30), || is_listening(port))
            .unwrap_or_else(|err| {
                panic!(
                    "{err}: {}",
                    std::fs::read_to_string(dir.path().join("oidc.log")).unwrap_or_default()
                )
            });
        OidcProvider {
            port,
            _process: process,
            _dir: dir,
        }
    }

    /// The issuer URL.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What a person does on the provider's authorization page at `authorize_url`: submit
    /// `subject`. Returns where the provider sends the browser back (the callback URL with
    /// `code` and `state`).
    pub async fn authorize(&self, authorize_url: &str, subject: &str) -> String {
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let page = browser
            .get(authorize_url)
            .send()
            .await
            .expect("authorize page");
        assert_eq!(page.status(), 200, "the provider's authorization page");
        let response = browser
            .post(authorize_url)
            .form(&[("sub", subject)])
            .send()
            .await
            .expect("authorize form");
        assert_eq!(response.status(), 302, "the provider redirects back");
        response.headers()["location"]
            .to_str()
            .expect("location")
            .to_string()
    }
}
