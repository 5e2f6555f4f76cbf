//! The git facts pages read are cached (walked histories per branch head, commit metadata,
//! parse results) and concurrent requests share one computation, yet pages stay fresh: a
//! push shows on the branch grid, the repo page and the test history at once, a force push
//! drops the rewritten commits at once, and an action's effect on the live state shows in the
//! next read, including for many concurrent readers.

mod ui_support;

use serde_json::{json, Value};
use test_looper_tests::{GitRepo, RedisServer};
use ui_support::LiveServer;

const DEFS: &str = r#"looper_version: 4
environments: {linux: {platform: linux, image: {dockerfile_contents: "FROM x"}}}
tests:
  unit/linux: {command: "./unit", dependencies: {src: HEAD}}
"#;

/// The commit hashes of the branch grid, newest first.
fn grid_hashes(branch: &Value) -> Vec<String> {
    branch["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("no rows in {branch}"))
        .iter()
        .map(|row| row["hash"].as_str().unwrap().to_string())
        .collect()
}

fn history_hashes(history: &Value) -> Vec<String> {
    history["points"]
        .as_array()
        .unwrap_or_else(|| panic!("no points in {history}"))
        .iter()
        .map(|point| point["hash"].as_str().unwrap().to_string())
        .collect()
}

fn master_row(repo: &Value) -> &Value {
    repo["branches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "master")
        .unwrap_or_else(|| panic!("no master in {repo}"))
}

const BRANCH: &str = "/api/branch?repo=app&branch=master";
const REPO: &str = "/api/repo?repo=app";
const HISTORY: &str = "/api/test_history?repo=app&branch=master&test=unit/linux";

#[actix_web::test]
async fn pushes_and_force_pushes_show_at_once_and_actions_show_in_the_next_read() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::init_bare(&dir.path().join("repos/app"));
    let c1 = repo
        .commit("master", "c1", &[("testlooper.yml", DEFS)])
        .to_string();
    let c2 = repo.commit("master", "c2", &[("src.txt", "2")]).to_string();
    let c3 = repo.commit("master", "c3", &[("src.txt", "3")]).to_string();
    let server = LiveServer::start(dir.path(), &redis.url()).await;

    // Read (and so cache) the history of c3 through every page built from it.
    assert_eq!(
        grid_hashes(&server.get_json(BRANCH).await),
        [c3.as_str(), c2.as_str(), c1.as_str()]
    );
    assert_eq!(
        history_hashes(&server.get_json(HISTORY).await),
        [c3.as_str(), c2.as_str(), c1.as_str()]
    );
    assert_eq!(master_row(&server.get_json(REPO).await)["commit_count"], 3);
    let html = reqwest::get(server.url("/repos/app/-/branches/master"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains(&c3[..10]), "the grid shows c3");

    // A push: the very next reads walk from the new head, without waiting for a scan.
    let c4 = repo
        .commit("master", "c4 pushed", &[("src.txt", "4")])
        .to_string();
    assert_eq!(
        grid_hashes(&server.get_json(BRANCH).await),
        [c4.as_str(), c3.as_str(), c2.as_str(), c1.as_str()]
    );
    assert_eq!(
        history_hashes(&server.get_json(HISTORY).await),
        [c4.as_str(), c3.as_str(), c2.as_str(), c1.as_str()]
    );
    let repo_view = server.get_json(REPO).await;
    assert_eq!(master_row(&repo_view)["commit_count"], 4);
    let head = master_row(&repo_view)["head"].as_str().unwrap();
    assert!(c4.starts_with(head), "the repo page's head {head} is c4");
    let html = reqwest::get(server.url("/repos/app/-/branches/master"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains(&c4[..10]), "the grid shows the pushed commit");
    let commit = server
        .get_json(&format!("/api/commit?repo=app&commit={c4}"))
        .await;
    assert_eq!(commit["subject"], "c4 pushed");

    // A force push rewrites c3 and c4 away: they are gone from every page at once.
    repo.set_branch("master", c2.parse().unwrap());
    let c5 = repo
        .commit("master", "c5 rewritten", &[("src.txt", "5")])
        .to_string();
    let rewritten = grid_hashes(&server.get_json(BRANCH).await);
    assert_eq!(rewritten, [c5.as_str(), c2.as_str(), c1.as_str()]);
    assert!(!rewritten.contains(&c3) && !rewritten.contains(&c4));
    assert_eq!(
        history_hashes(&server.get_json(HISTORY).await),
        [c5.as_str(), c2.as_str(), c1.as_str()]
    );
    assert_eq!(master_row(&server.get_json(REPO).await)["commit_count"], 3);

    // Many concurrent readers right after another push all see it (coalesced reads never
    // answer with a view computed before the request arrived).
    let c6 = repo.commit("master", "c6", &[("src.txt", "6")]).to_string();
    let readers: Vec<_> = (0..24)
        .map(|_| {
            let url = server.url(BRANCH);
            actix_web::rt::spawn(async move {
                reqwest::get(url)
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            })
        })
        .collect();
    for reader in readers {
        assert_eq!(grid_hashes(&reader.await.unwrap())[0], c6);
    }

    // Live state: enabling the head shows in the next read of the grid, for every reader.
    server.wait_for_branch("app", "master", &c6).await;
    let row = |branch: &Value| branch["rows"][0].clone();
    assert_eq!(row(&server.get_json(BRANCH).await)["enabled"], false);
    let (status, body) = server
        .act(
            "commit",
            json!({"repo": "app", "commit": c6, "priority": "3"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let readers: Vec<_> = (0..24)
        .map(|_| {
            let url = server.url(BRANCH);
            actix_web::rt::spawn(async move {
                reqwest::get(url)
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            })
        })
        .collect();
    for reader in readers {
        let first = row(&reader.await.unwrap());
        assert_eq!(first["hash"], c6);
        assert_eq!(first["enabled"], true);
        assert_eq!(first["priority"], 3);
    }
}
