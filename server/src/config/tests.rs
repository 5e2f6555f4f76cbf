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
    assert_eq!(config.auth.mode, AuthMode::None);
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
        Config::from_text(&text, |_| Some("x".into()))
            .unwrap_or_else(|err| panic!("{name}: {err}"));
    }
}
