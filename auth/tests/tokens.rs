//! API tokens against a real `redis-server`: create, verify, list, revoke, expiry, the role
//! cap, owners who lose their role, and static tokens from the config.

mod support;

use chrono::{DateTime, Duration, Utc};
use redis::AsyncCommands;
use std::sync::{Arc, Mutex};
use support::processes::{redis_server, Service};
use test_looper_auth::config::StaticToken;
use test_looper_auth::tokens::{token_sha256, TOKEN_PREFIX};
use test_looper_auth::{CallerKind, Identity, Role, RoleRule, RoleRules, TokenError, TokenStore};

const PREFIX: &str = "tl_test:auth";
const STATIC_TOKEN: &str = "tl_static_deploy_bot_0123456789abcdef0123456789abcdef";

fn alice() -> Identity {
    Identity {
        provider: "github".into(),
        subject: "1".into(),
        login: "alice".into(),
        orgs: vec!["acme".into()],
        ..Identity::default()
    }
}

fn bob() -> Identity {
    Identity {
        provider: "github".into(),
        subject: "2".into(),
        login: "bob".into(),
        ..Identity::default()
    }
}

/// alice: operator (org acme); bob: admin (by login).
fn rules() -> RoleRules {
    let mut org = RoleRule::new(Role::Operator);
    org.org = Some("acme".into());
    let mut admin = RoleRule::new(Role::Admin);
    admin.users = vec!["bob".into()];
    RoleRules(vec![org, admin])
}

struct Fixture {
    _redis: Service,
    client: redis::Client,
    store: TokenStore,
    now: Arc<Mutex<DateTime<Utc>>>,
}

async fn fixture() -> Fixture {
    let redis = redis_server();
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/0", redis.port)).unwrap();
    let manager = redis::aio::ConnectionManager::new(client.clone())
        .await
        .unwrap();
    let now = Arc::new(Mutex::new(Utc::now()));
    let clock = now.clone();
    let store = TokenStore::new(
        manager,
        PREFIX,
        vec![StaticToken {
            name: "deploy-bot".into(),
            sha256: token_sha256(STATIC_TOKEN),
            role: Role::Operator,
        }],
    )
    .with_clock(move || *clock.lock().unwrap());
    Fixture {
        _redis: redis,
        client,
        store,
        now,
    }
}

#[tokio::test]
async fn create_then_verify_then_list_then_revoke() {
    let f = fixture().await;
    let new = f
        .store
        .create(&alice(), Role::Operator, "ci script", Role::Operator, None)
        .await
        .unwrap();
    let token = new.token.expose().to_string();
    assert!(token.starts_with(TOKEN_PREFIX));
    assert_eq!(token.len(), TOKEN_PREFIX.len() + 43);
    assert!(
        !format!("{new:?}").contains(&token),
        "the token must not reach Debug output"
    );
    assert_eq!(new.info.owner, "github:1");
    assert_eq!(new.info.name, "ci script");

    let caller = f
        .store
        .verify(&token, &rules())
        .await
        .unwrap()
        .expect("valid token");
    assert_eq!(caller.kind, CallerKind::ApiToken);
    assert_eq!(caller.who, "github:1");
    assert_eq!(caller.login, "alice");
    assert_eq!(caller.role, Role::Operator);
    assert_eq!(caller.token_id.as_deref(), Some(new.info.id.as_str()));

    // Redis holds the hash, never the token.
    let mut conn = f.client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = conn.keys("*").await.unwrap();
    for key in &keys {
        assert!(!key.contains(&token));
        let kind: String = redis::cmd("TYPE")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let dump = match kind.as_str() {
            "string" => conn.get::<_, String>(key).await.unwrap(),
            "hash" => format!("{:?}", conn.hgetall::<_, Vec<String>>(key).await.unwrap()),
            "set" => format!("{:?}", conn.smembers::<_, Vec<String>>(key).await.unwrap()),
            other => panic!("unexpected key type {other}"),
        };
        assert!(!dump.contains(&token), "{key} holds the token");
    }
    assert!(keys.contains(&format!("{PREFIX}:token:{}", token_sha256(&token))));

    let listed = f.store.list(&alice()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, new.info.id);
    assert!(listed[0].last_used.is_some(), "verify records the last use");
    assert!(f.store.list(&bob()).await.unwrap().is_empty());
    assert_eq!(f.store.list_all().await.unwrap().len(), 1);

    let revoked = f
        .store
        .revoke(&new.info.id, &alice(), Role::Operator)
        .await
        .unwrap();
    assert_eq!(revoked.id, new.info.id);
    assert!(f.store.verify(&token, &rules()).await.unwrap().is_none());
    assert!(f.store.list(&alice()).await.unwrap().is_empty());
    assert!(matches!(
        f.store.revoke(&new.info.id, &alice(), Role::Operator).await,
        Err(TokenError::NotFound(_))
    ));
    let keys: Vec<String> = conn.keys("*").await.unwrap();
    assert!(keys.is_empty(), "revoking leaves nothing behind: {keys:?}");
}

#[tokio::test]
async fn a_token_cannot_outrank_its_owner() {
    let f = fixture().await;
    let err = f
        .store
        .create(&alice(), Role::Operator, "too high", Role::Admin, None)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        TokenError::RoleAboveOwner {
            requested: Role::Admin,
            owner: Role::Operator
        }
    ));
    let viewer = f
        .store
        .create(&alice(), Role::Operator, "read only", Role::Viewer, None)
        .await
        .unwrap();
    let caller = f
        .store
        .verify(viewer.token.expose(), &rules())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(caller.role, Role::Viewer);
}

