//! Replays the recorded scheduling-order cases of `../shared/conformance/schedule` through
//! the scheduler (real Redis): every item runnable in a wave is started on a machine that
//! fits it, every artifact is uploaded and every run succeeds, then the next wave. The
//! waves must match the original's: builds before their dependents, identical builds
//! shared across commits and repos. Skips with a message when `../shared` is absent (a
//! user's clone).

mod scheduler_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use scheduler_support::*;
use serde_json::Value;
use test_looper_core::protocol::{MachineInfo, OsConfig, Work};

fn split(key: &str) -> (&str, &str) {
    key.rsplit_once('/').expect("repo/name key")
}

async fn replay(case: &Value) -> Vec<Vec<String>> {
    let harness = Harness::new();
    let scheduler = harness.open().await;
    let mut world = World::new();
    let commits = case["world"]["commits"].as_object().expect("commits");
    let mut by_repo: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, commit) in commits {
        let (repo, hash) = split(key);
        let parents: Vec<String> = commit["parents"]
            .as_array()
            .expect("parents")
            .iter()
            .map(|p| split(p.as_str().expect("parent")).1.to_string())
            .collect();
        let parents: Vec<&str> = parents.iter().map(String::as_str).collect();
        world.commit(
            repo,
            hash,
            &parents,
            commit["testDefinitions.yml"].as_str().unwrap_or(""),
        );
        world.file(
            repo,
            hash,
            "test_looper/Dockerfile.txt",
            "FROM test-looper/base:1\n",
        );
        for (path, text) in commit["files"].as_object().expect("files") {
            world.file(repo, hash, path, text.as_str().unwrap_or(""));
        }
        by_repo
            .entry(repo.to_string())
            .or_default()
            .push(hash.to_string());
    }
    for (key, head) in case["world"]["branches"].as_object().expect("branches") {
        let (repo, branch) = split(key);
        let hashes: Vec<&str> = by_repo[repo].iter().map(String::as_str).collect();
        scheduler
            .ingest_branch_scan(
                repo,
                branch,
                split(head.as_str().expect("head")).1,
                world.infos(repo, &hashes),
            )
            .await
            .unwrap();
    }
    for key in case["enabled_branches"].as_array().expect("enabled") {
        let (repo, branch) = split(key.as_str().expect("branch"));
        scheduler
            .set_branch_under_test(repo, branch, true)
            .await
            .unwrap();
        scheduler
            .prioritize_branch_history(repo, branch, 1, 100)
            .await
            .unwrap();
    }
    // Which commits declare each hash (for the original's naming rule).
    let mut declared: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (repo, hashes) in &by_repo {
        for hash in hashes {
            if let Some(view) = scheduler.read(|e| e.commit_view(repo, hash)).await {
                for test in view.tests {
                    declared
                        .entry(test.hash)
                        .or_default()
                        .push(format!("{repo}/{hash}/{}", test.name));
                }
            }
        }
    }
    let mut phases = Vec::new();
    let mut machine_count = 0;
    loop {
        let mut started = Vec::new();
        while let Some(entry) = scheduler.read(|e| e.queue(1)).await.into_iter().next() {
            let os = scheduler
                .read(|e| {
                    OsConfig::for_environment(
                        &e.test_record(&entry.test.hash)
                            .unwrap()
                            .definition
                            .environment,
                    )
                })
                .await;
            machine_count += 1;
            let machine_id = format!("m{machine_count}");
            scheduler
                .register_machine(MachineInfo {
                    machine_id: machine_id.clone(),
                    cores: 64,
                    ram_gb: 1024,
                    os,
                    shares_cores: false,
                })
                .await
                .unwrap();
            match scheduler.next_work(&machine_id).await.unwrap() {
                Some(Work::Run(run)) => started.push(*run),
                other => panic!("expected a run for {entry:?}, got {other:?}"),
            }
        }
        if started.is_empty() {
            break;
        }
        let mut names = BTreeSet::new();
        for run in &started {
            let commits = &declared[&run.test_hash];
            names.insert(if commits.len() == 1 {
                commits[0].clone()
            } else {
                format!("{}/<shared>", run.definition.name)
            });
            assert_eq!(
                finish(&scheduler, run, true).await,
                test_looper_core::protocol::CompletionAck::Recorded
            );
        }
        phases.push(names.into_iter().collect());
    }
    phases
}

/// The original's names, with shared tests' hashes (which we compute differently) masked.
fn expected(case: &Value) -> Vec<Vec<String>> {
    case["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .map(|phase| {
            let mut names: Vec<String> = phase
                .as_array()
                .expect("phase")
                .iter()
                .map(|name| {
                    let name = name.as_str().expect("name");
                    match name.rsplit_once('/') {
                        Some((test, hash))
                            if hash.len() >= 32 && hash.chars().all(|c| c.is_ascii_hexdigit()) =>
                        {
                            format!("{test}/<shared>")
                        }
                        _ => name.to_string(),
                    }
                })
                .collect();
            names.sort();
            names
        })
        .collect()
}

#[tokio::test]
async fn scheduling_waves_match_the_recorded_cases() {
    let Some(shared) = test_looper_tests::paths::shared_dir() else {
        eprintln!(
            "SKIPPED: ../shared (the recorded conformance cases) is not next to this checkout"
        );
        return;
    };
    let mut cases: Vec<PathBuf> = std::fs::read_dir(shared.join("conformance/schedule"))
        .expect("conformance/schedule exists in ../shared")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    cases.sort();
    assert_eq!(cases.len(), 4);
    let mut failures = Vec::new();
    for path in cases {
        let case: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let got = replay(&case).await;
        let want = expected(&case);
        let runs: usize = got.iter().map(Vec::len).sum();
        if got != want || runs as u64 != case["n_runs"].as_u64().unwrap() {
            failures.push(format!(
                "{}:\n  got  {got:?}\n  want {want:?}",
                path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
