//! State-changing actions: enable/disable a branch, set a commit's priority (0 disables it),
//! set runs desired, cancel a run, restart a test, update a pin, boot and shut down a
//! deployment, start and cancel a flake hunt, repeat tests along a branch. Only POST routes exist (a GET to an action URL is a 405 and changes nothing),
//! and every request must carry the CSRF token. HTML forms post to `/actions/<name>` and are
//! redirected back (303); API clients post JSON to `/api/actions/<name>` and get JSON.
//! Booting from a form redirects to the new deployment's terminal page.

use crate::access::{AccessControl, RequestCaller};
use crate::reads::model::ActionError;
use crate::views::paths;
use crate::web::error::ApiError;
use crate::web::render::error_page;
use crate::web::ui::Ui;
use crate::AppContext;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use std::collections::HashMap;
use test_looper_core::scheduling::inputs::MAX_RUNS_DESIRED;
use test_looper_core::scheduling::{HuntSpec, DEFAULT_HUNT_BATCH_RUNS, DEFAULT_HUNT_TARGET};

/// One validated action.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Branch {
        repo: String,
        branch: String,
        under_test: bool,
    },
    CommitPriority {
        repo: String,
        commit: String,
        priority: u32,
    },
    RunsDesired {
        repo: String,
        commit: String,
        test: String,
        runs: u32,
    },
    Cancel {
        run_id: String,
    },
    Restart {
        repo: String,
        commit: String,
        test: String,
    },
    /// Move a manual pin of the branch head to its branch's head (`head`: the head the user
    /// saw; a branch that moved since is a conflict).
    UpdatePin {
        repo: String,
        branch: String,
        pin: String,
        head: Option<String>,
    },
    BootDeployment {
        test_hash: String,
    },
    ShutdownDeployment {
        deployment_id: String,
    },
    /// Put a test of a repo in quarantine or take it out.
    Quarantine {
        repo: String,
        test: String,
        on: bool,
    },
    /// Start a flake hunt.
    FlakeHunt(Box<HuntSpec>),
    FlakeHuntCancel {
        hunt_id: String,
    },
    /// Run the tests matching `tests` `runs` times on the last `last_commits` commits.
    BranchRepeat {
        repo: String,
        branch: String,
        tests: Vec<String>,
        runs: u32,
        last_commits: usize,
    },
}

/// What a performed action produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// A deployment was booted.
    Booted {
        deployment_id: String,
    },
    HuntStarted {
        hunt_id: String,
    },
    Repeated {
        commits: usize,
        tests: usize,
    },
}

/// A definition's identity hash: 64 lowercase hex characters.
fn definition_hash(text: &str) -> Result<String, ApiError> {
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(ApiError::bad_request(format!(
            "{text:?} is not a 64-hex definition hash"
        )))
    }
}

