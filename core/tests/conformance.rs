//! Replays every recorded case of `../shared/conformance` (relative to the workspace) through
//! the Rust pipeline and compares what matters. Skips, with a message, when the directory is
//! absent (e.g. on a user's clone).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use serde_json::Value;
use test_looper_core::definitions::memory::MemorySource;
use test_looper_core::definitions::{
    check_file, resolve_commit, CommitRef, DefinitionKind, Image, ResolvedCommit,
    ResolvedDependency,
};

mod conformance_differences;
use conformance_differences::DELIBERATE_DIFFERENCES;

fn conformance_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance");
    dir.join("index.json").exists().then_some(dir)
}

fn load(path: &PathBuf) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// Compare one resolved case; `Err` describes the first mismatch.
fn check_resolved(case: &Value) -> Result<(), String> {
    // Single-snapshot worlds: every sub-path counts as touched by the commit itself.
    let mut source = MemorySource::new().assuming_paths_exist();
    if case["isValidCommitRef"]
        .as_str()
        .unwrap_or("")
        .starts_with("any ref")
    {
        source = source.accepting_any_ref();
    }
    let world = case["world"].as_object().ok_or("no world")?;
    for (commit_key, files) in world {
        let (repo, commit) = commit_key.rsplit_once('/').ok_or("bad world key")?;
        for (path, text) in files.as_object().ok_or("bad files")? {
            // A null file is recorded as listed-but-unreadable; we can only leave it out.
            if let Some(text) = text.as_str() {
                source.add_file(repo, commit, path, text);
            } else {
                source.add_file(repo, commit, "test_looper/.listed-but-unreadable", "");
            }
        }
    }
    let target = case["target"].as_str().ok_or("no target")?;
    let (repo, commit) = target.rsplit_once('/').ok_or("bad target")?;
    let outcome = resolve_commit(&CommitRef::new(repo, commit), &source);
    let expected_error = case["tests"].get("error").is_some() || case["status"] == "error";
    match (&outcome, expected_error) {
        (Err(e), true) => {
            let _ = e;
            return Ok(());
        }
        (Ok(_), true) => {
            return Err(format!(
                "expected an error ({}), resolved fine",
                case["tests"]["error"]
            ))
        }
        (Err(e), false) => return Err(format!("unexpected error: {e}")),
        (Ok(_), false) => {}
    }
    let resolved = outcome.map_err(|e| e.to_string())?;
    compare_summary(case, &resolved)
}

fn kind_name(kind: DefinitionKind) -> &'static str {
    match kind {
        DefinitionKind::Build => "Build",
        DefinitionKind::Test => "Test",
        DefinitionKind::Deployment => "Deployment",
    }
}

