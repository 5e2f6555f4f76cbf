//! Fail closed (H1, M7): configuration the server parses but does not act on, and settings
//! that would leave it open, are refused by `--check-config` and at start with a message that
//! names the key. Nothing here is silently ignored: a key listed below either does what its
//! documentation says or stops the server from starting.

use super::{Config, MachineManagementSection, SourceControlSection};

/// Shortest `auth.worker_token` accepted (a generated token is 64 hex characters).
pub const MIN_WORKER_TOKEN_CHARS: usize = 32;

/// One refused key: the dotted key and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

fn refuse(refusals: &mut Vec<Refusal>, key: &str, message: impl Into<String>) {
    refusals.push(Refusal {
        key: key.into(),
        message: message.into(),
    });
}

/// Every refused key of `config` (empty when it may run).
pub fn refusals(config: &Config) -> Vec<Refusal> {
    let mut refusals = Vec::new();
    not_implemented(config, &mut refusals);
    worker_token(
        config.auth.worker_token.as_ref().map(|t| t.expose()),
        &mut refusals,
    );
    allowed_hosts(&config.server.allowed_hosts, &mut refusals);
    if let Err(message) = config.statistics.quarantine.policy() {
        refuse(&mut refusals, "statistics.quarantine", message);
    }
    if let Err(errors) = config.auth.validate() {
        for error in errors {
            refuse(&mut refusals, &error.key, error.message);
        }
    }
    server_access(config, &mut refusals);
    refusals
}

/// Keys that are parsed (so that old files still read) but that nothing acts on yet.
fn not_implemented(config: &Config, refusals: &mut Vec<Refusal>) {
    let SourceControlSection { github, gitlab, .. } = &config.source_control;
    if github.as_ref().is_some_and(|g| g.oauth.is_some()) {
        refuse(
            refusals,
            "source_control.github.oauth",
            "browser login is configured under auth.providers (see docs/authentication.md); remove this key",
        );
    }
    if gitlab.as_ref().is_some_and(|g| g.oauth.is_some()) {
        refuse(
            refusals,
            "source_control.gitlab.oauth",
            "browser login is configured under auth.providers (see docs/authentication.md); remove this key",
        );
    }
    let MachineManagementSection { aws, .. } = &config.machine_management;
    if let Some(aws) = aws {
        aws_pool(config, aws, refusals);
    }
    let http = &config.http_server;
    for (key, list) in [
        (
            "http_server.repo_prefixes_to_suppress",
            &http.repo_prefixes_to_suppress,
        ),
        (
            "http_server.repo_prefixes_to_shorten",
            &http.repo_prefixes_to_shorten,
        ),
    ] {
        if !list.is_empty() {
            refuse(
                refusals,
                key,
                "is not implemented yet (repo names are shown in full); remove the key",
            );
        }
    }
}

/// M7: an empty or short token would let anyone act as a worker.
fn worker_token(token: Option<&str>, refusals: &mut Vec<Refusal>) {
    let Some(token) = token else {
        return;
    };
    let key = "auth.worker_token";
    if token.is_empty() {
        refuse(
            refusals,
            key,
            "is empty: remove the key (a random token is drawn at start) or give at least \
             32 characters",
        );
    } else if token.chars().count() < MIN_WORKER_TOKEN_CHARS {
        refuse(
            refusals,
            key,
            format!(
                "is {} characters long; give at least {MIN_WORKER_TOKEN_CHARS} (for example \
                 `openssl rand -hex 32`)",
                token.chars().count()
            ),
        );
    } else if !token.chars().all(|c| c.is_ascii_graphic()) {
        refuse(
            refusals,
            key,
            "may only contain printable ASCII characters without spaces",
        );
    }
}

/// The listener: who is authenticated on a non-loopback bind (H1), TLS files, the public URL
/// and the trusted proxies.
fn server_access(config: &Config, refusals: &mut Vec<Refusal>) {
    let server = &config.server;
    let open = config.auth.mode == test_looper_auth::AuthMode::None;
    if open && !is_loopback_bind(&server.bind) && !server.allow_unauthenticated_non_loopback {
        refuse(
            refusals,
            "server.bind",
            format!(
                "`{}` is not a loopback address and nobody is authenticated \
                 (auth.mode: none): anyone who reaches the port can act and open root shells \
                 in deployments. Set auth.mode to write or full (docs/authentication.md), bind \
                 127.0.0.1 behind a reverse proxy that authenticates, or set \
                 server.allow_unauthenticated_non_loopback: true to accept this",
                server.bind
            ),
        );
    }
    if let Some(tls) = &server.tls {
        if let Err(err) = crate::access::tls::server_config(tls) {
            refuse(refusals, "server.tls", err.to_string());
        }
    }
    if let Some(url) = &server.public_url {
        let parsed = url::Url::parse(url);
        let ok = parsed.as_ref().is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.path() == "/"
                && u.query().is_none()
        });
        if !ok {
            refuse(
                refusals,
                "server.public_url",
                format!("`{url}` is not an http(s) URL of a host without a path"),
            );
        }
    }
    for proxy in &server.trusted_proxies {
        if crate::access::client_ip::parse_network(proxy).is_none() {
            refuse(
                refusals,
                "server.trusted_proxies",
                format!("`{proxy}` is not an IP address or a CIDR range (10.0.0.0/8)"),
            );
        }
    }
}