impl Action {
    /// Validates the fields of action `name`.
    pub fn parse(name: &str, fields: &HashMap<String, String>) -> Result<Action, ApiError> {
        let get = |key: &str| {
            fields
                .get(key)
                .map(String::as_str)
                .ok_or_else(|| ApiError::bad_request(format!("missing field {key}")))
        };
        let number = |key: &str| -> Result<u32, ApiError> {
            get(key)?
                .trim()
                .parse::<u32>()
                .map_err(|_| ApiError::bad_request(format!("{key} must be a non-negative integer")))
        };
        Ok(match name {
            "branch" => Action::Branch {
                repo: paths::repo_name(get("repo")?)?,
                branch: paths::branch_name(get("branch")?)?,
                under_test: flag(get("under_test")?, "under_test")?,
            },
            "commit" => Action::CommitPriority {
                repo: paths::repo_name(get("repo")?)?,
                commit: paths::commit_hash(get("commit")?)?,
                priority: number("priority")?,
            },
            "runs_desired" => Action::RunsDesired {
                repo: paths::repo_name(get("repo")?)?,
                commit: paths::commit_hash(get("commit")?)?,
                test: paths::test_name(get("test")?)?,
                runs: number("runs")?.clamp(1, MAX_RUNS_DESIRED),
            },
            "cancel" => Action::Cancel {
                run_id: paths::run_id(get("run_id")?)?,
            },
            "restart" => Action::Restart {
                repo: paths::repo_name(get("repo")?)?,
                commit: paths::commit_hash(get("commit")?)?,
                test: paths::test_name(get("test")?)?,
            },
            "update_pin" => Action::UpdatePin {
                repo: paths::repo_name(get("repo")?)?,
                branch: paths::branch_name(get("branch")?)?,
                pin: crate::web::pins::pin_name(get("pin")?)?,
                head: match fields.get("head").filter(|h| !h.is_empty()) {
                    Some(head) => Some(paths::commit_hash(head)?),
                    None => None,
                },
            },
            "boot_deployment" => Action::BootDeployment {
                test_hash: definition_hash(get("test_hash")?)?,
            },
            "shutdown_deployment" => Action::ShutdownDeployment {
                deployment_id: paths::run_id(get("deployment_id")?)?,
            },
            "quarantine" => Action::Quarantine {
                repo: paths::repo_name(get("repo")?)?,
                test: paths::test_name(get("test")?)?,
                on: flag(get("on")?, "on")?,
            },
            "flake_hunt" => Action::FlakeHunt(Box::new(hunt_spec(fields)?)),
            "flake_hunt_cancel" => Action::FlakeHuntCancel {
                hunt_id: paths::run_id(get("hunt_id")?)?,
            },
            "branch_repeat" => Action::BranchRepeat {
                repo: paths::repo_name(get("repo")?)?,
                branch: paths::branch_name(get("branch")?)?,
                tests: test_patterns(get("tests")?)?,
                runs: number("runs")?.clamp(1, MAX_RUNS_DESIRED),
                last_commits: number("last_commits")? as usize,
            },
            other => return Err(ApiError::not_found(format!("unknown action {other:?}"))),
        })
    }

    /// The action's name (as in its URL), for the audit log.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Branch { .. } => "branch",
            Action::CommitPriority { .. } => "commit_priority",
            Action::RunsDesired { .. } => "runs_desired",
            Action::Cancel { .. } => "cancel",
            Action::Restart { .. } => "restart",
            Action::UpdatePin { .. } => "update_pin",
            Action::BootDeployment { .. } => "boot_deployment",
            Action::ShutdownDeployment { .. } => "shutdown_deployment",
            Action::Quarantine { .. } => "quarantine",
            Action::FlakeHunt(_) => "flake_hunt",
            Action::FlakeHuntCancel { .. } => "flake_hunt_cancel",
            Action::BranchRepeat { .. } => "branch_repeat",
        }
    }

    /// What the action is on, for the audit log.
    pub fn object(&self) -> String {
        match self {
            Action::Branch { repo, branch, .. }
            | Action::UpdatePin { repo, branch, .. }
            | Action::BranchRepeat { repo, branch, .. } => format!("{repo}/{branch}"),
            Action::CommitPriority { repo, commit, .. } => format!("{repo}/{commit}"),
            Action::RunsDesired {
                repo, commit, test, ..
            }
            | Action::Restart { repo, commit, test } => format!("{repo}/{commit}/{test}"),
            Action::Cancel { run_id } => run_id.clone(),
            Action::BootDeployment { test_hash } => test_hash.clone(),
            Action::ShutdownDeployment { deployment_id } => deployment_id.clone(),
            Action::Quarantine { repo, test, .. } => format!("{repo}/{test}"),
            Action::FlakeHunt(spec) => format!("{}/{} {}", spec.repo, spec.branch, spec.test),
            Action::FlakeHuntCancel { hunt_id } => hunt_id.clone(),
        }
    }

    /// Performs it against the scheduler, as `who`.
    pub async fn perform(
        &self,
        ui: &Ui,
        access: &AccessControl,
        who: &RequestCaller,
    ) -> Result<Outcome, ActionError> {
        let state = &ui.actions;
        match self {
            Action::BootDeployment { test_hash } => {
                let booted_by = crate::access::deployment_rules::owner_of(who);
                let deployment_id = state.boot_deployment(test_hash, booted_by).await?;
                return Ok(Outcome::Booted { deployment_id });
            }
            Action::ShutdownDeployment { deployment_id } => {
                let deployment = ui
                    .sources
                    .state
                    .deployment(deployment_id)
                    .await
                    .map_err(|err| ActionError::Unavailable(err.to_string()))?
                    .ok_or_else(|| ActionError::NotFound(format!("deployment {deployment_id}")))?;
                crate::access::deployment_rules::may_control(
                    access.mode,
                    who,
                    deployment.booted_by.as_ref(),
                )
                .map_err(|denied| ActionError::Denied(denied.to_string()))?;
                state.shutdown_deployment(deployment_id).await?
            }
            Action::Branch {
                repo,
                branch,
                under_test,
            } => {
                state
                    .set_branch_under_test(repo, branch, *under_test)
                    .await?
            }
            Action::CommitPriority {
                repo,
                commit,
                priority,
            } => state.set_commit_priority(repo, commit, *priority).await?,
            Action::RunsDesired {
                repo,
                commit,
                test,
                runs,
            } => state.set_runs_desired(repo, commit, test, *runs).await?,
            Action::Cancel { run_id } => state.cancel_run(run_id).await?,
            Action::Restart { repo, commit, test } => {
                state.restart_test(repo, commit, test).await?
            }
            Action::UpdatePin {
                repo,
                branch,
                pin,
                head,
            } => crate::web::pins::update_pin(ui, repo, branch, pin, head.as_deref()).await?,
            Action::FlakeHunt(spec) => {
                let hunt_id = state.start_hunt((**spec).clone()).await?;
                return Ok(Outcome::HuntStarted { hunt_id });
            }
            Action::FlakeHuntCancel { hunt_id } => state.cancel_hunt(hunt_id).await?,
            Action::Quarantine { repo, test, on } => {
                let by = who.caller.who().unwrap_or_else(|| "a user".into());
                state.set_quarantine(repo, test, *on, &by).await?
            }
            Action::BranchRepeat {
                repo,
                branch,
                tests,
                runs,
                last_commits,
            } => {
                let (commits, tests) = state
                    .repeat_on_branch(repo, branch, tests, *runs, *last_commits)
                    .await?;
                return Ok(Outcome::Repeated { commits, tests });
            }
        }
        Ok(Outcome::Done)
    }
}

