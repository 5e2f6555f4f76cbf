//! Flake hunts end to end: real git repos whose test fails at a rate read from a file, the
//! real server with its local Docker workers, and hunts started and read through the JSON
//! API. In one repo the rate jumps at a commit drawn at random when the test runs; the hunt
//! must name that commit. In the other the rate never changes; its hunt must not name a
//! confident culprit. Branch-wide repeats go through the same API.

use std::time::Duration;
use test_looper_tests::install::{wait_until, Install, PoolOptions};
use test_looper_tests::{DockerEngine, GitRepo};

const YML: &str = r#"
looper_version: 4
environments:
  linux:
    platform: linux
    image:
      dockerfile_contents: |
        FROM test-looper/base:1
tests:
  flaky/linux:
    environment: linux
    command: bash src/flaky.sh
    dependencies: {src: HEAD}
  steady/linux:
    environment: linux
    command: "true"
"#;

/// Fails with the percentage in `rate.txt`.
const FLAKY_SH: &str = r#"rate=$(cat src/rate.txt)
roll=$(( $(od -An -N2 -tu2 /dev/urandom) % 100 ))
echo "rate $rate roll $roll"
[ "$roll" -ge "$rate" ]
"#;

/// `commits` commits on master: the rate is `before` up to `change - 1` and `after` from
/// `change` on; every commit also changes `notes.txt`, so each has its own definition.
fn make_history(
    dir: &std::path::Path,
    name: &str,
    commits: usize,
    change: usize,
    (before, after): (u32, u32),
) -> Vec<String> {
    let repo = GitRepo::init_bare(&dir.join("repos").join(name));
    (0..commits)
        .map(|i| {
            let rate = if i >= change { after } else { before };
            let notes = format!("commit {i}\n");
            let rate = format!("{rate}\n");
            repo.commit(
                "master",
                &format!("change {i}"),
                &[
                    ("testlooper.yml", YML),
                    ("flaky.sh", FLAKY_SH),
                    ("rate.txt", rate.as_str()),
                    ("notes.txt", notes.as_str()),
                ],
            )
            .to_string()
        })
        .collect()
}

/// A change commit nobody picks in advance (the clock's nanoseconds), never the first two
/// or the head.
fn random_change(commits: usize) -> usize {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    2 + nanos % (commits - 3)
}

struct Api {
    client: reqwest::Client,
    base: String,
    csrf: String,
}

