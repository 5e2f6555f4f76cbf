//! A real `moto_server` (the local AWS EC2 + S3 emulator) on a free loopback port.

use crate::paths::tool_cache;
use crate::ports::{free_loopback_port, is_listening_on};
use crate::process::ServiceProcess;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Region used by every test; moto keeps state per region.
pub const TEST_REGION: &str = "us-east-1";

/// A running moto server, stopped on drop.
pub struct MotoServer {
    host: String,
    port: u16,
    _process: ServiceProcess,
}

impl MotoServer {
    /// Starts moto on loopback. Panics with instructions if the emulator is not installed.
    pub fn start() -> Self {
        Self::start_on("127.0.0.1")
    }

    /// Starts moto listening on `host` (an address of this machine), e.g. for workers in
    /// another network namespace. The port is one that was free on loopback.
    pub fn start_on(host: &str) -> Self {
        let binary = moto_binary();
        assert!(
            binary.exists(),
            "moto_server not found at {}; run test_looper_tests/run.sh, which installs moto[server] into a venv",
            binary.display()
        );
        let mut last_error = None;
        for _ in 0..5 {
            let port = free_loopback_port();
            let mut command = Command::new(&binary);
            command
                .args(["-H", host, "-p", &port.to_string()])
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut process =
                ServiceProcess::spawn("moto_server", command).expect("spawn moto_server");
            match process.wait_until(Duration::from_secs(30), || is_listening_on(host, port)) {
                Ok(()) => {
                    return Self {
                        host: host.to_string(),
                        port,
                        _process: process,
                    }
                }
                Err(err) => last_error = Some(err),
            }
        }
        panic!(
            "moto_server did not start: {:#}",
            last_error.expect("an attempt")
        );
    }

    /// `http://HOST:PORT` (`HOST` is 127.0.0.1 unless started with [`MotoServer::start_on`]).
    pub fn endpoint_url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// Wipes every emulated resource.
    pub async fn reset(&self) -> anyhow::Result<()> {
        reqwest::Client::new()
            .post(format!("{}/moto-api/reset", self.endpoint_url()))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }
}

/// Where `run.sh` installs moto (`$TEST_LOOPER_MOTO_SERVER` overrides).
pub fn moto_binary() -> PathBuf {
    std::env::var_os("TEST_LOOPER_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| tool_cache().join("venv/bin/moto_server"))
}

impl MotoServer {
    /// AWS settings that point the SDK at this emulator with dummy static credentials.
    pub fn aws_settings(&self) -> test_looper_aws::AwsSettings {
        test_looper_aws::AwsSettings {
            region: TEST_REGION.into(),
            endpoint_url: Some(self.endpoint_url()),
            credentials: Some(test_looper_aws::StaticKeys {
                access_key_id: "testing".into(),
                secret_access_key: "testing".into(),
            }),
        }
    }
}
