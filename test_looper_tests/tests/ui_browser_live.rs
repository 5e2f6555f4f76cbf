//! The UI attached to the real services, in headless Chromium: enable a branch by clicking,
//! watch a run's log stream live (chunks appended through the real log intake while the page
//! is open, across a dropped socket with no gap and no duplicate), see a grid cell change
//! when the scheduler records a completion (no reload), and download a stored artifact.
//! Screenshots go to the build dir's `browser-screenshots/`.

mod ui_support;

use fantoccini::{Client, Locator};
use std::time::Duration;
use test_looper_tests::{Browser, GitRepo, RedisServer};
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
"#;

struct Fixture {
    server: LiveServer,
    head: String,
    _dir: tempfile::TempDir,
    _redis: RedisServer,
}

async fn fixture() -> Fixture {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::init_bare(&dir.path().join("repos/app"));
    repo.commit("master", "first", &[("testlooper.yml", DEFS)]);
    let head = repo
        .commit("master", "second <b>bold</b>", &[("src.txt", "2")])
        .to_string();
    let server = LiveServer::start(dir.path(), &redis.url()).await;
    server.wait_for_branch("app", "master", &head).await;
    Fixture {
        server,
        head,
        _dir: dir,
        _redis: redis,
    }
}

/// Enables the branch and runs the build, returning an active run of core/linux.
async fn core_run_in_flight(f: &Fixture) -> (String, String) {
    f.server
        .scheduler()
        .set_branch_under_test("app", "master", true)
        .await
        .unwrap();
    f.server.register_machine("m1").await;
    f.server.take_run_of("m1", "core/linux").await
}

async fn script_text(client: &Client, script: &str) -> String {
    client
        .execute(script, vec![])
        .await
        .unwrap()
        .as_str()
        .map(String::from)
        .unwrap_or_default()
}

