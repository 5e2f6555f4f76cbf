//! Login flows: the OAuth 2.0 authorization-code flow with PKCE (S256) and `state`, plus
//! `nonce` for OpenID Connect, for GitHub, GitLab and any OpenID Connect provider.
//!
//! [`LoginProvider::start`] gives the URL to send the browser to and a [`PendingLogin`] for
//! the server to keep in the session; the provider sends the browser back to the redirect URI
//! with `code` and `state`, and [`LoginProvider::finish`] checks them, redeems the code and
//! returns the person's [`Identity`]. The provider's access token is used only to read who the
//! person is and is then dropped.

mod github;
mod gitlab;
mod oidc;

pub use github::GithubLogin;
pub use gitlab::GitlabLogin;
pub use oidc::OidcLogin;

use crate::config::{AuthConfig, ProviderConfig};
use crate::roles::Identity;
use crate::secret::{constant_time_eq, Secret};
use chrono::{DateTime, Duration, Utc};
use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use url::Url;

/// How long a started login may take to come back.
pub const PENDING_LOGIN_MAX_AGE: Duration = Duration::minutes(10);

/// Why a login failed. Messages never hold a code, a token or a secret.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("this login was started with provider `{started}`, not `{finished}`")]
    WrongProvider { started: String, finished: String },
    #[error("the `state` returned by the provider does not match the login that was started (a forged or crossed callback)")]
    StateMismatch,
    #[error("the login was started {age_secs} s ago and has expired; start again")]
    Expired { age_secs: i64 },
    #[error("the provider refused the login: {0}")]
    Denied(String),
    #[error("redeeming the authorization code failed: {0}")]
    TokenExchange(String),
    #[error("the ID token is not valid: {0}")]
    IdToken(String),
    #[error("reading the user from the provider failed: {0}")]
    UserInfo(String),
    #[error("OpenID Connect discovery at `{issuer}` failed: {message}")]
    Discovery { issuer: String, message: String },
    #[error("invalid login configuration: {0}")]
    Config(String),
}

/// A login in progress, kept server-side (in the session) between [`LoginProvider::start`]
/// and [`LoginProvider::finish`]. Its secrets are redacted in `Debug`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    /// The provider's name.
    pub provider: String,
    /// The `state` sent to the provider, which must come back unchanged.
    pub state: Secret,
    /// The PKCE code verifier (its S256 challenge went to the provider).
    pub pkce_verifier: Secret,
    /// The OpenID Connect `nonce`, which the ID token must carry.
    pub nonce: Option<Secret>,
    /// The redirect URI sent to the provider (the token request repeats it).
    pub redirect_uri: String,
    pub created: DateTime<Utc>,
}

/// An HTTP client for talking to providers: rustls, a timeout, and no redirects (a provider
/// endpoint that redirects is refused rather than followed, as the oauth2 crate advises).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(20))
        .user_agent(concat!("test-looper/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client builds")
}

/// One configured login provider.
#[derive(Debug)]
pub enum LoginProvider {
    Github(GithubLogin),
    Gitlab(GitlabLogin),
    Oidc(OidcLogin),
}

impl LoginProvider {
    /// The provider for `config`. OpenID Connect providers are discovered here (one HTTP
    /// round trip, which fails if the provider cannot be reached).
    pub async fn new(config: &ProviderConfig, http: reqwest::Client) -> Result<Self, LoginError> {
        Ok(match config {
            ProviderConfig::Github(c) => LoginProvider::Github(GithubLogin::new(c.clone(), http)),
            ProviderConfig::Gitlab(c) => LoginProvider::Gitlab(GitlabLogin::new(c.clone(), http)),
            ProviderConfig::Oidc(c) => {
                LoginProvider::Oidc(OidcLogin::discover(c.clone(), http).await?)
            }
        })
    }

    /// Every provider of `config`, in order.
    pub async fn all(config: &AuthConfig, http: reqwest::Client) -> Result<Vec<Self>, LoginError> {
        let mut providers = Vec::new();
        for provider in &config.providers {
            providers.push(Self::new(provider, http.clone()).await?);
        }
        Ok(providers)
    }

    pub fn name(&self) -> &str {
        match self {
            LoginProvider::Github(p) => &p.config.name,
            LoginProvider::Gitlab(p) => &p.config.name,
            LoginProvider::Oidc(p) => &p.config.name,
        }
    }

