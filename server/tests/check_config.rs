//! `test-looper-server --check-config FILE` accepts good files and names the bad key of others.

use std::process::Command;

fn check(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    std::fs::write(&path, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_test-looper-server"))
        .arg("--check-config")
        .arg(&path)
        .env("TEST_LOOPER_INSTALL", "/tmp/install")
        .env("PROJ_ROOT", "/tmp/proj")
        .env("REDIS_PORT", "1115")
        .env("TEST_LOOPER_WEBHOOK_SECRET", "s")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

fn demo_config() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/demo.config.yml"
    ))
    .unwrap()
}

#[test]
fn the_demo_config_is_valid() {
    let (ok, output) = check(&demo_config());
    assert!(ok, "{output}");
    assert!(output.contains(": ok"), "{output}");
}

#[test]
fn a_misspelled_key_is_rejected_by_name() {
    let (ok, output) = check(&demo_config().replace("idle_timeout_seconds", "idle_timeout_secs"));
    assert!(!ok);
    assert!(output.contains("idle_timeout_secs"), "{output}");
    assert!(output.contains("line"), "{output}");
}

/// The demo config with `yaml` (lines of the `server:` section) added.
fn with_server_lines(yaml: &str) -> String {
    demo_config().replacen("server:\n", &format!("server:\n{yaml}\n"), 1)
}

#[test]
fn keys_the_server_does_not_act_on_are_refused_by_name() {
    let cases = [
        (
            demo_config().replace("  mode: none", "  mode: write"),
            "auth.mode: write needs at least one entry in auth.providers or auth.static_tokens",
        ),
        (
            demo_config().replace("  mode: none", "  mode: none\n  api_tokens: [abc]"),
            "api_tokens",
        ),
        (
            with_server_lines("  tls: {cert: /c.pem, key: /k.pem}"),
            "server.tls: cannot read the certificate chain /c.pem",
        ),
        (
            demo_config().replace(
                "  local:\n    path_to_repos: ${TEST_LOOPER_INSTALL}/repos\n    webhook_secret: ${TEST_LOOPER_WEBHOOK_SECRET}\n",
                "  github:\n    owner: org:o\n    access_token: t\n    oauth: {client_id: i, client_secret: s, login_url: https://github.com}\n",
            ),
            "source_control.github.oauth",
        ),
        (
            demo_config().replace("  mode: none", "  mode: none\n  worker_token: \"\""),
            "auth.worker_token: is empty",
        ),
        (
            demo_config().replace("  bind: 127.0.0.1", "  bind: 0.0.0.0"),
            "server.bind: `0.0.0.0` is not a loopback address",
        ),
    ];
    for (text, expected) in cases {
        assert_ne!(
            text,
            demo_config(),
            "the case did not change the file: {expected}"
        );
        let (ok, output) = check(&text);
        assert!(!ok, "accepted: {expected}");
        assert!(output.contains(expected), "{expected}: {output}");
    }
}

#[test]
fn a_non_loopback_bind_is_accepted_only_when_said_explicitly() {
    let text = demo_config().replace(
        "  bind: 127.0.0.1",
        "  bind: 0.0.0.0\n  allow_unauthenticated_non_loopback: true",
    );
    let (ok, output) = check(&text);
    assert!(ok, "{output}");
}

#[test]
fn the_shipped_examples_pass() {
    for name in ["config.example.yml", "config.aws.example.yml"] {
        let text =
            std::fs::read_to_string(format!("{}/../deploy/{name}", env!("CARGO_MANIFEST_DIR")))
                .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_test-looper-server"))
            .arg("--check-config")
            .arg(&path)
            .env("TEST_LOOPER_INSTALL", "/tmp/install")
            .env("TEST_LOOPER_HOST", "ci.example.com")
            .env("TEST_LOOPER_WORKER_TOKEN", "t".repeat(64))
            .env("GITHUB_TOKEN", "x")
            .env("GITHUB_WEBHOOK_SECRET", "x")
            .env("GITLAB_TOKEN", "x")
            .env("GITLAB_WEBHOOK_SECRET", "x")
            .env("TEST_LOOPER_WEBHOOK_SECRET", "x")
            .env("REDIS_PORT", "6379")
            .env("GITHUB_OAUTH_CLIENT_ID", "Iv1.0123456789abcdef")
            .env("GITHUB_OAUTH_SECRET", "x")
            .env("GITHUB_ORG", "acme")
            .env("TEST_LOOPER_ADMIN", "alice")
            .env("AWS_REGION", "eu-west-1")
            .env("TEST_LOOPER_VPC", "vpc-0123")
            .env("TEST_LOOPER_SUBNET", "subnet-0123")
            .env("TEST_LOOPER_SECURITY_GROUP", "sg-0123")
            .env("TEST_LOOPER_KEYPAIR", "ci")
            .env("TEST_LOOPER_WORKER_PROFILE", "test-looper-worker")
            .env("TEST_LOOPER_WORKER_AMI", "ami-0123")
            .env("TEST_LOOPER_PRIVATE_ADDRESS", "10.0.0.5")
            .env("TEST_LOOPER_BOOTSTRAP_BUCKET", "ci-bootstrap")
            .env("TEST_LOOPER_GIT_ADDRESS", "10.0.0.12")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{name}: {text}");
    }
}
