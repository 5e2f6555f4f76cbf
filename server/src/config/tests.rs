//! Tests of configuration loading against the shipped examples and common mistakes.

use super::*;

const MINIMAL: &str = r#"
server:
  data_dir: /tmp/tl
redis:
  url: redis://127.0.0.1:6379/0
source_control:
  local:
    path_to_repos: /srv/repos
artifacts:
  local_disk:
    path: /srv/artifacts
machine_management:
  local_docker:
    local_storage_path: /srv/scratch
    limits: {max_workers: 4}
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_text(text, |_| None)
}

#[test]
fn minimal_config_has_defaults() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.server.http_port, 9081);
    assert_eq!(config.auth.mode, test_looper_auth::AuthMode::None);
    let local = config.machine_management.local_docker.unwrap();
    assert_eq!(local.limits.max_workers, 4);
    assert_eq!(local.docker_scope, "test_looper");
}

#[test]
fn misspelled_key_is_named_with_its_line() {
    let text = MINIMAL.replace("max_workers", "max_wrokers");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("max_wrokers"), "{err}");
    assert!(err.contains("line 15"), "{err}");
}

#[test]
fn misspelled_section_is_named() {
    let text = MINIMAL.replace("artifacts:", "artefacts:");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("artefacts"), "{err}");
}

#[test]
fn two_alternatives_are_rejected() {
    let text = format!("{MINIMAL}\n").replace(
        "  local_disk:\n    path: /srv/artifacts\n",
        "  local_disk:\n    path: /srv/artifacts\n  s3: {bucket: b, region: us-east-1}\n",
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("exactly one of local_disk, s3"), "{err}");
}

#[test]
fn environment_variables_are_expanded() {
    let text = MINIMAL.replace("/srv/repos", "${REPOS}");
    let config = Config::from_text(&text, |name| (name == "REPOS").then(|| "/x/y".into())).unwrap();
    assert_eq!(
        config.source_control.local.unwrap().path_to_repos,
        std::path::PathBuf::from("/x/y")
    );
}

#[test]
fn github_owner_must_have_a_kind() {
    let text = MINIMAL.replace(
        "  local:\n    path_to_repos: /srv/repos\n",
        "  github: {owner: ufora, access_token: t}\n",
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("org:<name>"), "{err}");
}

#[test]
fn shipped_examples_are_valid() {
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    for name in ["config.example.yml", "config.aws.example.yml"] {
        let text = std::fs::read_to_string(deploy.join(name)).unwrap();
        Config::from_text(&text, |var| {
            Some(match var {
                "TEST_LOOPER_WORKER_TOKEN" => "w".repeat(64),
                _ => "x".into(),
            })
        })
        .unwrap_or_else(|err| panic!("{name}: {err}"));
    }
}

