//! Decoding push payloads as GitHub and GitLab send them (JSON, or GitHub's form encoding
//! with the JSON in the `payload` field).

use serde::Deserialize;

/// What was pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushTarget {
    /// `refs/heads/<name>`; the full name is kept (`feature/x`).
    Branch(String),
    Tag(String),
    Other(String),
}

/// A decoded push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEvent {
    /// Names the repo may have on this server, best first.
    pub repo_candidates: Vec<String>,
    pub target: PushTarget,
    pub after: String,
}

/// The JSON bytes of the body.
pub fn json_body(body: &[u8], is_form: bool) -> Result<Vec<u8>, String> {
    if !is_form {
        return Ok(body.to_vec());
    }
    url::form_urlencoded::parse(body)
        .find(|(key, _)| key == "payload")
        .map(|(_, value)| value.into_owned().into_bytes())
        .ok_or_else(|| "form-encoded webhook without a payload field".to_owned())
}

fn target(reference: &str) -> PushTarget {
    if let Some(branch) = reference.strip_prefix("refs/heads/") {
        PushTarget::Branch(branch.to_owned())
    } else if let Some(tag) = reference.strip_prefix("refs/tags/") {
        PushTarget::Tag(tag.to_owned())
    } else {
        PushTarget::Other(reference.to_owned())
    }
}

#[derive(Deserialize)]
struct GithubPush {
    #[serde(rename = "ref")]
    reference: String,
    #[serde(default)]
    after: String,
    repository: GithubRepository,
}

#[derive(Deserialize)]
struct GithubRepository {
    name: String,
    #[serde(default)]
    full_name: Option<String>,
}

/// A GitHub `push` payload.
pub fn github_push(json: &[u8]) -> Result<PushEvent, String> {
    let push: GithubPush =
        serde_json::from_slice(json).map_err(|e| format!("malformed push payload: {e}"))?;
    let mut repo_candidates = Vec::new();
    if let Some(full) = push.repository.full_name.filter(|f| !f.is_empty()) {
        repo_candidates.push(full);
    }
    repo_candidates.push(push.repository.name);
    Ok(PushEvent {
        repo_candidates,
        target: target(&push.reference),
        after: push.after,
    })
}

#[derive(Deserialize)]
struct GitlabPush {
    #[serde(rename = "ref")]
    reference: String,
    #[serde(default)]
    after: String,
    project: GitlabProject,
}

#[derive(Deserialize)]
struct GitlabProject {
    path_with_namespace: String,
}

/// A GitLab `Push Hook` payload.
pub fn gitlab_push(json: &[u8]) -> Result<PushEvent, String> {
    let push: GitlabPush =
        serde_json::from_slice(json).map_err(|e| format!("malformed push payload: {e}"))?;
    Ok(PushEvent {
        repo_candidates: vec![push.project.path_with_namespace],
        target: target(&push.reference),
        after: push.after,
    })
}