#[tokio::test]
async fn a_token_follows_its_owners_current_role() {
    let f = fixture().await;
    let new = f
        .store
        .create(&alice(), Role::Operator, "ci", Role::Operator, None)
        .await
        .unwrap();
    // The config now makes acme viewers only: the token is capped.
    let mut viewers = RoleRule::new(Role::Viewer);
    viewers.org = Some("acme".into());
    let caller = f
        .store
        .verify(new.token.expose(), &RoleRules(vec![viewers]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(caller.role, Role::Viewer);
    // And no rule at all: the token stops working.
    assert!(f
        .store
        .verify(new.token.expose(), &RoleRules(vec![]))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn tokens_expire() {
    let f = fixture().await;
    let start = *f.now.lock().unwrap();
    assert!(matches!(
        f.store
            .create(
                &alice(),
                Role::Operator,
                "past",
                Role::Viewer,
                Some(start - Duration::seconds(1))
            )
            .await,
        Err(TokenError::ExpiryInPast)
    ));
    let new = f
        .store
        .create(
            &alice(),
            Role::Operator,
            "a day",
            Role::Viewer,
            Some(start + Duration::days(1)),
        )
        .await
        .unwrap();
    assert!(f
        .store
        .verify(new.token.expose(), &rules())
        .await
        .unwrap()
        .is_some());
    *f.now.lock().unwrap() = start + Duration::days(1);
    assert!(f
        .store
        .verify(new.token.expose(), &rules())
        .await
        .unwrap()
        .is_none());
    // Still listed, as expired, so that its owner sees what happened.
    let listed = f.store.list(&alice()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].is_expired(start + Duration::days(1)));
    // Redis drops the record a week after the expiry.
    let mut conn = f.client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = conn
        .pttl(format!(
            "{PREFIX}:token:{}",
            token_sha256(new.token.expose())
        ))
        .await
        .unwrap();
    assert!(
        ttl > Duration::days(7).num_milliseconds()
            && ttl <= Duration::days(8).num_milliseconds() + 1000,
        "{ttl}"
    );
}

#[tokio::test]
async fn only_the_owner_or_an_admin_revokes() {
    let f = fixture().await;
    let new = f
        .store
        .create(&alice(), Role::Operator, "ci", Role::Operator, None)
        .await
        .unwrap();
    let mallory = Identity {
        login: "mallory".into(),
        subject: "3".into(),
        provider: "github".into(),
        ..Identity::default()
    };
    assert!(matches!(
        f.store.revoke(&new.info.id, &mallory, Role::Operator).await,
        Err(TokenError::NotAllowed)
    ));
    assert!(f
        .store
        .verify(new.token.expose(), &rules())
        .await
        .unwrap()
        .is_some());
    f.store
        .revoke(&new.info.id, &bob(), Role::Admin)
        .await
        .unwrap();
    assert!(f
        .store
        .verify(new.token.expose(), &rules())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn static_tokens_and_unknown_tokens() {
    let f = fixture().await;
    let caller = f
        .store
        .verify(STATIC_TOKEN, &rules())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(caller.kind, CallerKind::StaticToken);
    assert_eq!(caller.who, "static:deploy-bot");
    assert_eq!(caller.role, Role::Operator);
    assert_eq!(caller.token_id, None);
    for bad in [
        "",
        "tl_",
        "tl_unknown",
        &STATIC_TOKEN[..STATIC_TOKEN.len() - 1],
        &format!("{STATIC_TOKEN}x"),
        &token_sha256(STATIC_TOKEN),
    ] {
        assert!(
            f.store.verify(bad, &rules()).await.unwrap().is_none(),
            "{bad:?}"
        );
    }
    assert!(matches!(
        f.store
            .create(&alice(), Role::Operator, "  ", Role::Viewer, None)
            .await,
        Err(TokenError::InvalidName)
    ));
}

#[tokio::test]
async fn tokens_never_reach_the_logs() {
    let captured = support::logs::Captured::default();
    let _guard = captured.install();
    let f = fixture().await;
    let new = f
        .store
        .create(
            &alice(),
            Role::Operator,
            "ci",
            Role::Operator,
            Some(Utc::now() + Duration::hours(1)),
        )
        .await
        .unwrap();
    let token = new.token.expose().to_string();
    f.store.verify(&token, &rules()).await.unwrap().unwrap();
    *f.now.lock().unwrap() += Duration::hours(2);
    assert!(f.store.verify(&token, &rules()).await.unwrap().is_none());
    f.store
        .revoke(&new.info.id, &alice(), Role::Operator)
        .await
        .unwrap();
    f.store
        .verify(STATIC_TOKEN, &rules())
        .await
        .unwrap()
        .unwrap();
    let logs = captured.text();
    assert!(logs.contains("api token created"), "{logs}");
    assert!(
        logs.contains(&new.info.id),
        "logs name the token id: {logs}"
    );
    for secret in [token.as_str(), STATIC_TOKEN, &token[TOKEN_PREFIX.len()..]] {
        assert!(!logs.contains(secret), "a token in the logs: {logs}");
    }
}