impl Api {
    async fn new(base: &str) -> Api {
        let client = reqwest::Client::new();
        let page = client
            .get(format!("{base}/repos"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = page
            .split("name=\"csrf-token\" content=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_owned();
        Api {
            client,
            base: base.to_owned(),
            csrf,
        }
    }

    async fn action(&self, name: &str, body: serde_json::Value) -> serde_json::Value {
        let response = self
            .client
            .post(format!("{}/api/actions/{name}", self.base))
            .header("X-CSRF-Token", &self.csrf)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(status.is_success(), "{name}: {status} {body}");
        body
    }

    async fn get(&self, path: &str) -> serde_json::Value {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{path}");
        response.json().await.unwrap()
    }

    async fn finished_hunt(&self, hunt_id: &str) -> serde_json::Value {
        let path = format!("/api/flake_hunts/{hunt_id}");
        let mut hunt = self.get(&path).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(900);
        while hunt["state"] == "running" {
            assert!(
                std::time::Instant::now() < deadline,
                "the hunt did not end: {hunt}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            hunt = self.get(&path).await;
        }
        hunt
    }
}

#[actix_web::test]
async fn hunts_through_the_api_name_the_changing_commit_and_no_culprit_without_a_change() {
    let _engine = DockerEngine::connect().await;
    let (redis, dir) = Install::prepare();
    const COMMITS: usize = 12;
    let change = random_change(COMMITS);
    let changing = make_history(dir.path(), "changing", COMMITS, change, (0, 60));
    let steady = make_history(dir.path(), "steady", 8, 0, (30, 30));
    let install = Install::start(redis, dir, "hunt_e2e", PoolOptions::default()).await;
    install.wait_for_branch("changing", "master").await;
    install.wait_for_branch("steady", "master").await;
    let api = Api::new(&install.base_url).await;

    let started = api
        .action(
            "flake_hunt",
            serde_json::json!({
                "repo": "changing", "branch": "master", "test": "flaky/linux",
                // At the default target (0.95) about one hunt in twenty may name a neighbour
                // of the change by design (CI saw 0 failures in 7 runs at 60 % once); at 0.999
                // the assertion below fails about once in a thousand runs.
                "budget_runs": 400, "priority": 2, "target_probability": 0.999,
            }),
        )
        .await;
    let hunt_id = started["hunt_id"].as_str().unwrap().to_owned();
    let no_change = api
        .action(
            "flake_hunt",
            serde_json::json!({
                "repo": "steady", "branch": "master", "test": "flaky/linux",
                "budget_runs": 120,
            }),
        )
        .await;
    let no_change_id = no_change["hunt_id"].as_str().unwrap().to_owned();

    let listed = api
        .get("/api/flake_hunts?repo=changing&branch=master")
        .await;
    assert_eq!(listed["hunts"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["hunts"][0]["hunt_id"], hunt_id.as_str());

    let hunt = api.finished_hunt(&hunt_id).await;
    assert_eq!(hunt["state"], "found", "change at {change}: {hunt}");
    assert_eq!(
        hunt["culprit"]["commit"],
        changing[change].as_str(),
        "change at {change}: {hunt}"
    );
    assert!(hunt["culprit"]["probability"].as_f64().unwrap() >= 0.95);
    assert!(hunt["runs_used"].as_u64().unwrap() <= 400);
    assert_eq!(hunt["posterior"].as_array().unwrap().len(), COMMITS);
    assert!(hunt["rate_before"].as_f64().unwrap() < hunt["rate_after"].as_f64().unwrap());

    // Only the hunted test ran, and no commit was enabled.
    let (steady_runs, enabled) = install
        .scheduler()
        .read(|engine| {
            let mut steady_runs = 0;
            let mut enabled = 0;
            for commit in &changing {
                let view = engine.commit_view("changing", commit).unwrap();
                enabled += usize::from(view.settings.user_priority > 0);
                steady_runs += view
                    .tests
                    .iter()
                    .filter(|t| t.name == "steady/linux")
                    .map(|t| t.counts.runs)
                    .sum::<u64>();
            }
            (steady_runs, enabled)
        })
        .await;
    assert_eq!((steady_runs, enabled), (0, 0));

    let page = api
        .client
        .get(format!("{}/hunts/{hunt_id}", install.base_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("posterior-plot"), "{page}");
    assert!(page.contains(&changing[change][..12]), "{page}");
    assert!(page.contains("rate.txt"), "the culprit's diff: {page}");

    let steady_hunt = api.finished_hunt(&no_change_id).await;
    assert_ne!(steady_hunt["state"], "found", "{steady_hunt}");
    assert!(steady_hunt["culprit"].is_null(), "{steady_hunt}");

    // A branch-wide repeat: 3 runs of the steady test on the last 2 commits.
    let repeated = api
        .action(
            "branch_repeat",
            serde_json::json!({
                "repo": "steady", "branch": "master", "tests": ["steady/*"],
                "runs": 3, "last_commits": 2,
            }),
        )
        .await;
    assert_eq!(
        (repeated["commits"].as_u64(), repeated["tests"].as_u64()),
        (Some(2), Some(2))
    );
    wait_until(Duration::from_secs(300), "the repeats to run", || async {
        install
            .scheduler()
            .read(|engine| {
                steady[6..].iter().all(|commit| {
                    engine
                        .commit_view("steady", commit)
                        .unwrap()
                        .tests
                        .iter()
                        .filter(|t| t.name == "steady/linux")
                        .all(|t| t.counts.runs == 3)
                })
            })
            .await
    })
    .await;
    install.shutdown().await;
}