    /// Starts a login: the URL to send the browser to, and what to keep until it comes back
    /// to `redirect_uri` (which must be registered with the provider).
    pub fn start(&self, redirect_uri: &str) -> Result<(Url, PendingLogin), LoginError> {
        let redirect = RedirectUrl::new(redirect_uri.to_string())
            .map_err(|e| LoginError::Config(format!("redirect URI `{redirect_uri}`: {e}")))?;
        let (url, state, verifier, nonce) = match self {
            LoginProvider::Github(p) => {
                let (url, state, verifier) = p.oauth().start(redirect)?;
                (url, state, verifier, None)
            }
            LoginProvider::Gitlab(p) => {
                let (url, state, verifier) = p.oauth().start(redirect)?;
                (url, state, verifier, None)
            }
            LoginProvider::Oidc(p) => {
                let (url, state, verifier, nonce) = p.start(redirect)?;
                (url, state, verifier, Some(nonce))
            }
        };
        tracing::debug!(provider = %self.name(), "login started");
        Ok((
            url,
            PendingLogin {
                provider: self.name().to_string(),
                state,
                pkce_verifier: verifier,
                nonce,
                redirect_uri: redirect_uri.to_string(),
                created: Utc::now(),
            },
        ))
    }

    /// Finishes a login from the provider's callback (`code` and `state` from its query):
    /// checks the provider, the state and the age of `pending`, redeems the code with the PKCE
    /// verifier, and reads who logged in.
    pub async fn finish(
        &self,
        pending: PendingLogin,
        code: &str,
        state: &str,
    ) -> Result<Identity, LoginError> {
        self.check_pending(&pending, state, Utc::now())?;
        let identity = match self {
            LoginProvider::Github(p) => p.finish(&pending, code).await?,
            LoginProvider::Gitlab(p) => p.finish(&pending, code).await?,
            LoginProvider::Oidc(p) => p.finish(&pending, code).await?,
        };
        tracing::info!(provider = %self.name(), login = %identity.login, subject = %identity.subject, "login finished");
        Ok(identity)
    }

    fn check_pending(
        &self,
        pending: &PendingLogin,
        state: &str,
        now: DateTime<Utc>,
    ) -> Result<(), LoginError> {
        if pending.provider != self.name() {
            return Err(LoginError::WrongProvider {
                started: pending.provider.clone(),
                finished: self.name().to_string(),
            });
        }
        if !constant_time_eq(pending.state.expose().as_bytes(), state.as_bytes()) {
            return Err(LoginError::StateMismatch);
        }
        let age = now - pending.created;
        if age > PENDING_LOGIN_MAX_AGE || age < -Duration::minutes(1) {
            return Err(LoginError::Expired {
                age_secs: age.num_seconds(),
            });
        }
        Ok(())
    }
}

/// A plain OAuth 2.0 client (GitHub, GitLab): endpoints, credentials and scopes.
pub(crate) struct OauthApp<'a> {
    pub auth_url: String,
    pub token_url: String,
    pub client_id: &'a str,
    pub client_secret: &'a Secret,
    pub scopes: &'a [String],
    pub http: &'a reqwest::Client,
}

fn config_error(what: &str, err: impl std::fmt::Display) -> LoginError {
    LoginError::Config(format!("{what}: {err}"))
}

/// The text of an error and its sources (reqwest hides the cause in `source()`).
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A failed token request, in words. GitHub answers a refused code with HTTP 200 and an
/// `error` field instead of a token, which the oauth2 crate reports as unparsable: read the
/// error out of the body then.
pub(crate) fn token_error<RE, T>(err: oauth2::RequestTokenError<RE, T>) -> LoginError
where
    RE: std::error::Error + 'static,
    T: oauth2::ErrorResponse + 'static,
{
    #[derive(Deserialize)]
    struct OauthErrorBody {
        error: String,
        error_description: Option<String>,
    }
    if let oauth2::RequestTokenError::Parse(_, body) = &err {
        if let Ok(body) = serde_json::from_slice::<OauthErrorBody>(body) {
            let description = body
                .error_description
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            return LoginError::TokenExchange(format!("{}{description}", body.error));
        }
    }
    LoginError::TokenExchange(error_chain(&err))
}

impl OauthApp<'_> {
    fn client(
        &self,
        redirect: RedirectUrl,
    ) -> Result<
        BasicClient<
            oauth2::EndpointSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointSet,
        >,
        LoginError,
    > {
        Ok(BasicClient::new(ClientId::new(self.client_id.to_string()))
            .set_client_secret(ClientSecret::new(self.client_secret.expose().to_string()))
            .set_auth_uri(
                AuthUrl::new(self.auth_url.clone())
                    .map_err(|e| config_error("authorize URL", e))?,
            )
            .set_token_uri(
                TokenUrl::new(self.token_url.clone()).map_err(|e| config_error("token URL", e))?,
            )
            // GitHub and GitLab document client_id and client_secret as form parameters.
            .set_auth_type(AuthType::RequestBody)
            .set_redirect_uri(redirect))
    }

    fn start(&self, redirect: RedirectUrl) -> Result<(Url, Secret, Secret), LoginError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state) = self
            .client(redirect)?
            .authorize_url(CsrfToken::new_random)
            .add_scopes(self.scopes.iter().map(|s| Scope::new(s.clone())))
            .set_pkce_challenge(challenge)
            .url();
        Ok((
            url,
            Secret::new(state.secret().clone()),
            Secret::new(verifier.secret().clone()),
        ))
    }

    /// Redeems `code`; the access token.
    async fn exchange(&self, pending: &PendingLogin, code: &str) -> Result<Secret, LoginError> {
        let redirect = RedirectUrl::new(pending.redirect_uri.clone())
            .map_err(|e| config_error("redirect URI", e))?;
        let response = self
            .client(redirect)?
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(
                pending.pkce_verifier.expose().to_string(),
            ))
            .request_async(self.http)
            .await
            .map_err(token_error)?;
        Ok(Secret::new(response.access_token().secret().clone()))
    }
}

