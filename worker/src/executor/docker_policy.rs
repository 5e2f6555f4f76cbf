//! What a job may ask of the Docker engine through its scoped socket (H5). Pure decisions, no
//! I/O: [`route`] sorts a request into an allow-listed [`Endpoint`] (anything else is
//! refused), and the body checks refuse what would reach the host ([`Policy::check_create`]
//! and friends) while labelling what the job creates and adding the sandbox's limits.
//!
//! Allowed: ping, version, info; image list, inspect, history, tag, pull and (classic) build
//! (not from a URL, not on the host network);
//! container list (filtered to the job's own), create, and on its own containers inspect,
//! logs, top, stats, start, stop, restart, kill, pause, unpause, wait, attach, resize, archive
//! (`docker cp`), remove and exec create; exec start, resize and inspect of its own
//! containers' execs; networks and volumes it created (create, list, inspect, remove, and
//! connecting its own containers to its own networks). Everything else (events, system,
//! swarm, plugins, secrets, image removal, commit, update, BuildKit sessions…) is refused.
//!
//! Refused in a container create: `Privileged`, `CapAdd`, devices, `SecurityOpt` other than
//! `no-new-privileges`, `Sysctls`, host namespaces (`host` pid/ipc/uts/userns/cgroupns/network
//! modes), another job's container as a namespace, `volumes-from` or link, a cgroup parent,
//! another runtime, a volume driver, unmasked `/proc` paths (`ReadonlyPaths`/`MaskedPaths`),
//! shared mount propagation, and any bind of a host path except the job's own mounted
//! directories (given by their host path or by their `/test_looper/...` path, which is
//! rewritten to the host path). Named volumes and networks must be the job's own.

use super::sandbox::Sandbox;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;

/// A refused request: HTTP status and message for the `{"message": …}` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

impl Refusal {
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: 403,
            message: format!("test-looper docker proxy: {}", message.into()),
        }
    }
}

/// Something a request names that must belong to the job (carry its run label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Container(String),
    Network(String),
    Volume(String),
}

/// What kind of JSON body rewrite an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyCheck {
    /// Streamed to the engine untouched (no body, or a build context / archive).
    Stream,
    ContainerCreate,
    NetworkCreate,
    VolumeCreate,
    ExecCreate,
    NetworkConnect,
}

/// An allowed request, with what the proxy must check or rewrite before forwarding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub body: BodyCheck,
    /// The object the path names, which must be the job's own; the forwarded path uses its
    /// full id instead of the name given.
    pub target: Option<Reference>,
    /// An exec id whose container must be the job's own.
    pub exec: Option<String>,
    /// List filters to force to the job's label.
    pub filtered_list: bool,
    /// The engine may take the connection over (attach, exec start).
    pub hijacks: bool,
    /// Path after the version prefix, with `{}` where the target's full id goes.
    pub path_template: String,
    /// The version prefix (`/v1.47`) or empty.
    pub version: String,
}

/// Splits `/v1.47/containers/json` into (`/v1.47`, `/containers/json`).
fn split_version(path: &str) -> (&str, &str) {
    if let Some(rest) = path.strip_prefix("/v") {
        let end = rest.find('/').unwrap_or(rest.len());
        let version = &rest[..end];
        if !version.is_empty() && version.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return (&path[..end + 2], &path[end + 2..]);
        }
    }
    ("", path)
}

