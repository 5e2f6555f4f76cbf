//! One commit: its metadata, every build, test and deployment with status, runs, failure
//! rate and failure reasons, and its definitions file highlighted (or its error's line).

use crate::reads::model::{ReadError, TestStatus};
use crate::views::cases::{case_rows, CaseRow};
use crate::views::cells::{Cell, ParseState};
use crate::views::format;
use crate::views::format::short_hash;
use crate::views::labels::{failure_reason_label, kind_label, wait_text};
use crate::views::runs::{run_row, RunRow};
use crate::views::{blocking, commit_part, group_cell, parses_keep, Reads, Snapshot, Sources};
use crate::views::{highlight, paths};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use test_looper_core::definitions::DefinitionKind;
use test_looper_core::protocol::RunResult;

#[derive(Clone, Debug, Serialize)]
pub struct CommitPageView {
    pub state_wired: bool,
    pub repo: String,
    pub repo_url: String,
    pub hash: String,
    pub short: String,
    pub url: String,
    pub subject: String,
    pub message: String,
    pub author: String,
    pub author_email: String,
    pub date: String,
    pub parents: Vec<CommitLink>,
    pub enabled: bool,
    pub priority: u32,
    pub parse: ParseState,
    pub summary: Cell,
    pub definitions: Vec<DefinitionRow>,
    pub definitions_file: Option<DefinitionsFile>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CommitLink {
    pub hash: String,
    pub short: String,
    pub url: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct DefinitionsFile {
    pub path: String,
    pub text: String,
    /// The line the error points at, if the commit is untestable.
    pub error_line: Option<usize>,
    #[serde(skip)]
    pub html: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct DefinitionRow {
    pub name: String,
    pub kind: DefinitionKind,
    pub kind_label: &'static str,
    pub hash: String,
    pub project: String,
    pub configuration: String,
    pub disabled: bool,
    pub cell: Cell,
    pub status: Option<TestStatus>,
    pub wait: String,
    pub runs_desired: u32,
    /// Failure reasons over counted runs: (reason, count).
    pub failure_reasons: Vec<(String, usize)>,
    pub runs: Vec<RunRow>,
    /// The individual test cases its counted runs reported, least reliable first.
    pub cases: Vec<CaseRow>,
}

impl DefinitionRow {
    /// In quarantine: it runs, but its failures do not count against the commit.
    pub fn quarantined(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.quarantined)
    }
}

impl Sources {
    pub async fn commit(
        self: &Arc<Self>,
        repo: &str,
        hash: &str,
    ) -> Result<Arc<Snapshot<CommitPageView>>, ReadError> {
        let key = (repo.to_owned(), hash.to_owned());
        let version = self.state_version();
        self.kept_view(&self.coalesced.commit, key, version, || {
            self.commit_now(repo, hash)
        })
        .await
    }

    async fn commit_now(
        self: &Arc<Self>,
        repo: &str,
        hash: &str,
    ) -> Result<Arc<Snapshot<CommitPageView>>, ReadError> {
        let now_ms = format::now_millis();
        let this = self.clone();
        let (name, commit) = (repo.to_owned(), hash.to_owned());
        let (metadata, defs, file) = blocking(move || {
            let metadata = this.git.commit(&name, &commit)?;
            let defs = this.git.definitions(&name, &commit)?;
            let file = this.git.definitions_file(&name, &commit)?;
            Ok((metadata, defs, file))
        })
        .await?;
        let hashes = [metadata.hash.clone()];
        let states = self.state.commits(repo, &hashes).await?;
        let state = states.get(&metadata.hash);
        let mut definitions = Vec::new();
        let test_hashes: Vec<String> = defs.definitions.iter().map(|d| d.hash.clone()).collect();
        let mut runs_by_test = self.state.runs_of_many(&test_hashes).await?;
        for d in &defs.definitions {
            let status = state.and_then(|s| s.tests.get(&d.hash)).cloned();
            let runs = runs_by_test.remove(&d.hash).unwrap_or_default();
            let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
            for run in runs.iter().filter(|r| !r.cleared) {
                if let Some(RunResult::Failed { reason, .. }) = &run.result {
                    *reasons.entry(failure_reason_label(reason)).or_default() += 1;
                }
            }
            let cell = group_cell(&defs, state, std::iter::once(d));
            definitions.push(DefinitionRow {
                name: d.name.clone(),
                kind: d.kind,
                kind_label: kind_label(d.kind),
                hash: d.hash.clone(),
                project: d.project.clone(),
                configuration: d.configuration.clone(),
                disabled: d.disabled,
                wait: status
                    .as_ref()
                    .map(|s| wait_text(&s.wait))
                    .unwrap_or_default(),
                runs_desired: status.as_ref().map_or(0, |s| s.runs_desired),
                status,
                cell,
                failure_reasons: reasons.into_iter().collect(),
                runs: runs.iter().take(50).map(run_row).collect(),
                cases: case_rows(&runs),
            });
        }
        let error_line = match &defs.parse {
            ParseState::Untestable(message) => highlight::error_line(message),
            _ => None,
        };
        let definitions_file = file.map(|(path, text)| DefinitionsFile {
            html: highlight::yaml_to_html(&text, error_line),
            path,
            text,
            error_line,
        });
        let keep = parses_keep([&defs.parse], now_ms);
        let reads = Reads::Parts(vec![commit_part(repo, &metadata.hash)]);
        let view = CommitPageView {
            state_wired: self.state.wired(),
            repo: repo.to_owned(),
            repo_url: paths::repo_url(repo),
            short: short_hash(&metadata.hash).to_owned(),
            url: paths::commit_url(repo, &metadata.hash),
            subject: metadata.subject.clone(),
            author: metadata.author.clone(),
            author_email: metadata.author_email.clone(),
            date: format::utc_seconds(metadata.timestamp),
            parents: metadata
                .parents
                .iter()
                .map(|p| CommitLink {
                    short: short_hash(p).to_owned(),
                    url: paths::commit_url(repo, p),
                    hash: p.clone(),
                })
                .collect(),
            enabled: state.is_some_and(|s| s.user_priority > 0),
            priority: state.map_or(0, |s| s.user_priority),
            summary: group_cell(&defs, state, defs.definitions.iter()),
            parse: defs.parse.clone(),
            definitions,
            definitions_file,
            message: metadata.message,
            hash: metadata.hash,
        };
        Ok(Snapshot::new(view, reads, keep))
    }
}
