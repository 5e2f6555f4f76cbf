//! GitLab (gitlab.com or self-managed): an OAuth application, then `GET /api/v4/user` and
//! the groups the user is a member of (`/api/v4/groups?min_access_level=10`; without that
//! filter GitLab also lists every public group).

use super::{get_json, get_pages, LoginError, OauthApp, PendingLogin};
use crate::config::GitlabConfig;
use crate::roles::Identity;
use serde::Deserialize;

const ACCEPT: &str = "application/json";

/// Login through a GitLab OAuth application.
#[derive(Debug)]
pub struct GitlabLogin {
    pub(crate) config: GitlabConfig,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct User {
    id: u64,
    username: String,
    name: Option<String>,
    email: Option<String>,
}

#[derive(Deserialize)]
struct Group {
    full_path: String,
}

impl GitlabLogin {
    pub fn new(config: GitlabConfig, http: reqwest::Client) -> Self {
        Self { config, http }
    }

    fn base(&self) -> &str {
        self.config.gitlab_url.as_str().trim_end_matches('/')
    }

    pub(crate) fn oauth(&self) -> OauthApp<'_> {
        let base = self.base();
        OauthApp {
            auth_url: format!("{base}/oauth/authorize"),
            token_url: format!("{base}/oauth/token"),
            client_id: &self.config.client_id,
            client_secret: &self.config.client_secret,
            scopes: &self.config.scopes,
            http: &self.http,
        }
    }

    pub(crate) async fn finish(
        &self,
        pending: &PendingLogin,
        code: &str,
    ) -> Result<Identity, LoginError> {
        let token = self.oauth().exchange(pending, code).await?;
        let api = format!("{}/api/v4", self.base());
        let user: User = get_json(&self.http, &format!("{api}/user"), &token, ACCEPT).await?;
        // Guest (10) or more: groups the user belongs to, not every visible group.
        let groups: Vec<Group> = get_pages(
            &self.http,
            &format!("{api}/groups?min_access_level=10"),
            &token,
            ACCEPT,
        )
        .await?;
        Ok(Identity {
            provider: self.config.name.clone(),
            subject: user.id.to_string(),
            login: user.username,
            name: user.name,
            email: user.email,
            orgs: Vec::new(),
            teams: Vec::new(),
            groups: groups.into_iter().map(|g| g.full_path).collect(),
        })
    }
}
