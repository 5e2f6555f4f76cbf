//! Who may look at and act on this server: the server's side of [`test_looper_auth`].
//!
//! - [`AccessControl`]: the `auth:` section made live (providers, token store, rate limits,
//!   audit log, trusted proxies, the server's CSRF token), one per server.
//! - [`guard`]: the middleware every request passes: it finds the caller (bearer token,
//!   session cookie or nobody), the route's [`Need`] in the route table
//!   ([`crate::web::routes`]), and answers 401/403/429 or lets the request through with its
//!   [`RequestCaller`].
//! - [`login`]: the login page, the providers' login and callback routes, logout.
//! - [`tokens_page`]: personal API tokens (page and JSON).
//! - [`audit_log`]: the durable audit log.
//! - [`deployment_rules`]: who may attach to or shut down a deployment.
//! - [`session_store`], [`client_ip`], [`tls`]: the session store in Redis, the client
//!   address behind trusted proxies, the listener's TLS configuration.

pub mod audit_log;
pub mod client_ip;
pub mod deployment_rules;
pub mod guard;
pub mod login;
pub mod session_store;
pub mod tls;
pub mod tokens_page;

use crate::config::Config;
use crate::web::csrf::CsrfToken;
use actix_web::{dev::Payload, FromRequest, HttpMessage, HttpRequest};
use std::net::{IpAddr, Ipv4Addr};
use test_looper_auth::config::StaticToken;
use test_looper_auth::login::http_client;
use test_looper_auth::session::SessionConfig;
use test_looper_auth::{
    Access, AuditEvent, AuthMode, Caller, LoginError, LoginProvider, ProviderConfig, RateLimiter,
    RoleRules, TokenStore,
};

pub use audit_log::AuditLog;
pub use client_ip::TrustedProxies;

/// Session keys.
pub const SESSION_USER: &str = "user";
pub const SESSION_PENDING_LOGIN: &str = "pending_login";
pub const SESSION_NEXT: &str = "next";

/// Prefix of the token store's Redis keys.
const TOKEN_PREFIX: &str = "tl:auth";

/// What a route needs from its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Anyone, whatever the mode: health, static files, the login routes, webhooks (signed
    /// by the source-control host) and the worker channel (the worker token).
    Public,
    /// Read, act or administer: the role the mode asks for ([`test_looper_auth::required_role`]).
    Role(Access),
    /// A person logged in with a session, whatever the mode: their own API tokens.
    Person,
}

/// One configured login provider, discovered (OpenID Connect) on first use and retried
/// after a failure, so that a provider that is down at start does not stop the server.
struct ProviderSlot {
    config: ProviderConfig,
    ready: tokio::sync::OnceCell<LoginProvider>,
}

/// The live `auth:` section.
pub struct AccessControl {
    pub mode: AuthMode,
    pub rules: RoleRules,
    pub session: SessionConfig,
    static_tokens: Vec<StaticToken>,
    providers: Vec<ProviderSlot>,
    tokens: tokio::sync::OnceCell<TokenStore>,
    pub limiter: RateLimiter,
    pub audit: AuditLog,
    pub proxies: TrustedProxies,
    /// The server's CSRF token, for callers without a session (`auth.mode: none`).
    pub csrf: CsrfToken,
    /// The listener speaks TLS: cookies are `Secure`, responses carry HSTS.
    pub tls: bool,
    /// The URL browsers use (login callbacks are built from it).
    pub public_url: String,
    http: reqwest::Client,
}

impl AccessControl {
    pub fn from_config(config: &Config) -> Self {
        let auth = &config.auth;
        AccessControl {
            mode: auth.mode,
            rules: auth.roles.clone(),
            session: auth.session.clone(),
            static_tokens: auth.static_tokens.clone(),
            providers: auth
                .providers
                .iter()
                .map(|config| ProviderSlot {
                    config: config.clone(),
                    ready: tokio::sync::OnceCell::new(),
                })
                .collect(),
            tokens: tokio::sync::OnceCell::new(),
            limiter: RateLimiter::new(&auth.rate_limits),
            audit: AuditLog::default(),
            proxies: TrustedProxies::new(&config.server.trusted_proxies),
            csrf: CsrfToken::generate(),
            tls: config.server.tls.is_some(),
            public_url: config.server.public_url(),
            http: http_client(),
        }
    }

    /// The configured providers' names, in order.
    pub fn provider_names(&self) -> impl Iterator<Item = &str> {
        self.providers.iter().map(|slot| slot.config.name())
    }

    /// The login provider `name`, discovering it first if needed.
    pub async fn provider(&self, name: &str) -> Result<&LoginProvider, LoginError> {
        let slot = self
            .providers
            .iter()
            .find(|slot| slot.config.name() == name)
            .ok_or_else(|| LoginError::Config(format!("no login provider is named `{name}`")))?;
        slot.ready
            .get_or_try_init(|| LoginProvider::new(&slot.config, self.http.clone()))
            .await
    }

    /// The personal and static token store (connects to Redis on first use).
    pub async fn tokens(
        &self,
        redis: &crate::redis_connection::RedisHandle,
    ) -> redis::RedisResult<&TokenStore> {
        self.tokens
            .get_or_try_init(|| async {
                Ok(TokenStore::new(
                    redis.connection().await?,
                    TOKEN_PREFIX,
                    self.static_tokens.clone(),
                ))
            })
            .await
    }

    /// Where provider `name` sends the browser back.
    pub fn redirect_uri(&self, name: &str) -> String {
        format!(
            "{}/auth/{}/callback",
            self.public_url,
            crate::views::paths::encode_component(name)
        )
    }
}

/// The caller of one request and their address, put in the request's extensions by the
/// [`guard`]; handlers extract it.
#[derive(Clone, Debug)]
pub struct RequestCaller {
    pub caller: Caller,
    pub client_ip: IpAddr,
}

impl RequestCaller {
    /// The caller the guard found for `req` (anonymous when no guard ran, e.g. in tests of
    /// a single handler).
    pub fn of(req: &HttpRequest) -> RequestCaller {
        req.extensions()
            .get::<RequestCaller>()
            .cloned()
            .unwrap_or_else(|| RequestCaller {
                caller: Caller::Anonymous,
                client_ip: req
                    .peer_addr()
                    .map(|a| a.ip())
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            })
    }

    /// An audit record of `action` by this caller from this address.
    pub fn audit(&self, action: impl Into<String>) -> AuditEvent {
        self.caller.audit(action).client_ip(self.client_ip)
    }

    /// The CSRF token this caller's pages carry: the session's, else the server's.
    pub fn csrf_token<'a>(&'a self, access: &'a AccessControl) -> &'a str {
        match &self.caller {
            Caller::Session(user) => user.csrf_token.expose(),
            _ => access.csrf.value(),
        }
    }
}

impl FromRequest for RequestCaller {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(RequestCaller::of(req)))
    }
}

/// Forgets rate-limit state of clients whose quota has refilled, every minute.
pub fn spawn_rate_limit_sweeper(
    context: std::sync::Arc<crate::AppContext>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            context.access.limiter.retain_recent();
        }
    })
}