/// A true/false field (`true`/`1`/`on`, `false`/`0`/`off`).
fn flag(text: &str, key: &str) -> Result<bool, ApiError> {
    match text {
        "true" | "1" | "on" => Ok(true),
        "false" | "0" | "off" => Ok(false),
        other => Err(ApiError::bad_request(format!(
            "{key} must be true or false, not {other:?}"
        ))),
    }
}

/// The fields of a `flake_hunt` action. Optional fields may be absent or empty (a form
/// sends every input).
fn hunt_spec(fields: &HashMap<String, String>) -> Result<HuntSpec, ApiError> {
    let optional = |key: &str| {
        fields
            .get(key)
            .map(|value| value.trim())
            .filter(|value| !value.is_empty() && *value != "null")
    };
    let required = |key: &str| {
        optional(key).ok_or_else(|| ApiError::bad_request(format!("missing field {key}")))
    };
    let count = |key: &str, default: u32| -> Result<u32, ApiError> {
        optional(key).map_or(Ok(default), |text| {
            text.parse::<u32>()
                .map_err(|_| ApiError::bad_request(format!("{key} must be a positive integer")))
        })
    };
    let commit = |key: &str| optional(key).map(paths::commit_hash).transpose();
    Ok(HuntSpec {
        repo: paths::repo_name(required("repo")?)?,
        branch: paths::branch_name(required("branch")?)?,
        test: paths::test_name(required("test")?)?,
        case: optional("case").map(str::to_owned),
        budget_runs: required("budget_runs")?
            .parse::<u32>()
            .ok()
            .filter(|budget| *budget > 0)
            .ok_or_else(|| ApiError::bad_request("budget_runs must be a positive integer"))?,
        from: commit("from")?,
        to: commit("to")?,
        priority: count("priority", 1)?,
        batch_runs: count("batch_runs", DEFAULT_HUNT_BATCH_RUNS)?,
        target_probability: match optional("target_probability") {
            Some(text) => text.parse::<f64>().map_err(|_| {
                ApiError::bad_request("target_probability must be a number in [0.5, 1)")
            })?,
            None => DEFAULT_HUNT_TARGET,
        },
    })
}

