//! The UI and JSON API attached to the real services (scheduler over a real Redis, git
//! feed from real repos, disk artifact store): pages and API show the scheduler's counts,
//! failure rates with intervals, runs in flight and why work waits (blocked on a build, no
//! machine has the hardware, priority zero); actions reach the scheduler; logs come from
//! the live log intake; artifacts download from the store. A fake machine takes the work
//! through the scheduler's worker API, so no Docker is needed.

mod ui_support;

use serde_json::{json, Value};
use test_looper_tests::{GitRepo, RedisServer};
use ui_support::{wait_until, LiveServer};

const DEFS: &str = r#"looper_version: 4
environments: {linux: {platform: linux, image: {dockerfile_contents: "FROM x"}}}
builds:
  build/linux:
    stages:
      - command: make
        artifacts: [{name: bin, directory: out}]
tests:
  core/linux: {command: "./core", dependencies: {b: build/linux/bin}}
  big/linux: {command: "./big", min_cores: 512}
"#;

fn definition<'a>(commit: &'a Value, name: &str) -> &'a Value {
    commit["definitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no definition {name} in {commit}"))
}

fn queue_entry<'a>(machines: &'a Value, name: &str) -> &'a Value {
    machines["queue"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["entry"]["test_name"] == name)
        .unwrap_or_else(|| panic!("{name} not in the queue: {machines}"))
}

