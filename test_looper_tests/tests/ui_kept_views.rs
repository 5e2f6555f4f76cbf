//! Views kept by the server are exactly what computing them again would give. The server
//! keeps each view while the parts of the scheduler's state it read are unchanged; this test
//! moves the state step by step (enabling commits, starting, finishing and cancelling runs
//! of definitions that belong to one commit or are shared by all, a push) and after every
//! step compares each page the server answers with the same page computed by a fresh set
//! of sources that keeps nothing.

mod ui_support;

use serde_json::Value;
use std::sync::Arc;
use test_looper_server::reads::state::SchedulerState;
use test_looper_server::web::{Attachments, Ui};
use test_looper_tests::{GitRepo, RedisServer};
use ui_support::LiveServer;

/// `shared/linux` does not depend on the commit's source, so every commit declares the same
/// definition (one identity hash); `own/linux` depends on it, one per commit.
const DEFS: &str = r#"looper_version: 4
environments: {linux: {platform: linux, image: {dockerfile_contents: "FROM x"}}}
tests:
  shared/linux: {command: "./shared"}
  own/linux: {command: "./own", dependencies: {src: HEAD}}
  more/linux: {command: "./more", dependencies: {src: HEAD}}
"#;

/// Every kept view this test compares.
fn pages(commits: &[String]) -> Vec<String> {
    let mut pages = vec![
        "/api/repos".to_string(),
        "/api/repo?repo=app".to_string(),
        "/api/branch?repo=app&branch=master".to_string(),
        "/api/branch?repo=app&branch=master&per_page=2".to_string(),
        "/api/branch?repo=app&branch=master&per_page=2&page=1".to_string(),
    ];
    for test in ["shared/linux", "own/linux", "more/linux"] {
        pages.push(format!(
            "/api/test_history?repo=app&branch=master&test={test}"
        ));
    }
    for commit in commits {
        pages.push(format!("/api/commit?repo=app&commit={commit}"));
    }
    pages
}

/// The page at `path` as a fresh set of sources (nothing kept) computes it now.
async fn fresh(server: &LiveServer, path: &str) -> Value {
    let ui = Ui::new(
        server.context.git.clone(),
        Attachments::live(&server.context),
    );
    let sources = Arc::clone(&ui.sources);
    let query: std::collections::HashMap<String, String> = url::Url::parse(&server.url(path))
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let get = |name: &str| query.get(name).cloned().unwrap_or_default();
    let page = || get("page").parse().unwrap_or(0);
    let per_page = || get("per_page").parse().unwrap_or(50);
    let json = match path.split('?').next().unwrap() {
        "/api/repos" => sources.repos().await.unwrap().json(),
        "/api/repo" => sources.repo(&get("repo")).await.unwrap().json(),
        "/api/branch" => sources
            .branch(&get("repo"), &get("branch"), page(), per_page())
            .await
            .unwrap()
            .json(),
        "/api/test_history" => sources
            .test_history(
                &get("repo"),
                &get("branch"),
                &get("test"),
                page(),
                per_page(),
            )
            .await
            .unwrap()
            .json(),
        "/api/commit" => sources
            .commit(&get("repo"), &get("commit"))
            .await
            .unwrap()
            .json(),
        other => panic!("no fresh computation for {other}"),
    };
    serde_json::from_slice(&json.unwrap()).unwrap()
}

/// Compares every page the server answers (kept or not) with a fresh computation.
///
/// The state can move between the two reads (a scan the test does not control lands in
/// between): such a pair is read again, up to three times, while the scheduler's version
/// changed during the comparison. A stale kept view fails whatever the version does.
async fn assert_kept_views_are_fresh(server: &LiveServer, commits: &[String], step: &str) {
    let state = SchedulerState::new(server.context.clone());
    for path in pages(commits) {
        for attempt in 1.. {
            let version = state.version();
            let served = server.get_json(&path).await;
            let fresh = fresh(server, &path).await;
            if served == fresh || (state.version() == version || attempt == 3) {
                assert_eq!(served, fresh, "after {step}: {path} is stale");
                break;
            }
        }
    }
}

#[actix_web::test]
async fn every_kept_view_equals_a_fresh_computation_after_each_change() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::init_bare(&dir.path().join("repos/app"));
    let mut commits = vec![repo
        .commit("master", "c0", &[("testlooper.yml", DEFS)])
        .to_string()];
    for n in 1..4 {
        let text = n.to_string();
        commits.push(
            repo.commit("master", &format!("c{n}"), &[("src.txt", text.as_str())])
                .to_string(),
        );
    }
    let server = LiveServer::start(dir.path(), &redis.url()).await;
    server
        .wait_for_branch("app", "master", commits.last().unwrap())
        .await;
    server.register_machine("m1").await;
    // Read everything once so that every view is kept from here on.
    assert_kept_views_are_fresh(&server, &commits, "the scan").await;

    let (status, _) = server
        .act(
            "branch",
            serde_json::json!({"repo": "app", "branch": "master", "under_test": "true"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_kept_views_are_fresh(&server, &commits, "enabling the branch").await;
    let (status, _) = server
        .act(
            "commit",
            serde_json::json!({"repo": "app", "commit": commits[1], "priority": "5"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_kept_views_are_fresh(&server, &commits, "enabling an older commit").await;

    // Runs of per-commit and shared definitions, passing, failing, in flight, cancelled.
    for n in 0..8 {
        let Some((run_id, _, name)) = server.take_work("m1").await else {
            break;
        };
        assert_kept_views_are_fresh(&server, &commits, &format!("starting {name}")).await;
        match n % 4 {
            0 | 1 => server.complete(&run_id, true).await,
            2 => server.complete(&run_id, false).await,
            _ => {
                let (status, _) = server
                    .act("cancel", serde_json::json!({"run_id": run_id}))
                    .await;
                assert_eq!(status, 200);
            }
        }
        assert_kept_views_are_fresh(&server, &commits, &format!("ending {name}")).await;
    }
    let (status, _) = server
        .act(
            "runs_desired",
            serde_json::json!({"repo": "app", "commit": commits[3], "test": "shared/linux", "runs": "3"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_kept_views_are_fresh(&server, &commits, "raising runs desired").await;
    let (status, _) = server
        .act(
            "restart",
            serde_json::json!({"repo": "app", "commit": commits[1], "test": "own/linux"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_kept_views_are_fresh(&server, &commits, "restarting a test").await;
    let (status, _) = server
        .act(
            "quarantine",
            serde_json::json!({"repo": "app", "test": "shared/linux", "on": true}),
        )
        .await;
    assert_eq!(status, 200);
    assert_kept_views_are_fresh(&server, &commits, "quarantining a test").await;

    // A push: a new head, seen by the grid before the scan reaches the scheduler, and after.
    commits.push(repo.commit("master", "c4", &[("src.txt", "4")]).to_string());
    assert_kept_views_are_fresh(&server, &commits, "the push").await;
    server
        .wait_for_branch("app", "master", commits.last().unwrap())
        .await;
    assert_kept_views_are_fresh(&server, &commits, "the push's scan").await;
}