/// GETs `url` with the bearer `token` and reads JSON.
pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    token: &Secret,
    accept: &str,
) -> Result<T, LoginError> {
    let response = http
        .get(url)
        .bearer_auth(token.expose())
        .header(reqwest::header::ACCEPT, accept)
        .send()
        .await
        .map_err(|e| LoginError::UserInfo(format!("GET {url}: {}", error_chain(&e))))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let body: String = body.chars().take(200).collect();
        return Err(LoginError::UserInfo(format!(
            "GET {url}: HTTP {status}: {body}"
        )));
    }
    response.json().await.map_err(|e| {
        LoginError::UserInfo(format!("GET {url}: unreadable answer: {}", error_chain(&e)))
    })
}

/// Pages through a list endpoint (`per_page=100&page=N`) until a short page, at most
/// `MAX_PAGES` pages.
pub(crate) async fn get_pages<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    token: &Secret,
    accept: &str,
) -> Result<Vec<T>, LoginError> {
    const PER_PAGE: usize = 100;
    const MAX_PAGES: usize = 10;
    let separator = if url.contains('?') { '&' } else { '?' };
    let mut all = Vec::new();
    for page in 1..=MAX_PAGES {
        let items: Vec<T> = get_json(
            http,
            &format!("{url}{separator}per_page={PER_PAGE}&page={page}"),
            token,
            accept,
        )
        .await?;
        let short = items.len() < PER_PAGE;
        all.extend(items);
        if short {
            break;
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GithubConfig;

    fn github() -> LoginProvider {
        LoginProvider::Github(GithubLogin::new(
            GithubConfig {
                name: "github".into(),
                client_id: "id".into(),
                client_secret: Secret::new("s3cret"),
                github_url: Url::parse("https://github.example.com").unwrap(),
                api_url: None,
            },
            http_client(),
        ))
    }

    #[test]
    fn start_sends_pkce_s256_and_state_and_keeps_the_verifier() {
        let provider = github();
        let (url, pending) = provider
            .start("https://ci.example.com/auth/github/callback")
            .unwrap();
        assert!(url
            .as_str()
            .starts_with("https://github.example.com/login/oauth/authorize?"));
        let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(query["code_challenge_method"], "S256");
        assert_eq!(query["state"], pending.state.expose());
        assert_eq!(query["client_id"], "id");
        assert_eq!(
            query["redirect_uri"],
            "https://ci.example.com/auth/github/callback"
        );
        assert!(!url.as_str().contains("s3cret"));
        assert!(!url.as_str().contains(pending.pkce_verifier.expose()));
        let debug = format!("{pending:?}");
        assert!(
            !debug.contains(pending.state.expose())
                && !debug.contains(pending.pkce_verifier.expose())
        );
        // Two logins never share a state or a verifier.
        let (_, other) = provider
            .start("https://ci.example.com/auth/github/callback")
            .unwrap();
        assert_ne!(other.state.expose(), pending.state.expose());
        assert_ne!(other.pkce_verifier.expose(), pending.pkce_verifier.expose());
    }

    #[test]
    fn pending_checks_provider_state_and_age() {
        let provider = github();
        let (_, pending) = provider.start("https://ci.example.com/cb").unwrap();
        let now = pending.created;
        let state = pending.state.expose().to_string();
        provider.check_pending(&pending, &state, now).unwrap();
        assert!(matches!(
            provider.check_pending(&pending, "forged", now),
            Err(LoginError::StateMismatch)
        ));
        assert!(matches!(
            provider.check_pending(&pending, &state, now + Duration::minutes(11)),
            Err(LoginError::Expired { .. })
        ));
        let elsewhere = PendingLogin {
            provider: "gitlab".into(),
            ..pending.clone()
        };
        assert!(matches!(
            provider.check_pending(&elsewhere, &state, now),
            Err(LoginError::WrongProvider { .. })
        ));
        let json = serde_json::to_string(&pending).unwrap();
        let back: PendingLogin = serde_json::from_str(&json).unwrap();
        assert_eq!(back.state.expose(), state);
    }
}