fn compare_summary(case: &Value, resolved: &ResolvedCommit) -> Result<(), String> {
    let summary = case["summary"].as_object().ok_or("no summary")?;
    let expected_names: BTreeSet<&str> = summary.keys().map(String::as_str).collect();
    let actual_names: BTreeSet<&str> = resolved.definitions.keys().map(String::as_str).collect();
    if expected_names != actual_names {
        return Err(format!(
            "names differ: expected {expected_names:?}, got {actual_names:?}"
        ));
    }
    // Hash equivalence: original hash <-> our hash must be a bijection.
    let mut forward: HashMap<String, String> = HashMap::new();
    let mut backward: HashMap<String, String> = HashMap::new();
    let mut pair = |theirs: &str, ours: &str, what: &str| -> Result<(), String> {
        if let Some(prev) = forward.insert(theirs.to_owned(), ours.to_owned()) {
            if prev != ours {
                return Err(format!(
                    "{what}: original hash {theirs} maps to two of ours"
                ));
            }
        }
        if let Some(prev) = backward.insert(ours.to_owned(), theirs.to_owned()) {
            if prev != theirs {
                return Err(format!(
                    "{what}: our hash {ours} maps to two original hashes"
                ));
            }
        }
        Ok(())
    };
    for (name, expected) in summary {
        let actual = &resolved.definitions[name];
        let at = |field: &str| format!("{name}.{field}");
        let eq = |field: &str, want: &Value, got: Value| -> Result<(), String> {
            if *want != got {
                Err(format!("{}: expected {want}, got {got}", at(field)))
            } else {
                Ok(())
            }
        };
        eq(
            "kind",
            &expected["kind"],
            Value::from(kind_name(actual.kind)),
        )?;
        eq(
            "configuration",
            &expected["configuration"],
            Value::from(actual.configuration.clone()),
        )?;
        eq(
            "project",
            &expected["project"],
            Value::from(actual.project.clone()),
        )?;
        eq(
            "environment_name",
            &expected["environment_name"],
            Value::from(actual.environment.name.clone()),
        )?;
        eq(
            "environment_mixins",
            &expected["environment_mixins"],
            serde_json::json!(actual.environment.mixins),
        )?;
        eq(
            "env.inheritance",
            &expected["env"]["inheritance"],
            serde_json::json!(actual.environment.inheritance),
        )?;
        let platform = match actual.environment.platform {
            test_looper_core::definitions::Platform::Linux => "linux",
            test_looper_core::definitions::Platform::Windows => "windows",
        };
        eq(
            "env.platform",
            &expected["env"]["platform"],
            Value::from(platform),
        )?;
        let image = match &actual.environment.image {
            Image::Docker {
                dockerfile_contents,
                ..
            } => serde_json::json!({
                "_type": "Image.DockerfileInline", "dockerfile_contents": dockerfile_contents}),
            Image::Ami {
                base_ami,
                setup_script_contents,
            } => serde_json::json!({
                "_type": "Image.AMI", "base_ami": base_ami, "setup_script_contents": setup_script_contents}),
        };
        eq("env.image", &expected["env"]["image"], image)?;
        let variables: BTreeMap<&String, &String> = actual.variables.iter().collect();
        eq(
            "variables",
            &expected["variables"],
            serde_json::json!(variables),
        )?;
        for field in [
            "timeout",
            "min_cores",
            "max_cores",
            "min_ram_gb",
            "min_disk_gb",
        ] {
            let got = match field {
                "timeout" => actual.timeout,
                "min_cores" => actual.min_cores,
                "max_cores" => actual.max_cores,
                "min_ram_gb" => actual.min_ram_gb,
                _ => actual.min_disk_gb,
            };
            eq(field, &expected[field], Value::from(got))?;
        }
        if actual.kind == DefinitionKind::Build {
            eq(
                "max_retries",
                &expected["max_retries"],
                Value::from(actual.max_retries),
            )?;
            eq(
                "retry_wait_seconds",
                &expected["retry_wait_seconds"],
                Value::from(actual.retry_wait_seconds),
            )?;
        }
        eq(
            "disabled",
            &expected["disabled"],
            Value::from(actual.disabled),
        )?;
        let stages: Vec<Value> = actual
            .stages
            .iter()
            .map(|s| {
                serde_json::json!({
                    "command": s.command, "cleanup": s.cleanup, "order": s.order,
                    "artifacts": s.artifacts.iter().map(|a| serde_json::json!({
                        "name": a.name, "directory": a.directory,
                        "include_patterns": a.include_patterns, "exclude_patterns": a.exclude_patterns,
                        "format": format!("{:?}", a.format),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        eq("stages", &expected["stages"], Value::from(stages))?;
        let expected_deps = expected["dependencies"]
            .as_object()
            .ok_or_else(|| at("dependencies"))?;
        let all = actual.dependencies.clone();
        let keys: BTreeSet<String> = all.keys().map(|k| format!("test_inputs/{k}")).collect();
        let want_keys: BTreeSet<String> = expected_deps.keys().cloned().collect();
        if keys != want_keys {
            return Err(format!(
                "{}: expected {want_keys:?}, got {keys:?}",
                at("dependencies")
            ));
        }
        for (key, dep) in &all {
            let want = &expected_deps[&format!("test_inputs/{key}")];
            match dep {
                ResolvedDependency::Source { repo, commit, path } => {
                    eq(
                        &format!("dependencies.{key}"),
                        want,
                        serde_json::json!({
                        "kind": "source", "repo": repo, "commitHash": commit, "path": path}),
                    )?;
                }
                ResolvedDependency::Build {
                    name,
                    hash,
                    artifact,
                    ..
                } => {
                    eq(
                        &format!("dependencies.{key}.name"),
                        &want["name"],
                        Value::from(name.clone()),
                    )?;
                    eq(
                        &format!("dependencies.{key}.artifact"),
                        &want["artifact"],
                        Value::from(artifact.clone()),
                    )?;
                    pair(
                        want["buildHash"].as_str().unwrap_or(""),
                        hash,
                        &at("dependencies"),
                    )?;
                }
            }
        }
        pair(
            expected["hash"].as_str().unwrap_or(""),
            &actual.hash,
            &at("hash"),
        )?;
    }
    Ok(())
}

fn check_script(case: &Value) -> Result<(), String> {
    let text = case["text"].as_str().ok_or("no text")?;
    let source = case["source"].as_str().unwrap_or("x.yml");
    let path = if source.ends_with(".json") {
        "testDefinitions.json"
    } else {
        "testDefinitions.yml"
    };
    let outcome = check_file(text, path);
    let expected_error =
        case.get("error").is_some_and(|e| !e.is_null()) || case["extract"].get("error").is_some();
    match (outcome, expected_error) {
        (Err(_), true) => Ok(()),
        (Ok(_), true) => Err("expected an error, parsed fine".into()),
        (Err(e), false) => Err(format!("unexpected error: {e}")),
        (Ok(summary), false) => {
            let names: BTreeSet<String> = summary
                .map(|s| s.definitions.into_iter().map(|(n, _)| n).collect())
                .unwrap_or_default();
            let want: BTreeSet<String> = case["extract"]["names"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            if names != want {
                return Err(format!("names differ: expected {want:?}, got {names:?}"));
            }
            Ok(())
        }
    }
}

#[test]
fn conformance_cases() {
    let Some(dir) = conformance_dir() else {
        eprintln!("SKIPPED: ../shared/conformance not found next to the workspace; conformance cases not replayed");
        return;
    };
    let index = load(&dir.join("index.json"));
    let differences: HashMap<&str, &str> = DELIBERATE_DIFFERENCES.iter().copied().collect();
    let mut failures = Vec::new();
    let mut passed = 0;
    let mut differing = 0;
    let mut skipped = Vec::new();
    for entry in index["cases"].as_array().expect("cases") {
        let id = entry["id"].as_str().unwrap_or("?");
        let kind = entry["kind"].as_str().unwrap_or("?");
        let case = load(&dir.join(entry["file"].as_str().unwrap_or("")));
        let outcome = match kind {
            "resolved" => check_resolved(&case),
            "script" => check_script(&case),
            _ => {
                skipped.push(format!("{kind}/{id}"));
                continue;
            }
        };
        match (outcome, differences.get(id)) {
            (Ok(()), None) => passed += 1,
            (Ok(()), Some(_)) => failures.push(format!(
                "{id}: listed as a deliberate difference but matches"
            )),
            (Err(_), Some(_)) => differing += 1,
            (Err(message), None) => failures.push(format!("{id}: {message}")),
        }
    }
    eprintln!(
        "conformance: {passed} match, {differing} deliberate differences, {} failures, {} not replayable here ({})",
        failures.len(),
        skipped.len(),
        skipped.join(", ")
    );
    for failure in &failures {
        eprintln!("FAIL {failure}");
    }
    assert!(
        failures.is_empty(),
        "{} conformance cases failed",
        failures.len()
    );
}
