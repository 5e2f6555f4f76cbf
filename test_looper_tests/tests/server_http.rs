//! The server over real HTTP: health reflects Redis, the first page lists the configured repos.

use test_looper_tests::server::local_config;
use test_looper_tests::{GitRepo, RedisServer, TestServer};

#[actix_web::test]
async fn healthz_reports_redis_connected() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(local_config(dir.path(), &redis.url()));
    let response = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["redis"], "connected");
}

#[actix_web::test]
async fn healthz_is_503_with_the_reason_when_redis_is_down() {
    let redis = RedisServer::start();
    let url = redis.url();
    drop(redis);
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(local_config(dir.path(), &url));
    let response = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    assert!(
        body["redis"].as_str().unwrap().contains("unreachable"),
        "{body}"
    );
}

#[actix_web::test]
async fn repos_page_lists_local_repos_escaped() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    for name in ["alpha", "group/beta", "<script>"] {
        GitRepo::init_bare(&dir.path().join("repos").join(name)).commit(
            "master",
            "c",
            &[("f", "x")],
        );
    }
    let server = TestServer::start(local_config(dir.path(), &redis.url()));
    let page = reqwest::get(server.url("/repos"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(">alpha</a>"), "{page}");
    assert!(page.contains(">group/beta</a>"), "{page}");
    assert!(
        page.contains("&#60;script&#62;") && !page.contains("<script>"),
        "{page}"
    );
}

#[actix_web::test]
async fn static_files_are_served() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(local_config(dir.path(), &redis.url()));
    let response = reqwest::get(server.url("/static/style.css")).await.unwrap();
    assert_eq!(response.status(), 200);
    let traversal = reqwest::get(server.url("/static/../Cargo.toml"))
        .await
        .unwrap();
    assert_ne!(traversal.status(), 200);
}

#[actix_web::test]
async fn a_real_browser_sees_the_repos_page() {
    use fantoccini::Locator;
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    GitRepo::init_bare(&dir.path().join("repos/demo_repo")).commit("master", "c", &[("f", "x")]);
    let server = TestServer::start(local_config(dir.path(), &redis.url()));
    let browser = test_looper_tests::Browser::start().await;
    browser.client.goto(&server.url("/repos")).await.unwrap();
    let cell = browser
        .client
        .find(Locator::Css("#repos td.repo-name a"))
        .await
        .unwrap();
    assert_eq!(cell.text().await.unwrap(), "demo_repo");
    let shot = browser.screenshot("repos_page").await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000);
    browser.close().await;
}