/// The test patterns of a `branch_repeat`: a JSON array of globs (API), or globs separated
/// by commas or whitespace (form).
fn test_patterns(text: &str) -> Result<Vec<String>, ApiError> {
    let patterns: Vec<String> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text)
            .map_err(|_| ApiError::bad_request("tests must be an array of glob strings"))?
    } else {
        text.split([',', ' ', '\n'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect()
    };
    if patterns.is_empty() || patterns.iter().any(|p| p.len() > 512) {
        return Err(ApiError::bad_request(
            "tests must hold at least one glob of at most 512 characters",
        ));
    }
    Ok(patterns)
}

/// `POST /actions/{name}` from an HTML form (the access guard has checked the caller's role
/// and CSRF token).
pub async fn form_action(
    ui: web::Data<Ui>,
    context: web::Data<AppContext>,
    who: RequestCaller,
    request: HttpRequest,
    name: web::Path<String>,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    let fields = form.into_inner();
    let action = match Action::parse(&name, &fields) {
        Ok(action) => action,
        Err(err) => return error_page(err),
    };
    match perform_audited(&action, &ui, &context, &who).await {
        Ok(outcome) => {
            let location = match outcome {
                Outcome::Booted { deployment_id } => paths::terminal_url(&deployment_id),
                Outcome::HuntStarted { hunt_id } => crate::views::hunts::hunt_url(&hunt_id),
                Outcome::Done | Outcome::Repeated { .. } => back_to(&request),
            };
            HttpResponse::SeeOther()
                .insert_header(("Location", location))
                .finish()
        }
        Err(err) => error_page(err),
    }
}

/// Performs `action` as `who` and records it in the audit log.
async fn perform_audited(
    action: &Action,
    ui: &Ui,
    context: &AppContext,
    who: &RequestCaller,
) -> Result<Outcome, ApiError> {
    let access = &context.access;
    let result = action.perform(ui, access, who).await;
    let event = who
        .audit(format!("action.{}", action.name()))
        .object(action.object());
    access.audit.record(match &result {
        Ok(_) => event,
        Err(ActionError::Denied(why)) => event.denied(why.clone()),
        Err(err) => event.failed(err.to_string()),
    });
    tracing::info!(?action, who = ?who.caller.who(), ok = result.is_ok(), "user action");
    result.map_err(ApiError::from)
}

/// `POST /api/actions/{name}` with a JSON object body (and the `X-CSRF-Token` header, unless
/// the call carries a bearer token).
pub async fn api_action(
    ui: web::Data<Ui>,
    context: web::Data<AppContext>,
    who: RequestCaller,
    name: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let Value::Object(object) = body.into_inner() else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    let fields: HashMap<String, String> = object
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                Value::String(text) => text,
                other => other.to_string(),
            };
            (key, text)
        })
        .collect();
    let action = Action::parse(&name, &fields)?;
    let outcome = perform_audited(&action, &ui, &context, &who).await?;
    Ok(HttpResponse::Ok().json(match outcome {
        Outcome::Done => json!({"ok": true}),
        Outcome::Booted { deployment_id } => json!({
            "ok": true,
            "terminal": paths::terminal_url(&deployment_id),
            "deployment_id": deployment_id,
        }),
        Outcome::HuntStarted { hunt_id } => json!({
            "ok": true,
            "hunt_id": hunt_id,
            "url": crate::views::hunts::hunt_url(&hunt_id),
        }),
        Outcome::Repeated { commits, tests } => json!({
            "ok": true,
            "commits": commits,
            "tests": tests,
        }),
    }))
}

