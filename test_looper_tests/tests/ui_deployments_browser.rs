//! An interactive deployment end to end in headless Chromium, against real Redis, git,
//! Docker and the local pool's real worker processes: BOOT on the commit page opens the
//! terminal page, which shows the "waiting for hardware" banner and then the container's
//! shell prompt; keys typed into xterm.js run in the container (`echo $((6*7))` prints 42),
//! also after the page's socket dropped and resumed from its offset (nothing repeated);
//! `/deployments` lists the deployment with one client; "shutdown" ends it and the terminal
//! says so. Screenshots go to the build dir's `browser-screenshots/`.

use fantoccini::{Client, Locator};
use std::time::Duration;
use test_looper_tests::install::{make_repo, Install, PoolOptions};
use test_looper_tests::{Browser, DockerEngine};

const DEFS: &str = r#"
looper_version: 4
environments:
  linux:
    platform: linux
    image:
      dockerfile: docker/Dockerfile
tests:
  shell/linux:
    environment: linux
    command: echo the suite is ready
"#;

const DOCKERFILE: &str = "FROM test-looper/base:1\nRUN mkdir -p /opt/app\n";

/// The terminal's text as xterm.js holds it.
const TERMINAL_TEXT: &str = "return window.__tlTerminalText ? window.__tlTerminalText() : ''";

async fn terminal_text(client: &Client) -> String {
    client
        .execute(TERMINAL_TEXT, vec![])
        .await
        .unwrap()
        .as_str()
        .map(String::from)
        .unwrap_or_default()
}

/// Polls the terminal's text until `done` accepts it (a hang guard of `limit`).
async fn wait_for_terminal(
    client: &Client,
    what: &str,
    limit: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let text = terminal_text(client).await;
        if done(&text) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; the terminal shows:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The last non-empty line ends like a shell prompt.
fn shows_prompt(text: &str) -> bool {
    text.contains("accepting deployment")
        && text
            .lines()
            .rev()
            .find(|line| !line.trim().is_empty())
            .is_some_and(|line| line.trim_end().ends_with('#') || line.trim_end().ends_with('$'))
}

async fn wait_for_css(client: &Client, what: &str, css: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|err| panic!("{what} ({css}): {err}"))
}

