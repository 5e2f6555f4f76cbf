//! `tl info` on hostile definitions (review finding H4), running the real `tl` binary under
//! a 2 GiB address-space cap (`prlimit --as`): a doubling variable chain, an alias bomb and
//! an oversized file each end in a clean exit status 1 with the limit's message, never an
//! abort on memory.

use std::path::Path;
use std::process::{Command, Output};

#[path = "../../fuzz/fuzz_targets/common/hostile.rs"]
mod hostile;

const ADDRESS_SPACE_CAP: &str = "--as=2147483648";

/// A git checkout whose HEAD commit holds `testlooper.yml` with `text`.
fn checkout(dir: &Path, text: &str) {
    std::fs::write(dir.join("testlooper.yml"), text).expect("write");
    for args in [
        &["init", "-q"][..],
        &["add", "testlooper.yml"],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-qm",
            "hostile",
        ],
    ] {
        let status = Command::new("git")
            .args(args)
            .current_dir(dir)
            .status()
            .expect("git runs");
        assert!(status.success(), "git {args:?}");
    }
}

/// `tl info [args]` in `dir` under the address-space cap.
fn tl_info(dir: &Path, args: &[&str]) -> Output {
    Command::new("prlimit")
        .arg(ADDRESS_SPACE_CAP)
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_tl"))
        .arg("info")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("prlimit runs tl")
}

/// Exit status 1 and the limit's message, in text and in JSON.
fn assert_untestable(text: &str, expected: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    checkout(dir.path(), text);

    let text = tl_info(dir.path(), &[]);
    let stderr = String::from_utf8_lossy(&text.stderr);
    assert_eq!(text.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(expected), "{stderr}");

    let json = tl_info(dir.path(), &["--json"]);
    assert_eq!(json.status.code(), Some(1));
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON error");
    assert_eq!(value["error"]["kind"], "invalid");
    let message = value["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(expected), "{value}");
}

#[test]
fn doubling_variables_end_in_a_clean_error() {
    assert_untestable(
        &hostile::doubling_variables(40),
        "variable V17 expands to more than 1 MiB (limit)",
    );
}

#[test]
fn an_alias_bomb_ends_in_a_clean_error() {
    assert_untestable(
        &hostile::alias_bomb(),
        "the YAML expands to more than 32 MiB of text (aliases?) (limit)",
    );
}

#[test]
fn an_oversized_file_is_refused_from_its_size() {
    let text = format!("looper_version: 4\n# {}\n", "x".repeat(5 << 20));
    assert_untestable(
        &text,
        &format!(
            "testlooper.yml is {} bytes, more than the 4 MiB a definitions file may have (limit)",
            text.len()
        ),
    );
}
