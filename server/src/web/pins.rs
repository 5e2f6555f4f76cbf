//! Cross-repo references in the UI: the branch **Pins** view (`…/branches/<b>?view=pins`,
//! see docs/definitions.md#branch-pins), the **Repo Refs** section of the commit page, their
//! JSON (`/api/branch_pins`, `/api/commit_refs`) and the **update pin** action, which
//! moves one manual pin to its branch's head ([`crate::git::pin_refs::update_pin`]) and asks
//! for a rescan so the new commit shows at once.

use crate::git::definitions_source::DefinitionsCaches;
use crate::git::pin_refs;
use crate::git::pin_refs::{PinStatus, ReferenceKind, References, RepoRef, UpdatePinError};
use crate::git::GitError;
use crate::reads::model::{ActionError, ReadError};
use crate::views::format::short_hash;
use crate::views::paths;
use crate::views::paths::InvalidName;
use crate::web::api::required;
use crate::web::error::ApiError;
use crate::web::render::html;
use crate::web::ui::Ui;
use actix_web::{web, HttpResponse};
use askama::Template;
use git2::Oid;
use serde::{Deserialize, Serialize};

/// One reference as a table row.
#[derive(Clone, Debug, Serialize)]
pub struct RefRow {
    #[serde(flatten)]
    pub reference: RepoRef,
    /// The pinned commit's page, when the repo and commit are known.
    pub commit_url: Option<String>,
    pub commit_short: String,
    /// Why there is no link (tooltip), or the full reference.
    pub commit_title: String,
    /// "fixed", "pin", "pin (auto)" or "import a/b".
    pub kind_text: String,
    /// `repo/branch` followed (pins only) and its page when it exists.
    pub target: String,
    pub target_url: Option<String>,
    /// The status as the page words it (pins only).
    pub status_text: String,
    /// A manual pin whose branch moved: the Update button is offered.
    pub can_update: bool,
    /// What the Update button will push.
    pub update_title: String,
}

/// The Pins view of a branch: the pins of its head commit.
#[derive(Clone, Debug, Serialize)]
pub struct BranchPinsView {
    pub repo: String,
    pub repo_url: String,
    pub branch: String,
    /// The branch page (commits view) and this view.
    pub url: String,
    pub pins_url: String,
    pub head: String,
    pub head_short: String,
    pub head_url: String,
    /// The head's definitions do not parse.
    pub error: Option<String>,
    pub pins: Vec<RefRow>,
}

/// The Repo Refs of a commit: every reference (fixed, pin, import).
#[derive(Clone, Debug, Serialize)]
pub struct CommitRefsView {
    pub repo: String,
    pub commit: String,
    /// The commit's definitions do not parse.
    pub error: Option<String>,
    pub refs: Vec<RefRow>,
}

#[derive(Template)]
#[template(path = "branch_pins.html")]
struct BranchPinsPage<'a> {
    csrf: &'a str,
    view: BranchPinsView,
}

fn read_error(error: GitError) -> ReadError {
    match error {
        GitError::UnknownRepo(repo) => ReadError::NotFound(format!("repo {repo}")),
        GitError::UnknownCommit { repo, commit } => {
            ReadError::NotFound(format!("commit {commit} of repo {repo}"))
        }
        other => ReadError::Internal(other.to_string()),
    }
}

async fn blocking<T: Send + 'static, E: Send + 'static>(
    job: impl FnOnce() -> Result<T, E> + Send + 'static,
    failed: impl FnOnce(String) -> E,
) -> Result<T, E> {
    match actix_web::rt::task::spawn_blocking(job).await {
        Ok(result) => result,
        Err(error) => Err(failed(format!("git task failed: {error}"))),
    }
}

/// The branch whose head holds the pins (the Pins view offers updates; Repo Refs does not).
struct PinningBranch<'a> {
    repo: &'a str,
    branch: &'a str,
    head: &'a str,
}

