//! GitHub REST v3: repos of an org or user, branches, commit statuses.

use super::pagination::next_link;
use super::{
    clone_url, http_client, send, send_json, CommitState, CommitStatus, RemoteRepo, ScmError,
    MAX_PAGES,
};
use crate::config::GithubSourceControl;
use serde::Deserialize;

/// Context shown next to the statuses this server posts.
pub const STATUS_CONTEXT: &str = "test-looper";

/// A GitHub client for one owner (`org:<name>` or `user:<name>`).
pub struct GithubApi {
    http: reqwest::Client,
    api_url: String,
    web_url: String,
    clone_base: String,
    owner_kind: OwnerKind,
    owner: String,
    token: String,
    pub(super) post_commit_statuses: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OwnerKind {
    Org,
    User,
}

#[derive(Deserialize)]
struct RepoItem {
    name: String,
}

#[derive(Deserialize)]
struct BranchItem {
    name: String,
    commit: BranchCommit,
}

#[derive(Deserialize)]
struct BranchCommit {
    sha: String,
}

impl GithubApi {
    pub fn new(config: &GithubSourceControl) -> Self {
        let (owner_kind, owner) = match config.owner.split_once(':') {
            Some(("user", name)) => (OwnerKind::User, name.to_owned()),
            Some((_, name)) => (OwnerKind::Org, name.to_owned()),
            None => (OwnerKind::Org, config.owner.clone()),
        };
        GithubApi {
            http: http_client(),
            api_url: config.api_url.trim_end_matches('/').to_owned(),
            web_url: config.web_url.trim_end_matches('/').to_owned(),
            clone_base: config.clone_url.clone(),
            owner_kind,
            owner,
            token: config.access_token.clone(),
            post_commit_statuses: config.post_commit_statuses,
        }
    }

    fn get(&self, url: &str) -> reqwest::RequestBuilder {
        self.http
            .get(url)
            .bearer_auth(&self.token)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
    }

    async fn get_all<T: serde::de::DeserializeOwned>(
        &self,
        first: String,
    ) -> Result<Vec<T>, ScmError> {
        let mut items = Vec::new();
        let mut next = Some(first);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            let (page, headers): (Vec<T>, _) = send_json(self.get(&url), &url).await?;
            items.extend(page);
            next = next_link(&headers).filter(|_| pages < MAX_PAGES);
        }
        Ok(items)
    }

    pub async fn list_repos(&self) -> Result<Vec<RemoteRepo>, ScmError> {
        let scope = match self.owner_kind {
            OwnerKind::Org => "orgs",
            OwnerKind::User => "users",
        };
        let url = format!("{}/{scope}/{}/repos?per_page=100", self.api_url, self.owner);
        let items: Vec<RepoItem> = self.get_all(url).await?;
        Ok(items
            .into_iter()
            .map(|item| RemoteRepo {
                clone_url: clone_url(&self.clone_base, &format!("{}/{}", self.owner, item.name)),
                name: item.name,
            })
            .collect())
    }

    pub async fn list_branches(&self, repo: &str) -> Result<Vec<(String, String)>, ScmError> {
        let url = format!(
            "{}/repos/{}/{repo}/branches?per_page=100",
            self.api_url, self.owner
        );
        let items: Vec<BranchItem> = self.get_all(url).await?;
        Ok(items.into_iter().map(|b| (b.name, b.commit.sha)).collect())
    }

    pub async fn post_status(
        &self,
        repo: &str,
        commit: &str,
        status: &CommitStatus,
    ) -> Result<(), ScmError> {
        let url = format!(
            "{}/repos/{}/{repo}/statuses/{commit}",
            self.api_url, self.owner
        );
        let state = match status.state {
            CommitState::Pending => "pending",
            CommitState::Success => "success",
            CommitState::Failure => "failure",
        };
        let body = serde_json::json!({
            "state": state,
            "target_url": status.target_url,
            "description": truncate(&status.description, 140),
            "context": STATUS_CONTEXT,
        });
        let request = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .header("Accept", "application/vnd.github+json")
            .json(&body);
        send(request, &url).await?;
        Ok(())
    }

    pub fn commit_web_url(&self, repo: &str, commit: &str) -> String {
        format!("{}/{}/{repo}/commit/{commit}", self.web_url, self.owner)
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}
