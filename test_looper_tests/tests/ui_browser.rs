//! The UI in a real headless Chromium: navigate from the repos page to a branch grid and open
//! a commit whose definitions are broken to read the error (screenshots kept under the build
//! dir's `browser-screenshots/`).

use fantoccini::Locator;
use test_looper_tests::server::local_config;
use test_looper_tests::{GitRepo, RedisServer, TestServer};

const GOOD: &str = "looper_version: 4\nenvironments: {linux: {platform: linux, image: {dockerfile_contents: \"FROM x\"}}}\ntests:\n  core/linux: {command: \"./core\"}\n  ui/linux: {command: \"./ui\"}\n";
const BROKEN: &str = "looper_version: 4\ntests:\n  t/linux: {command: [unclosed\n";

#[actix_web::test]
async fn a_browser_clicks_to_a_broken_commit_and_reads_its_error() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::init_bare(&dir.path().join("repos/app"));
    repo.commit("master", "good", &[("testlooper.yml", GOOD)]);
    let broken = repo
        .commit("master", "break <it>", &[("testlooper.yml", BROKEN)])
        .to_string();
    let server = TestServer::start(local_config(dir.path(), &redis.url()));
    let browser = test_looper_tests::Browser::start().await;
    let c = &browser.client;
    c.goto(&server.url("/repos")).await.unwrap();
    c.find(Locator::Css("#repos td.repo-name a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.find(Locator::Css("#branches td.branch-name a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let row = c
        .find(Locator::Css(&format!("tr[data-commit=\"{broken}\"]")))
        .await
        .unwrap();
    let untestable = row.find(Locator::Css("td.cell-untestable")).await.unwrap();
    assert_eq!(
        untestable.text().await.unwrap().split_whitespace().next(),
        Some("untestable")
    );
    let subject = row.find(Locator::Css("td.subject")).await.unwrap();
    assert_eq!(subject.text().await.unwrap(), "break <it>");
    browser.screenshot("ui_branch_grid").await;
    row.find(Locator::Css("a.mono"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let error = c
        .find(Locator::Css("#definitions-error pre"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(error.contains("testlooper.yml"), "{error}");
    assert!(error.contains("line 4"), "{error}");
    let marked = c
        .find(Locator::Css("#definitions-file li.error-line"))
        .await
        .unwrap();
    assert!(marked.text().await.unwrap().contains("unclosed"));
    let shot = browser.screenshot("ui_broken_commit").await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000);
    browser.close().await;
}