/// The error for `MINIMAL` with `yaml` appended under `section:` (added when missing).
fn refused(section: &str, yaml: &str) -> String {
    let text = if MINIMAL.contains(&format!("\n{section}:\n")) {
        MINIMAL.replace(
            &format!("\n{section}:\n"),
            &format!("\n{section}:\n{yaml}\n"),
        )
    } else {
        format!("{MINIMAL}{section}:\n{yaml}\n")
    };
    match parse(&text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn keys_nothing_acts_on_are_refused_by_name() {
    let err = refused("http_server", "  repo_prefixes_to_shorten: [org/]");
    assert!(
        err.contains("http_server.repo_prefixes_to_shorten"),
        "{err}"
    );
    let github = MINIMAL.replace(
        "  local:\n    path_to_repos: /srv/repos\n",
        "  github:\n    owner: org:o\n    access_token: t\n    oauth: {client_id: i, client_secret: s, login_url: https://github.com}\n",
    );
    let err = parse(&github).unwrap_err().to_string();
    assert!(
        err.contains(
            "source_control.github.oauth: browser login is configured under auth.providers"
        ),
        "{err}"
    );
    let aws_section = "  aws: {region: r, vpc_id: v, subnet: s, security_group: g, keypair: k, worker_name: w, linux_ami: a, bootstrap_bucket: b, server_url: 'http://10.0.0.5:9081', instance_types: [{instance_type: t, cores: 1, ram_gb: 1, price_per_hour: 0.1}]PACKING}\n";
    let aws = |packing: &str| {
        MINIMAL.replace(
            "  local_docker:\n    local_storage_path: /srv/scratch\n    limits: {max_workers: 4}\n",
            &aws_section.replace("PACKING", packing),
        )
    };
    let err = parse(&aws("")).unwrap_err().to_string();
    assert!(
        err.contains("machine_management.aws: pool machines store artifacts themselves"),
        "{err}"
    );
    let s3 = |text: String| {
        let start = text.find("artifacts:").unwrap();
        let end = start + text[start..].find("\nmachine_management").unwrap();
        format!(
            "{}artifacts:\n  s3: {{bucket: a, region: r}}{}",
            &text[..start],
            &text[end..]
        )
    };
    parse(&s3(aws(""))).unwrap();
    parse(&s3(aws(", packing: shared_cores"))).unwrap();
    let err = parse(&s3(aws(", packing: two_per_box")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("packing"), "{err}");
    let err = parse(&s3(aws("")).replace("http://10.0.0.5:9081", "http://127.0.0.1:9081"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("machines cannot reach http://127.0.0.1:9081"),
        "{err}"
    );
    let err = parse(&s3(aws("")).replace("price_per_hour: 0.1", "price_per_hour: -1"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid price"), "{err}");
    // Empty lists and `mode: none` mean nothing and are accepted.
    let text = format!("{MINIMAL}auth: {{mode: none, static_tokens: []}}\nhttp_server: {{repo_prefixes_to_suppress: []}}\n");
    parse(&text).unwrap();
}

#[test]
fn auth_modes_need_someone_who_can_log_in() {
    let err = refused("auth", "  mode: write");
    assert!(
        err.contains(
            "auth.mode: write needs at least one entry in auth.providers or auth.static_tokens"
        ),
        "{err}"
    );
    let sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let text = format!(
        "{MINIMAL}auth:\n  mode: full\n  static_tokens: [{{name: bot, role: operator, sha256: {sha}}}]\n"
    );
    let config = parse(&text).unwrap();
    assert_eq!(config.auth.mode, test_looper_auth::AuthMode::Full);
    // An authenticated server may listen beyond loopback.
    let text = text.replace("server:\n", "server:\n  bind: 0.0.0.0\n");
    parse(&text).unwrap();
    let err = refused("auth", "  api_tokens: [abc]");
    assert!(err.contains("api_tokens"), "{err}");
}

#[test]
fn tls_files_public_url_and_proxies_are_checked() {
    let err = refused(
        "server",
        "  tls: {cert: /nonexistent/c.pem, key: /nonexistent/k.pem}",
    );
    assert!(
        err.contains("server.tls: cannot read the certificate chain /nonexistent/c.pem"),
        "{err}"
    );
    let err = refused("server", "  public_url: https://ci.example.com/path");
    assert!(err.contains("server.public_url"), "{err}");
    let err = refused("server", "  trusted_proxies: [10.0.0.0/8, proxy.example]");
    assert!(
        err.contains("server.trusted_proxies: `proxy.example`"),
        "{err}"
    );
    let ok = MINIMAL.replace(
        "server:\n",
        "server:\n  public_url: https://ci.example.com\n  trusted_proxies: [10.0.0.0/8, \"::1\"]\n",
    );
    let config = parse(&ok).unwrap();
    assert_eq!(config.server.public_url(), "https://ci.example.com");
}

#[test]
fn every_refused_key_is_named_at_once() {
    let err = refused("auth", "  mode: write\n  worker_token: \"\"");
    for key in ["auth.mode", "auth.worker_token"] {
        assert!(err.contains(key), "{key}: {err}");
    }
}

#[test]
fn worker_tokens_must_be_long() {
    let err = refused("auth", "  worker_token: \"\"");
    assert!(err.contains("auth.worker_token: is empty"), "{err}");
    let err = refused("auth", "  worker_token: short-token");
    assert!(
        err.contains("auth.worker_token: is 11 characters long"),
        "{err}"
    );
    let long = "k".repeat(32);
    let text = format!("{MINIMAL}auth:\n  worker_token: {long}\n");
    let config = parse(&text).unwrap();
    assert_eq!(
        config.auth.worker_token.as_ref().map(|t| t.expose()),
        Some(long.as_str())
    );
}

#[test]
fn non_loopback_binds_need_the_explicit_flag() {
    let err = refused("server", "  bind: 0.0.0.0");
    assert!(
        err.contains("server.bind: `0.0.0.0` is not a loopback address"),
        "{err}"
    );
    assert!(err.contains("allow_unauthenticated_non_loopback"), "{err}");
    let text = MINIMAL.replace(
        "server:\n",
        "server:\n  bind: 0.0.0.0\n  allow_unauthenticated_non_loopback: true\n",
    );
    parse(&text).unwrap();
    let text = MINIMAL.replace("server:\n", "server:\n  bind: \"::1\"\n");
    parse(&text).unwrap();
}

#[test]
fn allowed_hosts_are_names_with_an_optional_port() {
    let text = MINIMAL.replace(
        "server:\n",
        "server:\n  allowed_hosts: [ci.example.com, \"proxy:8443\"]\n",
    );
    parse(&text).unwrap();
    let err = refused("server", "  allowed_hosts: [\"https://ci.example.com\"]");
    assert!(
        err.contains("server.allowed_hosts: `https://ci.example.com`"),
        "{err}"
    );
}

#[test]
fn redis_passwords_are_not_echoed() {
    let text = MINIMAL.replace(
        "redis://127.0.0.1:6379/0",
        "http://user:hunter2@redis:6379/0",
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(!err.contains("hunter2"), "{err}");
    assert!(err.contains("http://***@redis:6379/0"), "{err}");
    assert_eq!(redact_userinfo("redis://:pw@h:1/0"), "redis://***@h:1/0");
    assert_eq!(redact_userinfo("redis://h:1/0"), "redis://h:1/0");
    assert_eq!(
        redact_userinfo("rediss://u:p@w@h/0?x=@"),
        "rediss://***@h/0?x=@"
    );
}

#[test]
fn no_machine_pool_means_workers_started_by_hand() {
    let text = MINIMAL.replace(
        "  local_docker:\n    local_storage_path: /srv/scratch\n    limits: {max_workers: 4}\n",
        "  heartbeat_timeout_seconds: 30\n",
    );
    let config = parse(&text).unwrap();
    assert!(config.machine_management.local_docker.is_none());
    assert!(config.machine_management.aws.is_none());
    let both = MINIMAL.replace(
        "    limits: {max_workers: 4}\n",
        "    limits: {max_workers: 4}\n  aws: {region: r, vpc_id: v, subnet: s, security_group: g, keypair: k, worker_name: w, linux_ami: a, bootstrap_bucket: b, instance_types: [{instance_type: t, cores: 1, ram_gb: 1, price_per_hour: 1}]}\n",
    );
    let err = parse(&both).unwrap_err().to_string();
    assert!(err.contains("at most one of local_docker, aws"), "{err}");
}
