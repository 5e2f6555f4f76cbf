//! REST clients of the remote source-control back ends (GitHub, GitLab): list the repos of
//! an owner or group and their branches (paginated), and post commit statuses back
//! (switchable with the config's `post_commit_statuses`). Tokens travel in headers only and
//! never appear in errors or logs. What to post and when is decided by
//! [`crate::scheduler::status_reporter`], which follows the scheduler's change feed.

mod github;
mod gitlab;
mod pagination;

use crate::config::{GithubSourceControl, GitlabSourceControl};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use thiserror::Error;

pub use github::GithubApi;
pub use gitlab::GitlabApi;

/// Longest wait for one REST call.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Pages read at most from one listing (a safety net against a looping `next` link).
const MAX_PAGES: usize = 1000;

/// A repo of the remote back end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteRepo {
    /// The name the server uses (GitHub: bare name; GitLab: full path `group/sub/proj`).
    pub name: String,
    /// Where to fetch from (no credentials in it).
    pub clone_url: String,
}

/// The state of a commit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitState {
    Pending,
    Success,
    Failure,
}

/// A status to post on a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitStatus {
    pub state: CommitState,
    /// Link shown next to the status: the commit's page on this server.
    pub target_url: String,
    pub description: String,
}

/// Why a REST call failed.
#[derive(Debug, Error)]
pub enum ScmError {
    #[error("request to {url} failed: {message}")]
    Http { url: String, message: String },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("unexpected answer from {url}: {message}")]
    Decode { url: String, message: String },
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// The client of the configured back end.
pub enum ScmClient {
    Github(GithubApi),
    Gitlab(GitlabApi),
}

impl ScmClient {
    pub fn github(config: &GithubSourceControl) -> Self {
        ScmClient::Github(GithubApi::new(config))
    }

    pub fn gitlab(config: &GitlabSourceControl) -> Self {
        ScmClient::Gitlab(GitlabApi::new(config))
    }

    /// Every repo of the configured owner/group, all pages.
    pub async fn list_repos(&self) -> Result<Vec<RemoteRepo>, ScmError> {
        match self {
            ScmClient::Github(api) => api.list_repos().await,
            ScmClient::Gitlab(api) => api.list_repos().await,
        }
    }

    /// Every branch of `repo` and its head commit, all pages.
    pub async fn list_branches(&self, repo: &str) -> Result<Vec<(String, String)>, ScmError> {
        match self {
            ScmClient::Github(api) => api.list_branches(repo).await,
            ScmClient::Gitlab(api) => api.list_branches(repo).await,
        }
    }

    /// Whether the config asks for commit statuses.
    pub fn posts_statuses(&self) -> bool {
        match self {
            ScmClient::Github(api) => api.post_commit_statuses,
            ScmClient::Gitlab(api) => api.post_commit_statuses,
        }
    }

    /// Posts `status` on `commit` of `repo`; `Ok(false)` (and no request) when statuses are
    /// switched off in the config.
    pub async fn post_status(
        &self,
        repo: &str,
        commit: &str,
        status: &CommitStatus,
    ) -> Result<bool, ScmError> {
        if !self.posts_statuses() {
            return Ok(false);
        }
        match self {
            ScmClient::Github(api) => api.post_status(repo, commit, status).await?,
            ScmClient::Gitlab(api) => api.post_status(repo, commit, status).await?,
        }
        Ok(true)
    }

    /// The commit's page on the forge.
    pub fn commit_web_url(&self, repo: &str, commit: &str) -> String {
        match self {
            ScmClient::Github(api) => api.commit_web_url(repo, commit),
            ScmClient::Gitlab(api) => api.commit_web_url(repo, commit),
        }
    }
}

/// A reqwest client with the project's defaults (rustls, timeout, user agent).
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("test-looper/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// `base/path.git` for URL bases, `base:path.git` for scp-like ssh bases (`git@host`).
fn clone_url(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.contains("://") {
        format!("{base}/{path}.git")
    } else {
        format!("{base}:{path}.git")
    }
}

/// Sends `request`, checks the status and decodes the JSON body.
async fn send_json<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    url: &str,
) -> Result<(T, reqwest::header::HeaderMap), ScmError> {
    let response = send(request, url).await?;
    let headers = response.headers().clone();
    let value = response.json::<T>().await.map_err(|e| ScmError::Decode {
        url: url.to_owned(),
        message: e.without_url().to_string(),
    })?;
    Ok((value, headers))
}

/// Sends `request` and checks for a 2xx status.
async fn send(request: reqwest::RequestBuilder, url: &str) -> Result<reqwest::Response, ScmError> {
    let response = request.send().await.map_err(|e| ScmError::Http {
        url: url.to_owned(),
        message: e.without_url().to_string(),
    })?;
    let status = response.status();
    if !status.is_success() {
        let mut body = response.text().await.unwrap_or_default();
        body.truncate(500);
        return Err(ScmError::Status {
            url: url.to_owned(),
            status: status.as_u16(),
            body,
        });
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_urls_follow_the_base_style() {
        assert_eq!(
            clone_url("https://github.com/", "org/x"),
            "https://github.com/org/x.git"
        );
        assert_eq!(
            clone_url("git@github.com", "org/x"),
            "git@github.com:org/x.git"
        );
    }
}