fn allowed_hosts(hosts: &[String], refusals: &mut Vec<Refusal>) {
    for host in hosts {
        if parse_authority(host).is_none() {
            refuse(
                refusals,
                "server.allowed_hosts",
                format!("`{host}` is not a host name or `host:port` (no scheme, no path)"),
            );
        }
    }
}

/// `name` or `name:port` as a lower-case authority (IPv6 in brackets), or `None` when it is
/// anything else (a URL, a path, userinfo, a wildcard).
pub fn parse_authority(text: &str) -> Option<String> {
    if text.is_empty() || text.contains(['/', '@', '?', '#', '*', ' ']) {
        return None;
    }
    let url = url::Url::parse(&format!("http://{text}/")).ok()?;
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None if text.ends_with(":80") => format!("{host}:80"),
        None => host.to_string(),
    })
}

/// Whether the listener address only accepts connections from this host.
pub fn is_loopback_bind(bind: &str) -> bool {
    let bare = bind.trim_start_matches('[').trim_end_matches(']');
    if bare.eq_ignore_ascii_case("localhost") {
        return true;
    }
    bare.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// What the EC2 pool cannot honour, refused rather than ignored.
fn aws_pool(config: &Config, aws: &super::AwsMachines, refusals: &mut Vec<Refusal>) {
    use crate::machines::ec2::settings;
    if aws.windows_ami.is_some() {
        refuse(
            refusals,
            "machine_management.aws.windows_ami",
            "the pool boots Linux workers only; remove the key",
        );
    }
    if config.artifacts.s3.is_none() {
        refuse(
            refusals,
            "machine_management.aws",
            "pool machines store artifacts themselves, so artifacts must be in S3 (artifacts.s3)",
        );
    }
    if aws.reconcile_interval_seconds == 0
        || aws.reconcile_interval_seconds > settings::MAX_RECONCILE_INTERVAL_SECONDS
    {
        refuse(
            refusals,
            "machine_management.aws.reconcile_interval_seconds",
            "must be between 1 and 10",
        );
    }
    let server_url = aws
        .server_url
        .clone()
        .unwrap_or_else(|| config.server.public_url());
    let loopback = url::Url::parse(&server_url)
        .ok()
        .and_then(|url| url.host_str().map(str::to_string))
        .is_none_or(|host| {
            host == "localhost"
                || host
                    .trim_matches(|c| c == '[' || c == ']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
    if loopback {
        refuse(
            refusals,
            "machine_management.aws.server_url",
            format!(
                "machines cannot reach {server_url}; set server_url (or server.public_url) to an \
                 address they reach"
            ),
        );
    }
    if server_url.starts_with("https://") {
        refuse(
            refusals,
            "machine_management.aws.server_url",
            "workers connect over plain http in this version (docs/workers.md#tls); give the \
             private http address machines reach",
        );
    }
    let timeout =
        std::time::Duration::from_secs(config.machine_management.heartbeat_timeout_seconds);
    if let Err(error) = settings::pool_settings(aws, "owner-checked-at-start", timeout) {
        refuse(refusals, "machine_management.aws", error.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_are_names_with_an_optional_port() {
        assert_eq!(
            parse_authority("CI.example.com").as_deref(),
            Some("ci.example.com")
        );
        assert_eq!(
            parse_authority("ci.example.com:8443").as_deref(),
            Some("ci.example.com:8443")
        );
        assert_eq!(parse_authority("[::1]:9081").as_deref(), Some("[::1]:9081"));
        assert_eq!(parse_authority("10.0.0.5").as_deref(), Some("10.0.0.5"));
        for bad in [
            "",
            "https://ci.example.com",
            "ci/x",
            "u@ci",
            "*.example.com",
            "a b",
        ] {
            assert_eq!(parse_authority(bad), None, "{bad}");
        }
    }

    #[test]
    fn loopback_binds() {
        for bind in [
            "127.0.0.1",
            "127.0.0.2",
            "::1",
            "[::1]",
            "localhost",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_loopback_bind(bind), "{bind}");
        }
        for bind in ["0.0.0.0", "::", "10.0.0.5", "ci.example.com", ""] {
            assert!(!is_loopback_bind(bind), "{bind}");
        }
    }
}
