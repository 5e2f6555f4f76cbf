//! A commit with hostile definitions (review finding H4) against the real in-process
//! server, real git repos and a real Redis: the commit becomes untestable with the limit's
//! message (in the JSON API and on the commit page), the server stays up, and the good
//! commits around it are parsed and get their tests. The whole test process runs under a
//! 4 GiB address-space cap, so an unbounded parse aborts it instead of passing.

use std::time::{Duration, Instant};

use test_looper_tests::server::local_config;
use test_looper_tests::{GitRepo, RedisServer, TestServer};

#[path = "../../fuzz/fuzz_targets/common/hostile.rs"]
mod hostile;

const GOOD: &str = "looper_version: 4\nenvironments: {linux: {platform: linux, image: {dockerfile_contents: \"FROM x\"}}}\ntests:\n  core/linux: {command: \"./core\"}\n";

/// Caps this process's address space (and that of the processes it starts from now on).
fn cap_address_space(bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: setrlimit reads the struct we pass; no memory is shared.
    let status = unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
    assert_eq!(status, 0, "setrlimit(RLIMIT_AS)");
}

async fn get_json(server: &TestServer, path: &str) -> serde_json::Value {
    let response = reqwest::get(server.url(path))
        .await
        .expect("server answers");
    assert_eq!(response.status().as_u16(), 200, "{path}");
    response.json().await.expect("JSON")
}

/// The commit as the API shows it, once its definitions have been parsed.
async fn parsed_commit(server: &TestServer, hash: &str) -> serde_json::Value {
    let path = format!("/api/commit?repo=group/app&commit={hash}");
    let started = Instant::now();
    loop {
        let response = reqwest::get(server.url(&path))
            .await
            .expect("server answers");
        if response.status().as_u16() == 200 {
            let value: serde_json::Value = response.json().await.expect("JSON");
            let kind = value["parse"]["kind"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if !matches!(kind.as_str(), "" | "not_loaded" | "pending") {
                return value;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "commit {hash} never parsed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn a_definitions_bomb_makes_its_commit_untestable_and_nothing_else() {
    cap_address_space(4 << 30);
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::init_bare(&dir.path().join("repos/group/app"));
    let before = repo
        .commit("master", "good", &[("testlooper.yml", GOOD)])
        .to_string();
    let hostile = repo
        .commit(
            "master",
            "doubling variables",
            &[("testlooper.yml", &hostile::doubling_variables(40))],
        )
        .to_string();
    let after = repo
        .commit("master", "good again", &[("testlooper.yml", GOOD)])
        .to_string();
    let server = TestServer::start(local_config(dir.path(), &redis.url()));

    let untestable = parsed_commit(&server, &hostile).await;
    assert_eq!(untestable["parse"]["kind"], "untestable", "{untestable}");
    let expected = "variable V17 expands to more than 1 MiB (limit)";
    assert!(untestable.to_string().contains(expected), "{untestable}");

    for good in [&before, &after] {
        let view = parsed_commit(&server, good).await;
        assert_eq!(view["parse"]["kind"], "ok", "{view}");
        assert!(view.to_string().contains("core/linux"), "{view}");
    }

    // The commit page shows the message; the server is still answering.
    let page = reqwest::get(server.url(&format!("/repos/group/app/-/commits/{hostile}")))
        .await
        .expect("server answers")
        .text()
        .await
        .expect("page");
    assert!(page.contains(expected), "{page}");
    let repos = get_json(&server, "/api/repos").await;
    assert!(repos.to_string().contains("group/app"), "{repos}");
}
