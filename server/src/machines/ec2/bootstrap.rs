//! How a pool machine becomes a worker, without a long-lived secret in its user-data.
//!
//! 1. Before the launch the pool draws a random key in the bootstrap bucket and puts in the
//!    instance's user-data only a presigned GET URL for it, valid for the boot timeout
//!    ([`user_data`]).
//! 2. Once `RunInstances` has returned the instance id, the pool writes the machine's script at
//!    that key ([`machine_script`]): the `host_ips` lines for `/etc/hosts`, where the worker
//!    binary comes from (the AMI, or a presigned URL into the bucket), and the worker's
//!    environment with a machine token bound to this instance id.
//! 3. The user-data fetches the script (retrying until it exists) and runs it; the worker
//!    registers with the instance id as its machine id.
//! 4. The pool deletes the script when the worker has registered or the instance has ended.

use super::settings::BootstrapSpec;
use test_looper_aws::s3::presigning::PresigningConfig;
use test_looper_aws::s3::Client;
use thiserror::Error;

/// A failed bootstrap-bucket call.
#[derive(Debug, Error)]
#[error("bootstrap bucket {operation} {key}: {message}")]
pub struct BootstrapError {
    pub operation: &'static str,
    pub key: String,
    pub message: String,
}

/// What one worker is started with.
pub struct MachineWorker<'a> {
    pub instance_id: &'a str,
    pub token: &'a str,
    pub cores: u32,
    pub ram_gb: u32,
    /// A one-shot machine booted from this naked AMI: the worker runs its one job on it.
    pub vm_ami: Option<&'a str>,
}

/// Writes and removes machines' bootstrap scripts in the bucket.
#[derive(Clone)]
pub struct BootstrapStore {
    client: Client,
    spec: BootstrapSpec,
}

/// Seconds between the user-data's attempts to fetch its script.
const FETCH_RETRY_SECONDS: u64 = 2;

impl BootstrapStore {
    pub fn new(client: Client, spec: BootstrapSpec) -> BootstrapStore {
        BootstrapStore { client, spec }
    }

    pub fn spec(&self) -> &BootstrapSpec {
        &self.spec
    }

    /// A fresh key and the user-data that fetches it.
    pub async fn prepare(&self) -> Result<(String, String), BootstrapError> {
        let key = format!(
            "{}{}.sh",
            self.spec.key_prefix,
            hex::encode(rand::random::<[u8; 16]>())
        );
        let url = self.presigned_get(&key).await?;
        let attempts = (self.spec.valid_for.as_secs() / FETCH_RETRY_SECONDS).max(1);
        Ok((key.clone(), user_data(&url, attempts)))
    }

    /// Writes the script of the machine whose user-data fetches `key`.
    pub async fn publish(
        &self,
        key: &str,
        worker: &MachineWorker<'_>,
    ) -> Result<(), BootstrapError> {
        let binary_url = match &self.spec.worker_binary_key {
            Some(binary_key) => Some(self.presigned_get(binary_key).await?),
            None => None,
        };
        let script = machine_script(&self.spec, worker, binary_url.as_deref());
        self.client
            .put_object()
            .bucket(&self.spec.bucket)
            .key(key)
            .content_type("text/x-shellscript")
            .body(script.into_bytes().into())
            .send()
            .await
            .map_err(|error| self.error("PutObject", key, error))?;
        Ok(())
    }

    /// Deletes a machine's script (done with, or its instance ended).
    pub async fn remove(&self, key: &str) -> Result<(), BootstrapError> {
        self.client
            .delete_object()
            .bucket(&self.spec.bucket)
            .key(key)
            .send()
            .await
            .map_err(|error| self.error("DeleteObject", key, error))?;
        Ok(())
    }