/// Sorts `method path` into an allowed endpoint, or refuses it.
pub fn route(method: &str, path: &str) -> Result<Endpoint, Refusal> {
    let refused = || Refusal::forbidden(format!("{method} {path} is not allowed for tests"));
    // Only plain path characters: no percent-encoding (the engine would decode it after our
    // routing), no dot segments, no empty segments.
    if !path.starts_with('/')
        || !path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._:@+-".contains(&b))
    {
        return Err(refused());
    }
    let (version, rest) = split_version(path);
    let segments: Vec<&str> = rest.split('/').skip(1).collect();
    if segments
        .iter()
        .any(|s| s.is_empty() || *s == "." || *s == "..")
    {
        return Err(refused());
    }
    let mut endpoint = Endpoint {
        body: BodyCheck::Stream,
        target: None,
        exec: None,
        filtered_list: false,
        hijacks: false,
        path_template: rest.to_string(),
        version: version.to_string(),
    };
    let target = |endpoint: &mut Endpoint, reference: Reference, tail: &str| {
        endpoint.target = Some(reference);
        endpoint.path_template = tail.to_string();
    };
    match (method, segments.as_slice()) {
        ("GET" | "HEAD", ["_ping"]) | ("GET", ["version"] | ["info"]) => {}
        ("GET", ["images", "json"]) | ("POST", ["images", "create"]) => {}
        ("GET", ["images", .., "json" | "history"]) if segments.len() > 2 => {}
        ("POST", ["images", .., "tag"]) if segments.len() > 2 => {}
        ("POST", ["build"]) => {}
        ("GET", ["containers", "json"]) => endpoint.filtered_list = true,
        ("POST", ["containers", "create"]) => endpoint.body = BodyCheck::ContainerCreate,
        ("DELETE", ["containers", id]) => target(
            &mut endpoint,
            Reference::Container(id.to_string()),
            "/containers/{}",
        ),
        (_, ["containers", id, action]) => {
            let allowed = match method {
                "GET" => matches!(*action, "json" | "logs" | "top" | "stats" | "archive"),
                "HEAD" | "PUT" => *action == "archive",
                "POST" => matches!(
                    *action,
                    "start"
                        | "stop"
                        | "restart"
                        | "kill"
                        | "pause"
                        | "unpause"
                        | "wait"
                        | "attach"
                        | "resize"
                        | "exec"
                ),
                _ => false,
            };
            if !allowed {
                return Err(refused());
            }
            if *action == "exec" {
                endpoint.body = BodyCheck::ExecCreate;
            }
            endpoint.hijacks = *action == "attach";
            let tail = format!("/containers/{{}}/{action}");
            target(&mut endpoint, Reference::Container(id.to_string()), &tail);
        }
        ("POST", ["exec", id, action @ ("start" | "resize")])
        | ("GET", ["exec", id, action @ "json"]) => {
            endpoint.exec = Some(id.to_string());
            endpoint.hijacks = *action == "start";
        }
        ("GET", ["networks"]) => endpoint.filtered_list = true,
        ("POST", ["networks", "create"]) => endpoint.body = BodyCheck::NetworkCreate,
        ("GET" | "DELETE", ["networks", id]) => target(
            &mut endpoint,
            Reference::Network(id.to_string()),
            "/networks/{}",
        ),
        ("POST", ["networks", id, action @ ("connect" | "disconnect")]) => {
            endpoint.body = BodyCheck::NetworkConnect;
            let tail = format!("/networks/{{}}/{action}");
            target(&mut endpoint, Reference::Network(id.to_string()), &tail);
        }
        ("GET", ["volumes"]) => endpoint.filtered_list = true,
        ("POST", ["volumes", "create"]) => endpoint.body = BodyCheck::VolumeCreate,
        ("GET" | "DELETE", ["volumes", name]) => target(
            &mut endpoint,
            Reference::Volume(name.to_string()),
            "/volumes/{}",
        ),
        _ => return Err(refused()),
    }
    Ok(endpoint)
}

/// The job's scope: its label, the labels added to what it creates, the host directories it
/// may bind, and the sandbox limits added to its containers.
#[derive(Debug, Clone)]
pub struct Policy {
    pub run_label: (String, String),
    pub labels: HashMap<String, String>,
    /// (host directory, container path) pairs a created container may bind.
    pub bind_sources: Vec<(PathBuf, String)>,
    pub sandbox: Sandbox,
}

fn forbid<T>(message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal::forbidden(message))
}

fn is_set(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    }
}

fn text<'a>(object: &'a Map<String, Value>, key: &str) -> &'a str {
    object.get(key).and_then(Value::as_str).unwrap_or("")
}

fn strings(value: Option<&Value>) -> Result<Vec<String>, Refusal> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| Refusal::forbidden("a list holds a non-string"))
            })
            .collect(),
        Some(_) => forbid("a list field is not a list"),
    }
}

fn object(body: &[u8]) -> Result<Map<String, Value>, Refusal> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(Refusal {
            status: 400,
            message: "test-looper docker proxy: the body is not a JSON object".into(),
        }),
    }
}

impl Policy {
    fn merge_labels(&self, object: &mut Map<String, Value>) {
        let entry = object
            .entry("Labels")
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        if let Some(existing) = entry.as_object_mut() {
            for (name, value) in &self.labels {
                existing.insert(name.clone(), Value::String(value.clone()));
            }
            existing.insert(
                self.run_label.0.clone(),
                Value::String(self.run_label.1.clone()),
            );
        }
    }

