//! GitLab REST v4: projects of a group (subgroups included), branches, commit statuses.

use super::pagination::next_page;
use super::{
    clone_url, http_client, send, send_json, CommitState, CommitStatus, RemoteRepo, ScmError,
    MAX_PAGES,
};
use crate::config::GitlabSourceControl;
use serde::Deserialize;

/// Name shown next to the statuses this server posts.
pub const STATUS_NAME: &str = "test-looper";

/// A GitLab client for one group.
pub struct GitlabApi {
    http: reqwest::Client,
    api_url: String,
    web_url: String,
    clone_base: String,
    group: String,
    token: String,
    pub(super) post_commit_statuses: bool,
}

#[derive(Deserialize)]
struct ProjectItem {
    path_with_namespace: String,
}

#[derive(Deserialize)]
struct BranchItem {
    name: String,
    commit: BranchCommit,
}

#[derive(Deserialize)]
struct BranchCommit {
    id: String,
}

fn encode(path: &str) -> String {
    url::form_urlencoded::byte_serialize(path.as_bytes()).collect()
}

impl GitlabApi {
    pub fn new(config: &GitlabSourceControl) -> Self {
        GitlabApi {
            http: http_client(),
            api_url: config.api_url.trim_end_matches('/').to_owned(),
            web_url: config.web_url.trim_end_matches('/').to_owned(),
            clone_base: config.clone_url.clone(),
            group: config.group.trim_matches('/').to_owned(),
            token: config.private_token.clone(),
            post_commit_statuses: config.post_commit_statuses,
        }
    }

    async fn get_all<T: serde::de::DeserializeOwned>(
        &self,
        base: String,
    ) -> Result<Vec<T>, ScmError> {
        let mut items = Vec::new();
        let mut page = 1;
        for _ in 0..MAX_PAGES {
            let url = format!("{base}&page={page}");
            let request = self.http.get(&url).header("PRIVATE-TOKEN", &self.token);
            let (batch, headers): (Vec<T>, _) = send_json(request, &url).await?;
            let empty = batch.is_empty();
            items.extend(batch);
            match next_page(&headers) {
                Some(next) if next > page && !empty => page = next,
                _ => break,
            }
        }
        Ok(items)
    }

    pub async fn list_repos(&self) -> Result<Vec<RemoteRepo>, ScmError> {
        let url = format!(
            "{}/groups/{}/projects?include_subgroups=true&per_page=100&order_by=id&sort=asc",
            self.api_url,
            encode(&self.group)
        );
        let items: Vec<ProjectItem> = self.get_all(url).await?;
        let prefix = format!("{}/", self.group);
        Ok(items
            .into_iter()
            .filter(|p| p.path_with_namespace.starts_with(&prefix))
            .map(|p| RemoteRepo {
                clone_url: clone_url(&self.clone_base, &p.path_with_namespace),
                name: p.path_with_namespace,
            })
            .collect())
    }

    pub async fn list_branches(&self, repo: &str) -> Result<Vec<(String, String)>, ScmError> {
        let url = format!(
            "{}/projects/{}/repository/branches?per_page=100",
            self.api_url,
            encode(repo)
        );
        let items: Vec<BranchItem> = self.get_all(url).await?;
        Ok(items.into_iter().map(|b| (b.name, b.commit.id)).collect())
    }

    pub async fn post_status(
        &self,
        repo: &str,
        commit: &str,
        status: &CommitStatus,
    ) -> Result<(), ScmError> {
        let url = format!(
            "{}/projects/{}/statuses/{commit}",
            self.api_url,
            encode(repo)
        );
        let state = match status.state {
            CommitState::Pending => "pending",
            CommitState::Success => "success",
            CommitState::Failure => "failed",
        };
        let body = serde_json::json!({
            "state": state,
            "target_url": status.target_url,
            "description": status.description,
            "name": STATUS_NAME,
        });
        let request = self
            .http
            .post(&url)
            .header("PRIVATE-TOKEN", &self.token)
            .json(&body);
        send(request, &url).await?;
        Ok(())
    }

    pub fn commit_web_url(&self, repo: &str, commit: &str) -> String {
        format!("{}/{repo}/-/commit/{commit}", self.web_url)
    }
}