async fn wait_for_script(client: &Client, what: &str, script: &str, expected: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let value = script_text(client, script).await;
        if value == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out: {what}: last value {value:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
async fn a_browser_enables_a_branch_by_clicking() {
    let f = fixture().await;
    let browser = Browser::start().await;
    let c = &browser.client;
    c.goto(&f.server.url("/repos/app")).await.unwrap();
    let button = c
        .find(Locator::Css("tr[data-branch=\"master\"] button.toggle"))
        .await
        .unwrap();
    assert!(button.text().await.unwrap().contains("enable"));
    button.click().await.unwrap();
    c.wait()
        .for_element(Locator::Css("tr[data-branch=\"master\"].under-test"))
        .await
        .unwrap();
    let under_test = f
        .server
        .scheduler()
        .read(|engine| engine.branch("app", "master").map(|b| b.under_test))
        .await;
    assert_eq!(under_test, Some(true));
    // The head is enabled: its cells now wait for a machine instead of "not enabled".
    let status = c
        .find(Locator::Css("tr[data-branch=\"master\"] td.cell"))
        .await
        .unwrap();
    let class = status.attr("class").await.unwrap().unwrap_or_default();
    assert!(!class.contains("cell-not-enabled"), "{class}");
    browser.screenshot("ui_branch_enabled").await;
    browser.close().await;
}

#[actix_web::test]
async fn a_browser_watches_a_log_stream_live_across_a_dropped_socket() {
    let f = fixture().await;
    let (run_id, _) = core_run_in_flight(&f).await;
    let browser = Browser::start().await;
    let c = &browser.client;
    c.goto(&f.server.url(&format!("/runs/{run_id}")))
        .await
        .unwrap();
    // Opened before the first byte: the socket waits for output (late join).
    wait_for_script(
        c,
        "socket open",
        "return document.getElementById('log-status').textContent",
        "streaming live from byte 0",
    )
    .await;
    let text = "return document.getElementById('log-text').textContent";
    let mut offset = f.server.append_log(&run_id, 0, "step 1: compiling\n").await;
    wait_for_script(c, "first chunk shown", text, "step 1: compiling\n").await;
    offset = f
        .server
        .append_log(&run_id, offset, "step 2: testing ✓\n")
        .await;
    wait_for_script(
        c,
        "second chunk shown",
        text,
        "step 1: compiling\nstep 2: testing ✓\n",
    )
    .await;
    // Drop the socket; output keeps coming; the page resumes from its byte offset.
    c.execute("window.__tlLogSocket.close(4000, 'test drop');", vec![])
        .await
        .unwrap();
    let after = f.server.append_log(&run_id, offset, "step 3: done\n").await;
    wait_for_script(
        c,
        "resumed with no gap or duplicate",
        text,
        "step 1: compiling\nstep 2: testing ✓\nstep 3: done\n",
    )
    .await;
    let shown_offset = c
        .find(Locator::Id("log"))
        .await
        .unwrap()
        .attr("data-offset")
        .await
        .unwrap();
    assert_eq!(shown_offset, Some(after.to_string()));
    browser.screenshot("ui_live_log").await;
    browser.close().await;
}

#[actix_web::test]
async fn a_grid_cell_changes_without_a_reload_when_a_run_completes() {
    let f = fixture().await;
    let (run_id, _) = core_run_in_flight(&f).await;
    let browser = Browser::start().await;
    let c = &browser.client;
    c.goto(&f.server.url("/repos/app/-/branches/master"))
        .await
        .unwrap();
    let cells = format!(
        "return Array.from(document.querySelectorAll('tr[data-commit=\"{}\"] td.cell .cell-text')).map(e => e.textContent).join('|')",
        f.head
    );
    let before = script_text(c, &cells).await;
    assert!(before.contains("running"), "{before}");
    c.execute("window.__sameDocument = 'yes';", vec![])
        .await
        .unwrap();
    // Wait until the page listens to the live feed.
    wait_for_script(
        c,
        "live updates on",
        "return document.getElementById('live-status').className",
        "live-status on",
    )
    .await;
    f.server.complete(&run_id, false).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = script_text(c, &cells).await;
        if now.contains("1/1") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "cell never changed: {now}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let same = script_text(c, "return window.__sameDocument || 'reloaded'").await;
    assert_eq!(same, "yes", "the page must update in place");
    let failing = c
        .find(Locator::Css(&format!(
            "tr[data-commit=\"{}\"] td.cell-failing",
            f.head
        )))
        .await
        .unwrap();
    assert!(failing.text().await.unwrap().contains("100% ["));
    browser.screenshot("ui_grid_live_update").await;
    browser.close().await;
}

/// `Browser.setDownloadBehavior` over chromedriver's CDP passthrough.
#[derive(Debug)]
struct AllowDownloads(String);

impl fantoccini::wd::WebDriverCompatibleCommand for AllowDownloads {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (reqwest::Method, Option<String>) {
        let body = serde_json::json!({
            "cmd": "Browser.setDownloadBehavior",
            "params": {"behavior": "allow", "downloadPath": self.0, "eventsEnabled": false},
        });
        (reqwest::Method::POST, Some(body.to_string()))
    }
}

#[actix_web::test]
async fn a_browser_downloads_a_stored_artifact() {
    let f = fixture().await;
    let (run_id, hash) = core_run_in_flight(&f).await;
    let payload: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    f.server
        .store_run_file(&hash, &run_id, "output/report.bin", &payload)
        .await;
    f.server.complete(&run_id, true).await;
    let downloads = tempfile::tempdir().unwrap();
    let browser = Browser::start().await;
    let c = &browser.client;
    c.issue_cmd(AllowDownloads(downloads.path().display().to_string()))
        .await
        .expect("allow downloads");
    c.goto(&f.server.url(&format!("/runs/{run_id}")))
        .await
        .unwrap();
    browser.screenshot("ui_run_artifacts").await;
    c.find(Locator::LinkText("output/report.bin"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let target = downloads.path().join("report.bin");
    wait_until("the download finishes", || {
        let target = target.clone();
        async move { std::fs::metadata(&target).is_ok_and(|m| m.len() == 70_000) }
    })
    .await;
    assert_eq!(std::fs::read(&target).unwrap(), payload);
    browser.close().await;
}