    /// The host directory a bind source names, when it is one of the job's own.
    fn bind_source(&self, source: &str) -> Option<String> {
        let trimmed = if source.len() > 1 {
            source.trim_end_matches('/')
        } else {
            source
        };
        self.bind_sources.iter().find_map(|(host, container)| {
            (trimmed == container || std::path::Path::new(trimmed) == host)
                .then(|| host.display().to_string())
        })
    }

    fn check_binds(
        &self,
        host: &mut Map<String, Value>,
        references: &mut Vec<Reference>,
    ) -> Result<(), Refusal> {
        let mut rewritten = Vec::new();
        for bind in strings(host.get("Binds"))? {
            let mut parts: Vec<&str> = bind.split(':').collect();
            if parts.len() < 2 || parts.len() > 3 {
                return forbid(format!("bind {bind:?} is not source:target[:options]"));
            }
            if let Some(options) = parts.get(2) {
                if options
                    .split(',')
                    .any(|o| o.contains("shared") || o.contains("slave"))
                {
                    return forbid(format!("bind {bind:?}: only private mount propagation"));
                }
            }
            let source = parts[0];
            let host_source;
            if source.starts_with('/') {
                host_source = self.bind_source(source).ok_or_else(|| {
                    Refusal::forbidden(format!(
                        "bind {bind:?}: only the job's own directories can be bound \
                         (/test_looper/test_inputs, scratch, output, build_output, ccache, src), \
                         or named volumes the job created"
                    ))
                })?;
                parts[0] = &host_source;
            } else {
                references.push(Reference::Volume(source.to_string()));
            }
            rewritten.push(Value::String(parts.join(":")));
        }
        if host.contains_key("Binds") {
            host.insert("Binds".into(), Value::Array(rewritten));
        }
        let Some(mounts) = host.get_mut("Mounts") else {
            return Ok(());
        };
        let Some(mounts) = mounts.as_array_mut() else {
            return if mounts.is_null() {
                Ok(())
            } else {
                forbid("Mounts is not a list")
            };
        };
        for mount in mounts {
            let Some(mount) = mount.as_object_mut() else {
                return forbid("a mount is not an object");
            };
            let source = text(mount, "Source").to_string();
            match text(mount, "Type") {
                "bind" => {
                    let host_source = self.bind_source(&source).ok_or_else(|| {
                        Refusal::forbidden(format!(
                            "bind mount of {source:?}: only the job's own directories can be bound"
                        ))
                    })?;
                    if let Some(Value::Object(options)) = mount.get("BindOptions") {
                        if !matches!(text(options, "Propagation"), "" | "private" | "rprivate") {
                            return forbid("bind mounts: only private mount propagation");
                        }
                    }
                    mount.insert("Source".into(), Value::String(host_source));
                }
                "volume" => {
                    if let Some(Value::Object(options)) = mount.get("VolumeOptions") {
                        if is_set(options.get("DriverConfig")) {
                            return forbid("volume mounts: no volume driver configuration");
                        }
                    }
                    if !source.is_empty() {
                        references.push(Reference::Volume(source));
                    }
                }
                "tmpfs" => {}
                other => return forbid(format!("mounts of type {other:?} are not allowed")),
            }
        }
        Ok(())
    }