fn row(reference: RepoRef, pinning: Option<&PinningBranch<'_>>) -> RefRow {
    let commit_short = if reference.commit_known {
        short_hash(&reference.commit).to_owned()
    } else {
        reference.commit.clone()
    };
    let commit_title = if reference.commit_known {
        format!("{}/{}", reference.repo, reference.commit)
    } else if reference.commit == "HEAD" {
        "HEAD placeholder: not a real commit yet".to_owned()
    } else {
        format!(
            "commit {} of repo {} is not known to this server",
            reference.commit, reference.repo
        )
    };
    let commit_url = reference
        .commit_known
        .then(|| paths::commit_url(&reference.repo, &reference.commit));
    let target = match &reference.branch {
        Some(followed) => format!("{}/{followed}", reference.repo),
        None => String::new(),
    };
    let target_url = match (&reference.branch, &reference.branch_head) {
        (Some(followed), Some(_)) => Some(paths::branch_url(&reference.repo, followed)),
        _ => None,
    };
    let status_text = match &reference.status {
        None => String::new(),
        Some(PinStatus::Auto) => "auto (moved by the server)".to_owned(),
        Some(PinStatus::UnknownBranch) => format!("unknown branch {target}"),
        Some(PinStatus::UpToDate) => "up to date".to_owned(),
        Some(PinStatus::Behind {
            commits: Some(count),
        }) => format!(
            "behind: {count} commit{}",
            if *count == 1 { "" } else { "s" }
        ),
        Some(PinStatus::Behind { commits: None }) => "behind the branch head".to_owned(),
    };
    let update_title = match (&reference.status, &reference.branch_head, pinning) {
        (Some(PinStatus::Behind { .. }), Some(target_head), Some(pinning)) => format!(
            "Push to {}/{} (now at {}) a commit of its definitions file with {} pointing at {}, the head of {target}",
            pinning.repo,
            pinning.branch,
            short_hash(pinning.head),
            reference.name,
            short_hash(target_head),
        ),
        _ => String::new(),
    };
    let can_update = !update_title.is_empty();
    let kind_text = match reference.kind {
        ReferenceKind::Fixed => "fixed".to_owned(),
        ReferenceKind::Pin if reference.auto => "pin (auto)".to_owned(),
        ReferenceKind::Pin => "pin".to_owned(),
        ReferenceKind::Import => format!(
            "import {}",
            reference.import_source.as_deref().unwrap_or_default()
        ),
    };
    RefRow {
        commit_url,
        commit_short,
        commit_title,
        kind_text,
        target,
        target_url,
        status_text,
        can_update,
        update_title,
        reference,
    }
}

/// The Pins view of `branch`.
pub async fn branch_pins(ui: &Ui, repo: &str, branch: &str) -> Result<BranchPinsView, ReadError> {
    let git = ui.git.clone();
    let (repo, branch) = (repo.to_owned(), branch.to_owned());
    blocking(
        move || {
            let store = git.store();
            let head = pin_refs::branch_head(store, &repo, &branch)
                .map_err(read_error)?
                .ok_or_else(|| ReadError::NotFound(format!("branch {branch} of repo {repo}")))?;
            let head_text = head.to_string();
            let pinning = PinningBranch {
                repo: &repo,
                branch: &branch,
                head: &head_text,
            };
            let (error, pins) =
                match pin_refs::commit_references(store, &DefinitionsCaches::new(), &repo, head)
                    .map_err(read_error)?
                {
                    References::Invalid(message) => (Some(message), Vec::new()),
                    References::Listed(list) => (
                        None,
                        list.into_iter()
                            .filter(|r| r.kind == ReferenceKind::Pin)
                            .map(|r| row(r, Some(&pinning)))
                            .collect(),
                    ),
                };
            let url = paths::branch_url(&repo, &branch);
            Ok(BranchPinsView {
                repo_url: paths::repo_url(&repo),
                pins_url: format!("{url}?view=pins"),
                url,
                head_short: short_hash(&head_text).to_owned(),
                head_url: paths::commit_url(&repo, &head_text),
                head: head_text,
                error,
                pins,
                repo,
                branch,
            })
        },
        ReadError::Internal,
    )
    .await
}

/// The Repo Refs of `commit`.
pub async fn commit_refs(ui: &Ui, repo: &str, commit: &str) -> Result<CommitRefsView, ReadError> {
    let git = ui.git.clone();
    let (repo, commit) = (repo.to_owned(), commit.to_owned());
    blocking(
        move || {
            let oid = Oid::from_str(&commit)
                .map_err(|_| ReadError::NotFound(format!("commit {commit} of repo {repo}")))?;
            let (error, refs) = match pin_refs::commit_references(
                git.store(),
                &DefinitionsCaches::new(),
                &repo,
                oid,
            )
            .map_err(read_error)?
            {
                References::Invalid(message) => (Some(message), Vec::new()),
                References::Listed(list) => {
                    (None, list.into_iter().map(|r| row(r, None)).collect())
                }
            };
            Ok(CommitRefsView {
                repo,
                commit,
                error,
                refs,
            })
        },
        ReadError::Internal,
    )
    .await
}

/// The Pins page of a branch.
pub async fn branch_pins_page(
    ui: &Ui,
    csrf: &str,
    repo: &str,
    branch: &str,
) -> Result<HttpResponse, ApiError> {
    Ok(html(&BranchPinsPage {
        csrf,
        view: branch_pins(ui, repo, branch).await?,
    }))
}

/// A pin's name (a key of the `repos` section) as it arrives in a request.
pub fn pin_name(text: &str) -> Result<String, InvalidName> {
    if text.is_empty() || text.len() > 200 || text.chars().any(char::is_control) {
        return Err(InvalidName {
            what: "pin",
            reason: format!("{text:?} is not a pin name"),
        });
    }
    Ok(text.to_owned())
}