#[actix_web::test]
async fn boot_type_into_the_terminal_list_and_shut_down() {
    let _engine = DockerEngine::connect().await;
    let (redis, dir) = Install::prepare();
    let files = vec![
        ("testlooper.yml".to_string(), DEFS.to_string()),
        ("docker/Dockerfile".to_string(), DOCKERFILE.to_string()),
    ];
    let (_repo, head) = make_repo(dir.path(), "app", &files);
    let install = Install::start(redis, dir, "ui_deploy", PoolOptions::default()).await;
    install.wait_for_branch("app", "master").await;

    let browser = Browser::start().await;
    let c = &browser.client;
    c.goto(&format!("{}/repos/app/-/commits/{head}", install.base_url))
        .await
        .unwrap();
    let boot = wait_for_css(
        c,
        "the BOOT button",
        "tr[data-test=\"shell/linux\"] button.boot",
    )
    .await;
    boot.click().await.unwrap();
    wait_for_css(c, "the terminal page", "#terminal .xterm").await;
    assert!(c.current_url().await.unwrap().path().ends_with("/terminal"));
    wait_for_terminal(c, "the waiting banner", Duration::from_secs(20), |text| {
        text.contains("TestLooper> Deployment for shell/linux (")
            && text.contains("waiting for hardware.")
    })
    .await;
    // Booting the image and the container takes a while the first time.
    wait_for_terminal(c, "a shell prompt", Duration::from_secs(180), shows_prompt).await;
    browser.screenshot("ui_deployment_prompt").await;

    let input = c
        .find(Locator::Css("#terminal .xterm-helper-textarea"))
        .await
        .unwrap();
    input.send_keys("echo $((6*7))\u{E007}").await.unwrap();
    let text = wait_for_terminal(c, "the shell's answer", Duration::from_secs(30), |text| {
        text.lines().any(|line| line.trim() == "42")
    })
    .await;
    assert!(text.contains("echo $((6*7))"), "{text}");
    browser.screenshot("ui_deployment_terminal").await;

    // A dropped socket: the banner shows, the page reconnects from its byte offset, and the
    // history is neither repeated nor missing.
    c.execute(
        "window.__tlTerminalSocket.close(4000, 'test drop');",
        vec![],
    )
    .await
    .unwrap();
    wait_for_terminal(
        c,
        "the disconnect banner",
        Duration::from_secs(20),
        |text| text.contains("<<<< DISCONNECTED >>>>"),
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while c
        .execute("return window.__tlTerminalSocket.readyState", vec![])
        .await
        .unwrap()
        .as_u64()
        != Some(1)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the terminal never reconnected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    input.send_keys("echo $((6*8))\u{E007}").await.unwrap();
    let text = wait_for_terminal(
        c,
        "the answer after reconnecting",
        Duration::from_secs(30),
        |text| text.lines().any(|line| line.trim() == "48"),
    )
    .await;
    assert_eq!(text.matches("waiting for hardware.").count(), 1, "{text}");
    assert_eq!(
        text.lines().filter(|line| line.trim() == "42").count(),
        1,
        "{text}"
    );

    // The deployments page, in a second tab while the terminal stays attached.
    let terminal_tab = c.window().await.unwrap();
    let list_tab = c.new_window(true).await.unwrap().handle;
    c.switch_to_window(list_tab).await.unwrap();
    c.goto(&format!("{}/deployments", install.base_url))
        .await
        .unwrap();
    let row = wait_for_css(
        c,
        "the deployment's row",
        "#deployments tr[data-deployment]",
    )
    .await;
    let deployment_id = row.attr("data-deployment").await.unwrap().unwrap();
    let clients = row.find(Locator::Css("td.clients")).await.unwrap();
    assert_eq!(clients.text().await.unwrap().trim(), "1");
    let cells = row.text().await.unwrap();
    assert!(cells.contains("shell/linux"), "{cells}");
    assert!(!cells.contains("waiting for hardware"), "{cells}");
    browser.screenshot("ui_deployments_page").await;

    // The machines page links the busy machine to the deployment's terminal, not to a run.
    c.goto(&format!("{}/machines", install.base_url))
        .await
        .unwrap();
    let terminal_link = format!("/deployments/{deployment_id}/terminal");
    wait_for_css(
        c,
        "the machine busy with the deployment",
        &format!("a[href='{terminal_link}']"),
    )
    .await;
    c.goto(&format!("{}/deployments", install.base_url))
        .await
        .unwrap();
    let row = wait_for_css(
        c,
        "the deployment's row again",
        "#deployments tr[data-deployment]",
    )
    .await;
    row.find(Locator::Css("button.shutdown"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_css(c, "the emptied list", "#no-deployments").await;
    let alive = install
        .scheduler()
        .read(|engine| engine.deployment(&deployment_id).map(|d| d.alive))
        .await;
    assert_eq!(alive, Some(false));

    c.switch_to_window(terminal_tab).await.unwrap();
    let text = wait_for_terminal(
        c,
        "the end of the session",
        Duration::from_secs(20),
        |text| {
            // The socket dropped on purpose earlier, then the session's end closed it.
            text.contains("TestLooper> Session Terminated")
                && text.matches("<<<< DISCONNECTED >>>>").count() == 2
        },
    )
    .await;
    assert_eq!(text.matches("Session Terminated").count(), 1, "{text}");
    let ended = c
        .find(Locator::Id("terminal"))
        .await
        .unwrap()
        .attr("data-ended")
        .await
        .unwrap();
    assert_eq!(ended.as_deref(), Some("1"), "a normal close: no reconnect");
    browser.screenshot("ui_deployment_terminated").await;
    browser.close().await;
    install.shutdown().await;
}