    /// Checks a container create body and returns it labelled and hardened, with the objects
    /// it names that must be the job's own.
    pub fn check_create(&self, body: &[u8]) -> Result<(Vec<u8>, Vec<Reference>), Refusal> {
        let mut object = object(body)?;
        let mut references = Vec::new();
        self.merge_labels(&mut object);
        let host = object
            .entry("HostConfig")
            .or_insert_with(|| Value::Object(Map::new()));
        if host.is_null() {
            *host = Value::Object(Map::new());
        }
        let Some(host) = host.as_object_mut() else {
            return forbid("HostConfig is not an object");
        };
        for (key, what) in [
            ("Privileged", "privileged containers"),
            ("CapAdd", "added capabilities"),
            ("Devices", "devices"),
            ("DeviceRequests", "device requests"),
            ("DeviceCgroupRules", "device cgroup rules"),
            ("Sysctls", "sysctls"),
            ("CgroupParent", "a cgroup parent"),
            ("Cgroup", "another container's cgroup"),
            ("VolumeDriver", "volume drivers"),
            ("OomKillDisable", "disabling the OOM killer"),
        ] {
            if is_set(host.get(key)) {
                return forbid(format!("{what} ({key}) are not allowed for tests"));
            }
        }
        for key in ["ReadonlyPaths", "MaskedPaths"] {
            if host.get(key).is_some_and(|v| !v.is_null()) {
                return forbid(format!("{key} cannot be changed by tests"));
            }
        }
        if !matches!(text(host, "Runtime"), "" | "runc") {
            return forbid("only the default container runtime is allowed");
        }
        for option in strings(host.get("SecurityOpt"))? {
            let normalized = option.replace('=', ":");
            if !matches!(
                normalized.as_str(),
                "no-new-privileges" | "no-new-privileges:true"
            ) {
                return forbid(format!(
                    "security option {option:?} is not allowed (only no-new-privileges)"
                ));
            }
        }
        for key in [
            "PidMode",
            "IpcMode",
            "NetworkMode",
            "UTSMode",
            "UsernsMode",
            "CgroupnsMode",
        ] {
            let mode = text(host, key);
            if mode == "host" {
                return forbid(format!("{key} host is not allowed for tests"));
            }
            if let Some(id) = mode.strip_prefix("container:") {
                if matches!(key, "PidMode" | "IpcMode" | "NetworkMode") {
                    references.push(Reference::Container(id.to_string()));
                    continue;
                }
            }
            let allowed = match key {
                "PidMode" | "UTSMode" | "UsernsMode" => mode.is_empty(),
                "IpcMode" => matches!(mode, "" | "private" | "shareable" | "none"),
                "CgroupnsMode" => matches!(mode, "" | "private"),
                _ => {
                    if !matches!(mode, "" | "default" | "bridge" | "none") {
                        references.push(Reference::Network(mode.to_string()));
                    }
                    true
                }
            };
            if !allowed {
                return forbid(format!("{key} {mode:?} is not allowed for tests"));
            }
        }
        for entry in strings(host.get("VolumesFrom"))? {
            let id = entry.split(':').next().unwrap_or_default();
            references.push(Reference::Container(id.to_string()));
        }
        for link in strings(host.get("Links"))? {
            let name = link.split(':').next().unwrap_or_default();
            references.push(Reference::Container(
                name.trim_start_matches('/').to_string(),
            ));
        }
        self.check_binds(host, &mut references)?;
        self.sandbox.harden_json(host);
        if let Some(Value::Object(networking)) = object.get("NetworkingConfig") {
            if let Some(Value::Object(endpoints)) = networking.get("EndpointsConfig") {
                for name in endpoints.keys() {
                    if !matches!(name.as_str(), "default" | "bridge" | "none") {
                        references.push(Reference::Network(name.clone()));
                    }
                }
            }
        }
        Ok((serde_json::to_vec(&object).unwrap_or_default(), references))
    }

    /// Checks an exec create body (no privileged execs).
    pub fn check_exec(&self, body: &[u8]) -> Result<Vec<u8>, Refusal> {
        let object = object(body)?;
        if is_set(object.get("Privileged")) {
            return forbid("privileged execs are not allowed for tests");
        }
        Ok(body.to_vec())
    }

    /// Checks a network create body: a plain bridge network, labelled.
    pub fn check_network(&self, body: &[u8]) -> Result<Vec<u8>, Refusal> {
        let mut object = object(body)?;
        if !matches!(text(&object, "Driver"), "" | "bridge") {
            return forbid("only bridge networks can be created by tests");
        }
        for key in ["Ingress", "ConfigFrom", "ConfigOnly", "Options"] {
            if is_set(object.get(key)) {
                return forbid(format!("network option {key} is not allowed for tests"));
            }
        }
        self.merge_labels(&mut object);
        Ok(serde_json::to_vec(&object).unwrap_or_default())
    }

    /// Checks a volume create body: a plain local volume (no driver options, which could bind
    /// a host path), labelled.
    pub fn check_volume(&self, body: &[u8]) -> Result<Vec<u8>, Refusal> {
        let mut object = object(body)?;
        if !matches!(text(&object, "Driver"), "" | "local") {
            return forbid("only local volumes can be created by tests");
        }
        for key in ["DriverOpts", "ClusterVolumeSpec"] {
            if is_set(object.get(key)) {
                return forbid(format!("volume option {key} is not allowed for tests"));
            }
        }
        self.merge_labels(&mut object);
        Ok(serde_json::to_vec(&object).unwrap_or_default())
    }

    /// The container a network connect/disconnect body names.
    pub fn connect_target(&self, body: &[u8]) -> Result<Reference, Refusal> {
        let object = object(body)?;
        Ok(Reference::Container(text(&object, "Container").to_string()))
    }

