//! Logging in, acting and logging out in a real headless Chromium, through a real OpenID
//! Connect provider's own login page (`auth.mode: full`): an operator sees their name and
//! enables a branch; a viewer is refused; after logout a copied session cookie is dead.

mod auth_support;

use auth_support::{client, generous_limits, AuthServer};
use fantoccini::{Client, Locator};
use test_looper_auth::AuthMode;
use test_looper_tests::GitRepo;

const GOOD: &str = "looper_version: 4\nenvironments: {linux: {platform: linux, image: {dockerfile_contents: \"FROM x\"}}}\ntests:\n  core/linux: {command: \"./core\"}\n";

/// From a page offering the login button, through the provider's page, back logged in.
async fn log_in(c: &Client, subject: &str) {
    c.find(Locator::Css("#login-providers a.login-provider"))
        .await
        .expect("the login button")
        .click()
        .await
        .unwrap();
    // The provider's own authorization page.
    let form = c
        .form(Locator::Css("form"))
        .await
        .expect("the provider's form");
    form.set_by_name("sub", subject).await.unwrap();
    form.submit().await.unwrap();
    c.wait()
        .for_element(Locator::Css(".session .who"))
        .await
        .expect("back on the server, logged in");
}

async fn who(c: &Client) -> String {
    c.find(Locator::Css(".session .who"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[actix_web::test]
async fn log_in_act_be_refused_and_log_out_in_a_browser() {
    let server = AuthServer::start_with(AuthMode::Full, generous_limits(), |_, dir| {
        let repo = GitRepo::init_bare(&dir.join("repos/app"));
        repo.commit("master", "good", &[("testlooper.yml", GOOD)]);
    })
    .await;
    let browser = test_looper_tests::Browser::start().await;
    let c = &browser.client;

    // A stranger gets the login page, with the provider's button.
    c.goto(&server.url("/repos/app")).await.unwrap();
    let title = c
        .find(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(title, "Log in to continue");
    browser.screenshot("auth-01-login-needed").await;

    // The operator logs in and sees their name and role on the page they asked for.
    log_in(c, "olga").await;
    assert_eq!(who(c).await, "Olga Operator");
    let role = c
        .find(Locator::Css(".session .role"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(role, "operator");
    assert!(c
        .current_url()
        .await
        .unwrap()
        .path()
        .starts_with("/repos/app"));
    browser.screenshot("auth-02-operator-logged-in").await;

    // ... and acts: enabling a branch.
    c.find(Locator::Css("tr[data-branch=\"master\"] button.toggle"))
        .await
        .expect("the enable button")
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("tr[data-branch=\"master\"].under-test"))
        .await
        .expect("the branch is under test");
    browser.screenshot("auth-03-operator-acted").await;

    // A copy of the session cookie, as a thief would take it.
    let cookie = c
        .get_named_cookie("tl_session")
        .await
        .expect("session cookie");
    let stolen = format!("tl_session={}", cookie.value());
    let http = client();
    let with_stolen = http
        .get(server.url("/api/repos"))
        .header("Cookie", &stolen)
        .send()
        .await
        .unwrap();
    assert_eq!(
        with_stolen.status(),
        200,
        "the cookie works while logged in"
    );

    // Logging out ends the session on the server: the copy is dead too.
    c.find(Locator::Css("#logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("#login-providers"))
        .await
        .expect("logged out: the login page again");
    let with_stolen = http
        .get(server.url("/api/repos"))
        .header("Cookie", &stolen)
        .send()
        .await
        .unwrap();
    assert_eq!(
        with_stolen.status(),
        401,
        "a stolen cookie stops working after logout"
    );
    browser.screenshot("auth-04-logged-out").await;

    // A viewer reads but is refused when acting.
    log_in(c, "alice").await;
    assert_eq!(who(c).await, "Alice Viewer");
    c.goto(&server.url("/repos/app")).await.unwrap();
    c.find(Locator::Css("tr[data-branch=\"master\"] button.toggle"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // Wait for the refusal page itself (the old page's elements go stale as it is replaced).
    let message = c
        .wait()
        .for_element(Locator::Css("#login-message"))
        .await
        .expect("the refusal page")
        .text()
        .await
        .unwrap();
    assert!(message.contains("operator"), "{message}");
    let refused = c
        .find(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(refused, "Not allowed");
    browser.screenshot("auth-05-viewer-refused").await;
    browser.close().await;
}