    async fn presigned_get(&self, key: &str) -> Result<String, BootstrapError> {
        let config =
            PresigningConfig::expires_in(self.spec.valid_for).map_err(|error| BootstrapError {
                operation: "presign",
                key: key.to_string(),
                message: error.to_string(),
            })?;
        let request = self
            .client
            .get_object()
            .bucket(&self.spec.bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(|error| self.error("presign", key, error))?;
        Ok(request.uri().to_string())
    }

    fn error(
        &self,
        operation: &'static str,
        key: &str,
        error: impl std::fmt::Debug,
    ) -> BootstrapError {
        BootstrapError {
            operation,
            key: format!("s3://{}/{key}", self.spec.bucket),
            message: format!("{error:?}").chars().take(400).collect(),
        }
    }
}

/// The instance's user-data: fetch the script at `url` (curl or wget, retried `attempts`
/// times) and run it. Holds no secret beyond a URL that expires with the boot timeout.
pub fn user_data(url: &str, attempts: u64) -> String {
    format!(
        r#"#!/bin/sh
# test-looper machine: fetch this machine's bootstrap script and run it.
url={url}
fetch() {{ if command -v curl >/dev/null 2>&1; then curl -fsS -o "$2" "$1"; else wget -q -O "$2" "$1"; fi; }}
attempt=0
until fetch "$url" /tmp/test-looper-bootstrap.sh; do
  attempt=$((attempt + 1))
  [ "$attempt" -ge {attempts} ] && {{ echo "test-looper: no bootstrap script" >&2; exit 1; }}
  sleep {FETCH_RETRY_SECONDS}
done
exec sh /tmp/test-looper-bootstrap.sh
"#,
        url = sh_quote(url),
    )
}

/// The machine's bootstrap script.
pub fn machine_script(
    spec: &BootstrapSpec,
    worker: &MachineWorker<'_>,
    binary_url: Option<&str>,
) -> String {
    let mut script = String::from("#!/bin/sh\n# test-looper machine bootstrap\nset -eu\n");
    if !spec.host_ips.is_empty() {
        script.push_str("cat >> /etc/hosts <<'TEST_LOOPER_HOSTS'\n");
        for (host, ip) in &spec.host_ips {
            script.push_str(&format!("{ip} {host}\n"));
        }
        script.push_str("TEST_LOOPER_HOSTS\n");
    }
    let binary = sh_quote(&spec.binary_path);
    if let Some(url) = binary_url {
        script.push_str(&format!(
            "mkdir -p \"$(dirname {binary})\"\n\
             if command -v curl >/dev/null 2>&1; then curl -fsS -o {binary}.part {url}; else wget -q -O {binary}.part {url}; fi\n\
             chmod 755 {binary}.part && mv {binary}.part {binary}\n",
            url = sh_quote(url),
        ));
    }
    // One directory per machine: machines may share a disk (the cloud simulation does).
    let storage = format!(
        "{}/{}",
        spec.storage_path.trim_end_matches('/'),
        worker.instance_id
    );
    let environment = [
        ("TEST_LOOPER_SERVER_URL", spec.server_url.clone()),
        ("TEST_LOOPER_WORKER_TOKEN", worker.token.to_string()),
        ("TEST_LOOPER_MACHINE_ID", worker.instance_id.to_string()),
        ("TEST_LOOPER_WORKER_STORAGE", storage.clone()),
        ("TEST_LOOPER_DOCKER_SCOPE", spec.docker_scope.clone()),
        ("TEST_LOOPER_ARTIFACTS", spec.artifacts_json.clone()),
        (
            "TEST_LOOPER_HEARTBEAT_SECONDS",
            spec.heartbeat_seconds.to_string(),
        ),
    ];
    script.push_str(&format!("mkdir -p {}\n", sh_quote(&storage)));
    for (name, value) in environment {
        script.push_str(&format!("export {name}={}\n", sh_quote(&value)));
    }
    let mode = match worker.vm_ami {
        Some(ami) => format!(" --vm-ami {}", sh_quote(ami)),
        None if spec.shares_cores => " --shares-cores".to_string(),
        None => String::new(),
    };
    script.push_str(&format!(
        "exec {binary} --cores {} --ram-gb {}{mode}\n",
        worker.cores, worker.ram_gb,
    ));
    script
}

/// `value` as one single-quoted shell word.
fn sh_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn spec() -> BootstrapSpec {
        BootstrapSpec {
            bucket: "b".into(),
            key_prefix: "boot/".into(),
            worker_binary_key: None,
            binary_path: "/usr/local/bin/test-looper-worker".into(),
            server_url: "http://10.0.0.5:9081".into(),
            storage_path: "/var/lib/test-looper/worker".into(),
            host_ips: BTreeMap::from([("git.internal".into(), "10.0.0.9".into())]),
            docker_scope: "test_looper".into(),
            artifacts_json: r#"{"kind":"s3","bucket":"it's"}"#.into(),
            heartbeat_seconds: 10,
            shares_cores: false,
            valid_for: std::time::Duration::from_secs(600),
        }
    }