    /// The query of a list request with its `filters` forced to the job's label.
    pub fn filtered_query(&self, query: &str) -> Result<String, Refusal> {
        let label = format!("{}={}", self.run_label.0, self.run_label.1);
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut filters = Map::new();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if key == "filters" {
                match serde_json::from_str::<Value>(&value) {
                    Ok(Value::Object(given)) => filters = given,
                    _ => return forbid("filters is not a JSON object"),
                }
            } else {
                pairs.push((key.into_owned(), value.into_owned()));
            }
        }
        // Both filter shapes: {"label": ["a=b"]} and the older {"label": {"a=b": true}}.
        let mut labels: Vec<Value> = match filters.remove("label") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items,
            Some(Value::Object(map)) => map.into_iter().map(|(k, _)| Value::String(k)).collect(),
            Some(_) => return forbid("the label filter is not a list"),
        };
        labels.push(Value::String(label));
        filters.insert("label".into(), Value::Array(labels));
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in &pairs {
            out.append_pair(key, value);
        }
        out.append_pair("filters", &Value::Object(filters).to_string());
        Ok(out.finish())
    }

    /// Refuses build and image-create options that reach the host: the host network, a
    /// cgroup parent, and URLs the engine would fetch from the host's network (`remote`,
    /// `fromSrc`), which could reach services listening on the host's loopback.
    pub fn check_query(&self, endpoint: &Endpoint, query: &str) -> Result<(), Refusal> {
        if !matches!(endpoint.path_template.as_str(), "/build" | "/images/create") {
            return Ok(());
        }
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "remote" if !value.is_empty() => {
                    return forbid("builds from a remote URL are not allowed for tests")
                }
                "fromSrc" if !value.is_empty() && value != "-" => {
                    return forbid("image imports from a URL are not allowed for tests")
                }
                "networkmode" if value == "host" => {
                    return forbid("builds with the host network are not allowed for tests")
                }
                "cgroupparent" if !value.is_empty() => {
                    return forbid("builds with a cgroup parent are not allowed for tests")
                }
                "version" if value == "2" => {
                    return forbid(
                        "BuildKit builds are not available through the test socket; \
                         use the classic builder (DOCKER_BUILDKIT=0)",
                    )
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            run_label: ("test-looper.run".into(), "r1".into()),
            labels: HashMap::from([("test-looper.scope".into(), "s".into())]),
            bind_sources: vec![(
                PathBuf::from("/w/runs/r1/test_inputs"),
                "/test_looper/test_inputs".into(),
            )],
            sandbox: Sandbox::default(),
        }
    }

    fn refused(body: &str) -> String {
        policy()
            .check_create(body.as_bytes())
            .expect_err(body)
            .message
    }

    #[test]
    fn routes_are_allow_listed() {
        assert!(route("GET", "/v1.47/_ping").is_ok());
        assert!(route("GET", "/images/docker.io/library/x:1/json").is_ok());
        let create = route("POST", "/v1.47/containers/create").unwrap();
        assert_eq!(create.body, BodyCheck::ContainerCreate);
        assert_eq!(create.version, "/v1.47");
        let attach = route("POST", "/v1.47/containers/abc/attach").unwrap();
        assert!(attach.hijacks);
        assert_eq!(attach.target, Some(Reference::Container("abc".into())));
        assert_eq!(attach.path_template, "/containers/{}/attach");
        let exec = route("POST", "/exec/e1/start").unwrap();
        assert!(exec.hijacks && exec.exec.as_deref() == Some("e1"));
        for (method, path) in [
            ("GET", "/events"),
            ("POST", "/containers/abc/update"),
            ("POST", "/containers/abc/commit"),
            ("DELETE", "/images/x"),
            ("GET", "/containers/a%2F..%2Fb/json"),
            ("GET", "/containers/../json"),
            ("POST", "/session"),
            ("POST", "/swarm/init"),
            ("GET", "/system/df"),
        ] {
            assert_eq!(
                route(method, path).unwrap_err().status,
                403,
                "{method} {path}"
            );
        }
    }

    #[test]
    fn escapes_in_create_bodies_are_refused() {
        assert!(refused(r#"{"Image":"x","HostConfig":{"Privileged":true}}"#).contains("Privileged"));
        assert!(refused(r#"{"HostConfig":{"Binds":["/:/host"]}}"#).contains("own directories"));
        assert!(refused(
            r#"{"HostConfig":{"Mounts":[{"Type":"bind","Source":"/etc","Target":"/e"}]}}"#
        )
        .contains("own directories"));
        assert!(refused(r#"{"HostConfig":{"PidMode":"host"}}"#).contains("PidMode"));
        assert!(refused(r#"{"HostConfig":{"NetworkMode":"host"}}"#).contains("NetworkMode"));
        assert!(refused(r#"{"HostConfig":{"UsernsMode":"host"}}"#).contains("UsernsMode"));
        assert!(refused(r#"{"HostConfig":{"CapAdd":["SYS_ADMIN"]}}"#).contains("CapAdd"));
        assert!(
            refused(r#"{"HostConfig":{"Devices":[{"PathOnHost":"/dev/sda"}]}}"#)
                .contains("Devices")
        );
        assert!(
            refused(r#"{"HostConfig":{"SecurityOpt":["seccomp=unconfined"]}}"#).contains("seccomp")
        );
        assert!(refused(r#"{"HostConfig":{"Sysctls":{"kernel.x":"1"}}}"#).contains("Sysctls"));
        assert!(refused(r#"{"HostConfig":{"MaskedPaths":[]}}"#).contains("MaskedPaths"));
        assert!(
            refused(r#"{"HostConfig":{"Binds":["/test_looper/test_inputs:/x:rshared"]}}"#)
                .contains("propagation")
        );
        assert!(refused(r#"[1]"#).contains("JSON object"));
    }

    #[test]
    fn allowed_creates_are_labelled_hardened_and_rewritten() {
        let (body, references) = policy()
            .check_create(
                br#"{"Image":"x","HostConfig":{"Binds":["/test_looper/test_inputs:/src:ro","cache:/c"],
                     "NetworkMode":"mynet","PidMode":"container:abc"}}"#,
            )
            .unwrap();
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["Labels"]["test-looper.run"], "r1");
        assert_eq!(value["Labels"]["test-looper.scope"], "s");
        assert_eq!(
            value["HostConfig"]["Binds"][0],
            "/w/runs/r1/test_inputs:/src:ro"
        );
        assert_eq!(value["HostConfig"]["PidsLimit"], 4096);
        assert_eq!(
            value["HostConfig"]["SecurityOpt"][0],
            "no-new-privileges:true"
        );
        assert_eq!(
            references,
            vec![
                Reference::Container("abc".into()),
                Reference::Network("mynet".into()),
                Reference::Volume("cache".into()),
            ]
        );
    }

    #[test]
    fn list_filters_are_forced_to_the_run() {
        let policy = policy();
        let query = policy
            .filtered_query("all=1&filters=%7B%22label%22%3A%5B%22a%3Db%22%5D%7D")
            .unwrap();
        let pairs: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(pairs["all"], "1");
        let filters: Value = serde_json::from_str(&pairs["filters"]).unwrap();
        assert_eq!(
            filters["label"],
            serde_json::json!(["a=b", "test-looper.run=r1"])
        );
        let query = policy.filtered_query("").unwrap();
        assert!(query.contains("test-looper.run%3Dr1"), "{query}");
    }

    #[test]
    fn volumes_networks_and_builds_stay_plain() {
        let policy = policy();
        assert!(policy
            .check_volume(br#"{"Name":"v","DriverOpts":{"type":"none","o":"bind","device":"/"}}"#)
            .is_err());
        let volume: Value =
            serde_json::from_slice(&policy.check_volume(br#"{"Name":"v"}"#).unwrap()).unwrap();
        assert_eq!(volume["Labels"]["test-looper.run"], "r1");
        assert!(policy
            .check_network(br#"{"Name":"n","Driver":"macvlan"}"#)
            .is_err());
        assert!(policy
            .check_exec(br#"{"Cmd":["sh"],"Privileged":true}"#)
            .is_err());
        let build = route("POST", "/build").unwrap();
        assert!(policy.check_query(&build, "t=x&networkmode=host").is_err());
        assert!(policy
            .check_query(&build, "remote=http://127.0.0.1:9081/")
            .is_err());
        assert!(policy
            .check_query(&build, "t=x&dockerfile=Dockerfile")
            .is_ok());
        let import = route("POST", "/images/create").unwrap();
        assert!(policy
            .check_query(&import, "fromSrc=http://127.0.0.1/x")
            .is_err());
        assert!(policy
            .check_query(&import, "fromImage=busybox&tag=1")
            .is_ok());
    }
}