#[actix_web::test]
async fn pages_and_api_show_the_schedulers_state_and_actions_reach_it() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::init_bare(&dir.path().join("repos/app"));
    repo.commit("master", "first", &[("testlooper.yml", DEFS)]);
    let head = repo
        .commit("master", "second", &[("src.txt", "2")])
        .to_string();
    let server = LiveServer::start(dir.path(), &redis.url()).await;
    server.wait_for_branch("app", "master", &head).await;
    let commit_api = format!("/api/commit?repo=app&commit={head}");

    // Not enabled yet: the head's tests say so, the queue lists them as priority zero.
    let repo_view = server.get_json("/api/repo?repo=app").await;
    assert_eq!(repo_view["state_wired"], true);
    assert_eq!(repo_view["branches"][0]["under_test"], false);
    let commit = server.get_json(&commit_api).await;
    assert_eq!(commit["summary"]["kind"], "not_enabled", "{commit}");
    let machines = server.get_json("/api/machines").await;
    assert_eq!(
        queue_entry(&machines, "core/linux")["entry"]["wait"]["kind"],
        "not_wanted"
    );

    // Enable the branch through the API: the head is enabled and its work waits for reasons.
    let (status, body) = server
        .act(
            "branch",
            json!({"repo": "app", "branch": "master", "under_test": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let repo_view = server.get_json("/api/repo?repo=app").await;
    assert_eq!(repo_view["branches"][0]["under_test"], true);
    let commit = server.get_json(&commit_api).await;
    assert_eq!(commit["enabled"], true);
    assert_eq!(
        definition(&commit, "build/linux")["status"]["wait"]["kind"],
        "queued"
    );
    let core = definition(&commit, "core/linux");
    assert_eq!(core["status"]["wait"]["kind"], "blocked_on_build", "{core}");
    assert!(
        core["wait"].as_str().unwrap().contains("build/linux/bin"),
        "{core}"
    );
    let big = definition(&commit, "big/linux");
    assert_eq!(big["status"]["wait"]["kind"], "no_hardware", "{big}");
    assert!(big["wait"].as_str().unwrap().contains("512"), "{big}");
    assert_eq!(big["cell"]["kind"], "blocked");
    let machines = server.get_json("/api/machines").await;
    assert_eq!(
        queue_entry(&machines, "build/linux")["entry"]["wait"]["kind"],
        "queued"
    );
    assert_eq!(
        queue_entry(&machines, "core/linux")["entry"]["wait"]["kind"],
        "blocked_on_build"
    );
    assert_eq!(
        queue_entry(&machines, "big/linux")["entry"]["wait"]["kind"],
        "no_hardware"
    );
    let page = reqwest::get(server.url("/machines"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("no machine can provide"), "{page}");
    assert!(page.contains("blocked on build build/linux/bin"), "{page}");

    // A machine takes the build: it is in flight, the machine is busy with it.
    server.register_machine("m1").await;
    let (build_run, _, name) = server.take_work("m1").await.expect("the build is offered");
    assert_eq!(name, "build/linux");
    let commit = server.get_json(&commit_api).await;
    let build = definition(&commit, "build/linux");
    assert_eq!(build["cell"]["kind"], "running", "{build}");
    assert_eq!(build["cell"]["in_flight"], 1);
    let machines = server.get_json("/api/machines").await;
    assert_eq!(
        machines["machines"][0]["machine"]["holds"][0]["id"],
        build_run.as_str()
    );
    server.complete(&build_run, true).await;

    // Ask for 3 runs of core/linux; one fails, one passes, one is cancelled.
    let (status, body) = server
        .act(
            "runs_desired",
            json!({"repo": "app", "commit": head, "test": "core/linux", "runs": 3}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (failed_run, core_hash) = server.take_run_of("m1", "core/linux").await;
    assert_eq!(server.append_log(&failed_run, 0, "hello ").await, 6);
    assert_eq!(server.append_log(&failed_run, 6, "world\n").await, 12);
    let log = reqwest::get(server.url(&format!("/api/runs/{failed_run}/log?offset=6")))
        .await
        .unwrap();
    assert_eq!(log.headers()["X-Log-Complete"], "false");
    assert_eq!(log.text().await.unwrap(), "world\n");
    server
        .store_run_file(
            &core_hash,
            &failed_run,
            "output/result.bin",
            &[0, 1, 2, 255],
        )
        .await;
    server.complete(&failed_run, false).await;
    let (passed_run, _) = server.take_run_of("m1", "core/linux").await;
    server.complete(&passed_run, true).await;
    let commit = server.get_json(&commit_api).await;
    let core = definition(&commit, "core/linux");
    assert_eq!(core["status"]["runs"], 2, "{core}");
    assert_eq!(core["status"]["failures"], 1);
    assert_eq!(core["runs_desired"], 3);
    assert_eq!(core["cell"]["kind"], "flaky");
    assert_eq!(core["cell"]["text"], "1/2");
    let rate = &core["cell"]["rate"];
    assert!(rate["low"].as_f64().unwrap() < 0.5 && rate["high"].as_f64().unwrap() > 0.5);
    assert_eq!(core["failure_reasons"][0][0], "test failure");
    let grid = reqwest::get(server.url("/repos/app/-/branches/master"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(grid.contains("cell-flaky"), "{grid}");
    assert!(
        grid.contains("50% ["),
        "the grid shows the rate with its interval"
    );

    // The run page lists the stored files; they download byte for byte.
    let run = server.get_json(&format!("/api/runs/{failed_run}")).await;
    assert_eq!(run["run"]["state"], "failed");
    let names: Vec<&str> = run["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"output/result.bin"), "{run}");
    let download = reqwest::get(server.url(&format!(
        "/api/runs/{failed_run}/artifacts/output/result.bin"
    )))
    .await
    .unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.bytes().await.unwrap().as_ref(), &[0, 1, 2, 255]);
    let missing = reqwest::get(server.url(&format!("/api/runs/{failed_run}/artifacts/nope.txt")))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    // The finished run's log is complete once the grace period is over.
    let log_url = server.url(&format!("/api/runs/{failed_run}/log?offset=12"));
    wait_until("the finished log is complete", || {
        let url = log_url.clone();
        async move {
            let response = reqwest::get(&url).await.unwrap();
            response.headers()["X-Log-Complete"] == "true"
        }
    })
    .await;

    // Cancel: the active run ends; cancelling it again is a conflict.
    let (active_run, _) = server.take_run_of("m1", "core/linux").await;
    let commit = server.get_json(&commit_api).await;
    assert_eq!(definition(&commit, "core/linux")["cell"]["in_flight"], 1);
    let (status, body) = server.act("cancel", json!({"run_id": active_run})).await;
    assert_eq!(status, 200, "{body}");
    let run = server.get_json(&format!("/api/runs/{active_run}")).await;
    assert_eq!(run["run"]["state"], "cancelled");
    let (status, body) = server.act("cancel", json!({"run_id": active_run})).await;
    assert_eq!(status, 409, "{body}");

    // Restart: finished runs stop counting and the test is wanted again.
    let (status, body) = server
        .act(
            "restart",
            json!({"repo": "app", "commit": head, "test": "core/linux"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let commit = server.get_json(&commit_api).await;
    let core = definition(&commit, "core/linux");
    assert_eq!(core["status"]["runs"], 0, "{core}");
    assert!(core["runs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["cleared"] == true || r["state"] == "cancelled"));

    // Refusals: unknown names are 404, disabling the commit works.
    let unknown = "f".repeat(40);
    let (status, _) = server
        .act(
            "commit",
            json!({"repo": "app", "commit": unknown, "priority": 1}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = server
        .act(
            "branch",
            json!({"repo": "app", "branch": "nope", "under_test": true}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = server
        .act(
            "commit",
            json!({"repo": "app", "commit": head, "priority": 0}),
        )
        .await;
    assert_eq!(status, 200);
    let commit = server.get_json(&commit_api).await;
    assert_eq!(commit["enabled"], false);
}

#[actix_web::test]
async fn a_log_expired_from_redis_is_read_from_the_stored_log_artifact() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::init_bare(&dir.path().join("repos/app"));
    let head = repo
        .commit("master", "first", &[("testlooper.yml", DEFS)])
        .to_string();
    let server = LiveServer::start(dir.path(), &redis.url()).await;
    server.wait_for_branch("app", "master", &head).await;
    server
        .scheduler()
        .set_branch_under_test("app", "master", true)
        .await
        .unwrap();
    server.register_machine("m1").await;
    let (run_id, hash, _) = server.take_work("m1").await.unwrap();
    server
        .store_run_file(&hash, &run_id, "test_looper_log.txt", b"stored log\n")
        .await;
    server.complete(&run_id, true).await;
    let response = reqwest::get(server.url(&format!("/api/runs/{run_id}/log?offset=7")))
        .await
        .unwrap();
    assert_eq!(response.headers()["X-Log-Offset"], "7");
    assert_eq!(response.text().await.unwrap(), "log\n");
    let unknown = reqwest::get(server.url("/api/runs/r-nope/log"))
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[actix_web::test]
async fn the_commit_page_names_flaky_test_cases_with_their_failure_rate() {
    use test_looper_core::protocol::{FailureReason, RunResult, TestCaseResult};
    const SUITE: &str = r#"looper_version: 4
environments: {linux: {platform: linux, image: {dockerfile_contents: "FROM x"}}}
tests:
  suite/linux: {command: "./suite"}
"#;
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::init_bare(&dir.path().join("repos/app"));
    let head = repo
        .commit("master", "suite", &[("testlooper.yml", SUITE)])
        .to_string();
    let server = LiveServer::start(dir.path(), &redis.url()).await;
    server.wait_for_branch("app", "master", &head).await;
    server.register_machine("m1").await;
    let (status, _) = server
        .act(
            "branch",
            json!({"repo": "app", "branch": "master", "under_test": "true"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .act(
            "runs_desired",
            json!({"repo": "app", "commit": head, "test": "suite/linux", "runs": "4"}),
        )
        .await;
    assert_eq!(status, 200);
    // a::b fails in one run of four, a::c in every run, z never.
    for n in 0..4 {
        let (run_id, _) = server.take_run_of("m1", "suite/linux").await;
        let case = |name: &str, passed: bool| TestCaseResult {
            name: name.into(),
            passed,
            has_logs: !passed,
        };
        let cases = vec![case("a::b", n != 2), case("a::c", false), case("z", true)];
        let result = RunResult::Failed {
            reason: FailureReason::TestFailure,
            message: "exit code 1".into(),
        };
        server.complete_with(&run_id, result, cases).await;
    }

    let commit = server
        .get_json(&format!("/api/commit?repo=app&commit={head}"))
        .await;
    let cases = definition(&commit, "suite/linux")["cases"]
        .as_array()
        .unwrap()
        .clone();
    let summary: Vec<(String, String)> = cases
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().into(),
                c["text"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("a::c".to_string(), "FAIL (4 runs)".to_string()),
            ("a::b".into(), "FLAKY (1/4 runs failed)".into()),
            ("z".into(), "OK (4 runs)".into()),
        ]
    );
    assert_eq!(cases[1]["verdict"], "flaky");
    assert_eq!(cases[1]["rate"]["failures"], 1);
    assert_eq!(cases[1]["rate"]["runs"], 4);
    let html = reqwest::get(server.url(&format!("/repos/app/-/commits/{head}")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(r#"<td class="case cell-flaky">FLAKY (1/4 runs failed)</td>"#),
        "the page marks the flaky case"
    );
}
