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