    fn run(script: &str) -> String {
        let output = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        script.to_string()
    }

    #[test]
    fn user_data_holds_only_the_url_and_is_valid_shell() {
        let data = run(&user_data(
            "http://s3/b/boot/k.sh?X-Amz-Signature=a&b=c",
            300,
        ));
        assert!(data.contains("url='http://s3/b/boot/k.sh?X-Amz-Signature=a&b=c'"));
        assert!(!data.contains("TOKEN"));
    }

    #[test]
    fn the_machine_script_writes_hosts_and_starts_the_worker_as_its_instance() {
        let worker = MachineWorker {
            instance_id: "i-0abc",
            token: "tlm1.i-0abc.5.ff",
            cores: 4,
            ram_gb: 16,
            vm_ami: None,
        };
        let script = run(&machine_script(&spec(), &worker, None));
        assert!(script.contains("10.0.0.9 git.internal\n"));
        assert!(script.contains("export TEST_LOOPER_MACHINE_ID='i-0abc'"));
        assert!(
            script.contains(r#"export TEST_LOOPER_ARTIFACTS='{"kind":"s3","bucket":"it'\''s"}'"#)
        );
        assert!(
            script.ends_with("exec '/usr/local/bin/test-looper-worker' --cores 4 --ram-gb 16\n")
        );
        let with_binary = run(&machine_script(
            &spec(),
            &worker,
            Some("http://s3/b/w?sig=1"),
        ));
        assert!(with_binary.contains(
            "curl -fsS -o '/usr/local/bin/test-looper-worker'.part 'http://s3/b/w?sig=1'"
        ));
        let shared = BootstrapSpec {
            shares_cores: true,
            ..spec()
        };
        assert!(run(&machine_script(&shared, &worker, None)).ends_with(
            "exec '/usr/local/bin/test-looper-worker' --cores 4 --ram-gb 16 --shares-cores\n"
        ));
        let one_shot = MachineWorker {
            vm_ami: Some("ami-0naked"),
            ..worker
        };
        assert!(run(&machine_script(&shared, &one_shot, None)).ends_with(
            "exec '/usr/local/bin/test-looper-worker' --cores 4 --ram-gb 16 --vm-ami 'ami-0naked'\n"
        ));
    }

    #[test]
    fn the_script_really_runs_and_exports_the_environment() {
        let mut spec = spec();
        spec.host_ips.clear();
        spec.binary_path = "env".into();
        spec.storage_path = std::env::temp_dir()
            .join("tl-bootstrap-test")
            .display()
            .to_string();
        let worker = MachineWorker {
            instance_id: "i-1",
            token: "t",
            cores: 1,
            ram_gb: 1,
            vm_ami: None,
        };
        let script = machine_script(&spec, &worker, None).replace(" --cores 1 --ram-gb 1", "");
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            text.contains("TEST_LOOPER_ARTIFACTS={\"kind\":\"s3\",\"bucket\":\"it's\"}"),
            "{text}"
        );
        assert!(text.contains("TEST_LOOPER_MACHINE_ID=i-1"));
    }
}
