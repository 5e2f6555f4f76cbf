//! The live log cap (M2) through the real log intake and the real log endpoint (scheduler over
//! a real Redis, git feed from a real repo): a log stops at `logs.live_log_max_bytes` with one
//! notice naming the artifact that keeps the whole log, a replayed or later chunk adds
//! nothing, a cut never splits a UTF-8 character, and a finished run whose log is stored
//! nowhere reads as one line saying so instead of an error.

mod ui_support;

use test_looper_tests::{GitRepo, RedisServer};
use ui_support::LiveServer;

const DEFS: &str = r#"looper_version: 4
environments: {linux: {platform: linux, image: {dockerfile_contents: "FROM x"}}}
tests:
  chatty/linux: {command: "yes"}
"#;

const CAP: u64 = 4096;

async fn server(dir: &std::path::Path, redis: &RedisServer) -> (LiveServer, String) {
    let repo = GitRepo::init_bare(&dir.join("repos/app"));
    let head = repo
        .commit("master", "definitions", &[("testlooper.yml", DEFS)])
        .to_string();
    let server = LiveServer::start_with(dir, &redis.url(), |config| {
        config.logs.live_log_max_bytes = CAP;
        config.retention.artifact_days = Some(30);
    })
    .await;
    server.wait_for_branch("app", "master", &head).await;
    let (status, body) = server
        .act(
            "commit",
            serde_json::json!({"repo": "app", "commit": head, "priority": 1}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    server.register_machine("m1").await;
    (server, head)
}

async fn read_log(server: &LiveServer, run_id: &str) -> String {
    let response = reqwest::get(server.url(&format!("/api/runs/{run_id}/log")))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.text().await.unwrap()
}

#[actix_web::test]
async fn a_live_log_stops_at_the_cap_with_one_notice() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = server(dir.path(), &redis).await;
    let (run_id, _) = server.take_run_of("m1", "chatty/linux").await;

    let first = "a".repeat(3000);
    assert_eq!(server.append_log(&run_id, 0, &first).await, 3000);
    // This chunk crosses the cap: cut just before the 2-byte "é" that straddles it.
    let second = format!(
        "{}é{}",
        "b".repeat(CAP as usize - 3000 - 1),
        "c".repeat(3000)
    );
    let capped = server.append_log(&run_id, 3000, &second).await;
    assert!(capped > CAP, "the notice follows the cut: {capped}");
    // Replays and later output add nothing (no second notice).
    assert_eq!(server.append_log(&run_id, 0, &first).await, capped);
    assert_eq!(server.append_log(&run_id, 3000, &second).await, capped);
    let later = 3000 + second.len() as u64;
    assert_eq!(server.append_log(&run_id, later, "more\n").await, capped);

    let log = read_log(&server, &run_id).await;
    assert_eq!(log.len() as u64, capped);
    let kept = &log[..log.find("\n[test-looper]").expect("the notice")];
    assert_eq!(
        kept,
        format!("{first}{}", "b".repeat(CAP as usize - 3000 - 1))
    );
    assert_eq!(
        log.matches("live log truncated at 4096 bytes").count(),
        1,
        "{log}"
    );
    assert!(
        log.contains(&format!("/api/runs/{run_id}/artifacts/test_looper_log.txt")),
        "{log}"
    );
}

#[actix_web::test]
async fn a_finished_run_whose_log_is_gone_says_so() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = server(dir.path(), &redis).await;
    let (run_id, _) = server.take_run_of("m1", "chatty/linux").await;
    server.append_log(&run_id, 0, "short\n").await;
    server.complete(&run_id, true).await;
    // The live log expired and retention removed the stored one (there never was one here).
    let mut connection = redis.client().get_connection().unwrap();
    redis::cmd("DEL")
        .arg(format!("run_log:{run_id}"))
        .query::<()>(&mut connection)
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(
        test_looper_server::logs::feed::COMPLETION_GRACE_MS + 200,
    ))
    .await;
    let response = reqwest::get(server.url(&format!("/api/runs/{run_id}/log")))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["X-Log-Complete"], "false");
    let log = response.text().await.unwrap();
    assert!(log.contains("this run's log has expired"), "{log}");
    let page = reqwest::get(server.url(&format!("/runs/{run_id}")))
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    // The next read, past the notice, is empty and complete.
    let rest = reqwest::get(server.url(&format!("/api/runs/{run_id}/log?offset={}", log.len())))
        .await
        .unwrap();
    assert_eq!(rest.headers()["X-Log-Complete"], "true");
    assert_eq!(rest.text().await.unwrap(), "");
}
