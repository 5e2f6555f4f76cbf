//! What a job's containers may do (H5, L13): whether the install lets a definition have the
//! scoped Docker socket at all, and the limits every container gets, the job's own and those
//! it starts through the socket alike.
//!
//! Every container runs with a pid limit, `no-new-privileges`, no core dumps, and without the
//! capabilities of Docker's default set that tests do not need ([`DROPPED_CAPABILITIES`]:
//! raw sockets, device nodes, file capabilities, audit writes). Capabilities a test commonly
//! needs as root in its own container (`chown`, `setuid`, binding low ports, `chroot`, `kill`)
//! stay.

use bollard::models::HostConfig;
use serde_json::{Map, Value};

/// Default number of processes (threads included) one container may have.
pub const DEFAULT_PIDS_LIMIT: i64 = 4096;

/// Capabilities of Docker's default set that every container loses.
pub const DROPPED_CAPABILITIES: [&str; 4] = ["NET_RAW", "MKNOD", "SETFCAP", "AUDIT_WRITE"];

/// The `SecurityOpt` entry every container gets.
pub const NO_NEW_PRIVILEGES: &str = "no-new-privileges:true";

/// Whether definitions may ask for the scoped Docker socket (`docker_socket: true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DockerSocketPolicy {
    /// Given to the jobs whose definition asks for it (and to no other).
    #[default]
    OptIn,
    /// Never given: a job that asks for it fails with an infrastructure error.
    Forbidden,
}

impl std::str::FromStr for DockerSocketPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "opt-in" | "allow" => Ok(DockerSocketPolicy::OptIn),
            "forbid" | "forbidden" => Ok(DockerSocketPolicy::Forbidden),
            other => Err(format!(
                "unknown docker socket policy {other:?} (use opt-in or forbid)"
            )),
        }
    }
}

/// The worker's sandbox settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sandbox {
    pub docker_socket: DockerSocketPolicy,
    /// Processes per container (`PidsLimit`).
    pub pids_limit: i64,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self {
            docker_socket: DockerSocketPolicy::OptIn,
            pids_limit: DEFAULT_PIDS_LIMIT,
        }
    }
}

impl Sandbox {
    /// The message of a job that asks for the socket on a worker that forbids it.
    pub fn refusal(&self, wants_socket: bool) -> Option<String> {
        (wants_socket && self.docker_socket == DockerSocketPolicy::Forbidden).then(|| {
            "this definition asks for the Docker socket (docker_socket: true), but this worker \
             forbids it (--docker-socket forbid); it was not run"
                .to_string()
        })
    }

    /// Applies the limits to a container's host configuration: the pid limit (a smaller one
    /// already set is kept), `no-new-privileges`, the dropped capabilities and no core dumps.
    pub fn harden(&self, host: &mut HostConfig) {
        let Ok(serde_json::Value::Object(mut json)) = serde_json::to_value(&*host) else {
            return;
        };
        self.harden_json(&mut json);
        if let Ok(hardened) = serde_json::from_value(serde_json::Value::Object(json)) {
            *host = hardened;
        }
    }

    /// [`Sandbox::harden`] on the engine's JSON form of a host configuration (as sent by a
    /// client of the scoped socket; fields this worker does not know are kept).
    pub fn harden_json(&self, host: &mut Map<String, Value>) {
        let limit = match host.get("PidsLimit").and_then(Value::as_i64) {
            Some(limit) if limit > 0 && limit < self.pids_limit => limit,
            _ => self.pids_limit,
        };
        host.insert("PidsLimit".into(), limit.into());
        let options = list(host, "SecurityOpt");
        if !options
            .iter()
            .any(|o| o.as_str() == Some(NO_NEW_PRIVILEGES))
        {
            options.push(NO_NEW_PRIVILEGES.into());
        }
        let dropped = list(host, "CapDrop");
        for capability in DROPPED_CAPABILITIES {
            let present = dropped.iter().any(|c| {
                c.as_str().is_some_and(|c| {
                    c.trim_start_matches("CAP_")
                        .eq_ignore_ascii_case(capability)
                })
            });
            if !present {
                dropped.push(capability.into());
            }
        }
        let ulimits = list(host, "Ulimits");
        ulimits.retain(|u| u.get("Name").and_then(Value::as_str) != Some("core"));
        ulimits.push(serde_json::json!({"Name": "core", "Soft": 0, "Hard": 0}));
    }
}

/// The list at `key` of `object` (made a list when it is missing or not one).
fn list<'a>(object: &'a mut Map<String, Value>, key: &str) -> &'a mut Vec<Value> {
    let entry = object
        .entry(key)
        .or_insert_with(|| Value::Array(Vec::new()));
    if !entry.is_array() {
        *entry = Value::Array(Vec::new());
    }
    match entry {
        Value::Array(items) => items,
        _ => unreachable!("made a list above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardening_adds_limits_and_keeps_stricter_ones() {
        let sandbox = Sandbox::default();
        let mut host = HostConfig {
            pids_limit: Some(10),
            cap_drop: Some(vec!["net_raw".into()]),
            ..Default::default()
        };
        sandbox.harden(&mut host);
        sandbox.harden(&mut host);
        assert_eq!(host.pids_limit, Some(10));
        assert_eq!(host.security_opt, Some(vec![NO_NEW_PRIVILEGES.to_string()]));
        assert_eq!(host.cap_drop.as_ref().map(Vec::len), Some(4));
        assert_eq!(host.ulimits.as_ref().map(Vec::len), Some(1));
        let mut host = HostConfig {
            pids_limit: Some(-1),
            ..Default::default()
        };
        sandbox.harden(&mut host);
        assert_eq!(host.pids_limit, Some(DEFAULT_PIDS_LIMIT));
    }

    #[test]
    fn forbidding_refuses_only_jobs_that_ask() {
        let forbid = Sandbox {
            docker_socket: "forbid".parse().unwrap(),
            ..Sandbox::default()
        };
        assert!(forbid.refusal(true).is_some());
        assert!(forbid.refusal(false).is_none());
        assert!(Sandbox::default().refusal(true).is_none());
        assert!("maybe".parse::<DockerSocketPolicy>().is_err());
    }
}
