//! GitHub and GitHub Enterprise Server: an OAuth app, then `GET /user`, `/user/orgs` and
//! `/user/teams` with the user's token (scopes `read:user user:email read:org`).

use super::{get_json, get_pages, LoginError, OauthApp, PendingLogin};
use crate::config::GithubConfig;
use crate::roles::Identity;
use serde::Deserialize;

const ACCEPT: &str = "application/vnd.github+json";

/// Scopes asked of GitHub: the profile, and org and team memberships (private ones too).
pub const GITHUB_SCOPES: [&str; 3] = ["read:user", "user:email", "read:org"];

/// Login through a GitHub OAuth app.
#[derive(Debug)]
pub struct GithubLogin {
    pub(crate) config: GithubConfig,
    http: reqwest::Client,
    scopes: Vec<String>,
}

#[derive(Deserialize)]
struct User {
    id: u64,
    login: String,
    name: Option<String>,
    email: Option<String>,
}

#[derive(Deserialize)]
struct Org {
    login: String,
}

#[derive(Deserialize)]
struct Team {
    slug: String,
    organization: Org,
}

impl GithubLogin {
    pub fn new(config: GithubConfig, http: reqwest::Client) -> Self {
        Self {
            config,
            http,
            scopes: GITHUB_SCOPES.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub(crate) fn oauth(&self) -> OauthApp<'_> {
        let base = self.config.github_url.as_str().trim_end_matches('/');
        OauthApp {
            auth_url: format!("{base}/login/oauth/authorize"),
            token_url: format!("{base}/login/oauth/access_token"),
            client_id: &self.config.client_id,
            client_secret: &self.config.client_secret,
            scopes: &self.scopes,
            http: &self.http,
        }
    }

    pub(crate) async fn finish(
        &self,
        pending: &PendingLogin,
        code: &str,
    ) -> Result<Identity, LoginError> {
        let token = self.oauth().exchange(pending, code).await?;
        let api = self.config.api_base();
        let user: User = get_json(&self.http, &format!("{api}/user"), &token, ACCEPT).await?;
        let orgs: Vec<Org> =
            get_pages(&self.http, &format!("{api}/user/orgs"), &token, ACCEPT).await?;
        let teams: Vec<Team> =
            get_pages(&self.http, &format!("{api}/user/teams"), &token, ACCEPT).await?;
        Ok(Identity {
            provider: self.config.name.clone(),
            subject: user.id.to_string(),
            login: user.login,
            name: user.name,
            email: user.email,
            orgs: orgs.into_iter().map(|o| o.login).collect(),
            teams: teams
                .into_iter()
                .map(|t| format!("{}/{}", t.organization.login, t.slug))
                .collect(),
            groups: Vec::new(),
        })
    }
}