/// Where to send the browser after a form action: the local page it came from.
fn back_to(request: &HttpRequest) -> String {
    let referer = request
        .headers()
        .get("referer")
        .and_then(|v| v.to_str().ok())
        .and_then(|r| url::Url::parse(r).ok());
    let host = request.connection_info().host().to_owned();
    match referer {
        Some(url)
            if url
                .host_str()
                .is_some_and(|h| host.split(':').next() == Some(h)) =>
        {
            let mut target = url.path().to_owned();
            if let Some(query) = url.query() {
                target.push('?');
                target.push_str(query);
            }
            if target.starts_with('/') && !target.starts_with("//") {
                target
            } else {
                "/repos".into()
            }
        }
        _ => "/repos".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::StatusCode;

    fn fields(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_flake_hunt_takes_defaults_and_refuses_bad_fields() {
        let action = Action::parse(
            "flake_hunt",
            &fields(&[
                ("repo", "app"),
                ("branch", "master"),
                ("test", "t/linux"),
                ("budget_runs", "300"),
                ("from", ""),
                ("case", ""),
            ]),
        )
        .unwrap();
        let Action::FlakeHunt(spec) = action else {
            panic!("{action:?}")
        };
        assert_eq!(spec.budget_runs, 300);
        assert_eq!((spec.from, spec.to, spec.case), (None, None, None));
        assert_eq!(spec.batch_runs, DEFAULT_HUNT_BATCH_RUNS);
        assert_eq!(spec.target_probability, DEFAULT_HUNT_TARGET);
        assert_eq!(spec.priority, 1);
        for bad in [
            vec![("repo", "app"), ("branch", "master"), ("test", "t/linux")],
            vec![
                ("repo", "app"),
                ("branch", "master"),
                ("test", "t/linux"),
                ("budget_runs", "-4"),
            ],
            vec![
                ("repo", "../x"),
                ("branch", "master"),
                ("test", "t/linux"),
                ("budget_runs", "4"),
            ],
            vec![
                ("repo", "app"),
                ("branch", "master"),
                ("test", "t/linux"),
                ("budget_runs", "4"),
                ("from", "not-a-hash"),
            ],
        ] {
            let err = Action::parse("flake_hunt", &fields(&bad)).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }

    #[test]
    fn branch_repeat_patterns_come_as_json_or_a_list() {
        for tests in [r#"["unit/*", "x?"]"#, "unit/*, x?", "unit/* x?"] {
            let action = Action::parse(
                "branch_repeat",
                &fields(&[
                    ("repo", "app"),
                    ("branch", "master"),
                    ("tests", tests),
                    ("runs", "5"),
                    ("last_commits", "3"),
                ]),
            )
            .unwrap();
            let Action::BranchRepeat { tests, .. } = action else {
                panic!("{action:?}")
            };
            assert_eq!(tests, vec!["unit/*", "x?"]);
        }
        let err = Action::parse(
            "branch_repeat",
            &fields(&[
                ("repo", "app"),
                ("branch", "master"),
                ("tests", "[]"),
                ("runs", "5"),
                ("last_commits", "3"),
            ]),
        )
        .unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn actions_validate_names_and_clamp_runs() {
        let sha = "a".repeat(40);
        let action = Action::parse(
            "runs_desired",
            &fields(&[
                ("repo", "app"),
                ("commit", &sha),
                ("test", "t/linux"),
                ("runs", "5000"),
            ]),
        )
        .unwrap();
        assert!(matches!(
            action,
            Action::RunsDesired {
                runs: MAX_RUNS_DESIRED,
                ..
            }
        ));
        let bad = Action::parse(
            "branch",
            &fields(&[
                ("repo", "../../etc"),
                ("branch", "master"),
                ("under_test", "true"),
            ]),
        );
        assert_eq!(bad.unwrap_err().status, StatusCode::BAD_REQUEST);
        assert!(Action::parse("cancel", &fields(&[])).is_err());
        let hash = "ab".repeat(32);
        assert_eq!(
            Action::parse("boot_deployment", &fields(&[("test_hash", &hash)])).unwrap(),
            Action::BootDeployment { test_hash: hash }
        );
        assert!(Action::parse("boot_deployment", &fields(&[("test_hash", &sha)])).is_err());
        assert!(
            Action::parse("shutdown_deployment", &fields(&[("deployment_id", "../x")])).is_err()
        );
        assert_eq!(
            Action::parse("nuke", &fields(&[])).unwrap_err().status,
            StatusCode::NOT_FOUND
        );
        assert!(Action::parse(
            "commit",
            &fields(&[("repo", "app"), ("commit", &sha), ("priority", "-1")])
        )
        .is_err());
    }
}