/// Moves pin `pin` of `branch`'s head to its branch's head (see
/// [`pin_refs::update_pin`]), then asks for a rescan of the repo.
pub async fn update_pin(
    ui: &Ui,
    repo: &str,
    branch: &str,
    pin: &str,
    seen_head: Option<&str>,
) -> Result<(), ActionError> {
    let seen_head = seen_head
        .map(|h| Oid::from_str(h).map_err(|_| ActionError::Invalid(format!("bad head {h:?}"))))
        .transpose()?;
    let git = ui.git.clone();
    let (repo_name, branch_name, pin_name) = (repo.to_owned(), branch.to_owned(), pin.to_owned());
    let updated = blocking(
        move || {
            pin_refs::update_pin(
                git.store(),
                &DefinitionsCaches::new(),
                &repo_name,
                &branch_name,
                &pin_name,
                seen_head,
            )
            .map_err(action_error)
        },
        ActionError::Unavailable,
    )
    .await?;
    tracing::info!(
        repo,
        branch,
        pin,
        commit = %updated.commit,
        pinned = %updated.pinned,
        "pushed a manual pin update"
    );
    ui.git.request_scan(repo);
    Ok(())
}

fn action_error(error: UpdatePinError) -> ActionError {
    match error {
        // `ActionError::NotFound` says "… not found" itself.
        UpdatePinError::UnknownBranch { repo, branch } => {
            ActionError::NotFound(format!("branch {branch} of repo {repo}"))
        }
        UpdatePinError::UnknownPin { repo, branch, pin } => {
            ActionError::NotFound(format!("pin {pin:?} in the head of {repo}/{branch}"))
        }
        UpdatePinError::Git(GitError::UnknownRepo(repo)) => {
            ActionError::NotFound(format!("repo {repo}"))
        }
        UpdatePinError::BranchMoved { .. }
        | UpdatePinError::Auto { .. }
        | UpdatePinError::UpToDate { .. }
        | UpdatePinError::UnknownTarget { .. }
        | UpdatePinError::Definitions(_)
        | UpdatePinError::NotRewritable { .. } => ActionError::Conflict(error.to_string()),
        UpdatePinError::Git(_) => ActionError::Unavailable(error.to_string()),
    }
}

/// Query of the pins API.
#[derive(Deserialize)]
pub struct RefsQuery {
    repo: Option<String>,
    branch: Option<String>,
    commit: Option<String>,
}

/// `GET /api/branch_pins?repo=&branch=`.
pub async fn api_branch_pins(
    ui: web::Data<Ui>,
    q: web::Query<RefsQuery>,
) -> Result<HttpResponse, ApiError> {
    let repo = paths::repo_name(required(&q.repo, "repo")?)?;
    let branch = paths::branch_name(required(&q.branch, "branch")?)?;
    Ok(HttpResponse::Ok().json(branch_pins(&ui, &repo, &branch).await?))
}

/// `GET /api/commit_refs?repo=&commit=`.
pub async fn api_commit_refs(
    ui: web::Data<Ui>,
    q: web::Query<RefsQuery>,
) -> Result<HttpResponse, ApiError> {
    let repo = paths::repo_name(required(&q.repo, "repo")?)?;
    let commit = paths::commit_hash(required(&q.commit, "commit")?)?;
    Ok(HttpResponse::Ok().json(commit_refs(&ui, &repo, &commit).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(status: PinStatus, branch_head: Option<&str>) -> RepoRef {
        RepoRef {
            name: "lib".into(),
            kind: ReferenceKind::Pin,
            repo: "group/lib".into(),
            commit: "a".repeat(40),
            commit_known: true,
            branch: Some("master".into()),
            branch_head: branch_head.map(str::to_owned),
            auto: status == PinStatus::Auto,
            prioritize: false,
            import_source: None,
            status: Some(status),
        }
    }

    #[test]
    fn only_a_manual_pin_behind_its_branch_offers_an_update() {
        let head = "c".repeat(40);
        let pinning = PinningBranch {
            repo: "app",
            branch: "master",
            head: &head,
        };
        let target = "b".repeat(40);
        let behind = row(
            pin(PinStatus::Behind { commits: Some(1) }, Some(&target)),
            Some(&pinning),
        );
        assert_eq!(behind.status_text, "behind: 1 commit");
        assert!(behind.can_update);
        assert!(
            behind.update_title.contains("app/master"),
            "{}",
            behind.update_title
        );
        assert!(behind.update_title.contains("bbbbbbbb"));
        assert_eq!(behind.target, "group/lib/master");
        assert_eq!(
            behind.commit_url.as_deref(),
            Some(format!("/repos/group/lib/-/commits/{}", "a".repeat(40)).as_str())
        );
        // The same pin on a commit page: no update from there.
        let on_commit = row(
            pin(PinStatus::Behind { commits: Some(1) }, Some(&target)),
            None,
        );
        assert!(!on_commit.can_update);
        for (status, text) in [
            (PinStatus::Auto, "auto (moved by the server)"),
            (PinStatus::UpToDate, "up to date"),
            (PinStatus::UnknownBranch, "unknown branch group/lib/master"),
            (
                PinStatus::Behind { commits: None },
                "behind the branch head",
            ),
        ] {
            let head_known = status != PinStatus::UnknownBranch;
            let view = row(
                pin(status.clone(), head_known.then_some(target.as_str())),
                Some(&pinning),
            );
            assert_eq!(view.status_text, text);
            assert_eq!(
                view.can_update,
                matches!(status, PinStatus::Behind { .. }),
                "{text}"
            );
        }
        assert!(pin_name("").is_err() && pin_name("a\nb").is_err());
    }
}
