//! One test across a branch's history: its failure rate per commit with the 95% interval,
//! as points and as an inline SVG plot, the posterior rate (Beta, Jeffreys prior) per commit,
//! and where on the page the rate most likely changed ([`crate::views::change_points`]).

use crate::reads::model::ReadError;
use crate::views::branch::HistoryWithStates;
use crate::views::change_points::{page_changes, PagePoint};
use crate::views::format::short_hash;
use crate::views::plot::PlotPoint;
use crate::views::{
    cells, commit_part, format, parses_keep, test_part, Reads, Snapshot, Sources, MAX_PAGE,
};
use crate::views::{paths, plot};
use serde::Serialize;
use std::sync::Arc;
use test_looper_core::scheduling::stats::FailureRate;
use test_looper_core::stats::posterior::{RatePosterior, RatePrior};

#[derive(Clone, Debug, Serialize)]
pub struct TestHistoryView {
    pub repo: String,
    pub branch: String,
    pub branch_url: String,
    pub test: String,
    pub points: Vec<TestHistoryPoint>,
    pub has_more: bool,
    pub older_url: Option<String>,
    /// P(the rate did not change across this page's commits); `None` without runs.
    pub no_change: Option<f64>,
    /// The commit where the rate most likely changed, when it holds at least half of the
    /// posterior.
    pub likely_change: Option<LikelyChange>,
    /// The hunts page with this test pre-filled.
    pub hunts_url: String,
    #[serde(skip)]
    pub svg: String,
}

/// A change point on the page.
#[derive(Clone, Debug, Serialize)]
pub struct LikelyChange {
    pub commit: String,
    pub short: String,
    pub probability: f64,
}

/// A posterior failure rate: mean and 95% credible interval.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct PosteriorRate {
    pub mean: f64,
    pub low: f64,
    pub high: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct TestHistoryPoint {
    pub hash: String,
    pub short: String,
    pub url: String,
    pub subject: String,
    /// Whether the commit defines the test at all.
    pub defined: bool,
    pub rate: FailureRate,
    pub rate_text: String,
    pub active: u32,
    /// The posterior of the rate (none without runs).
    pub posterior: Option<PosteriorRate>,
    pub posterior_text: String,
    /// P(this is the first commit with a new rate), on this page.
    pub change_probability: f64,
}

impl Sources {
    pub async fn test_history(
        self: &Arc<Self>,
        repo: &str,
        branch: &str,
        test: &str,
        page: usize,
        per_page: usize,
    ) -> Result<Arc<Snapshot<TestHistoryView>>, ReadError> {
        let key = (
            repo.to_owned(),
            branch.to_owned(),
            test.to_owned(),
            page,
            per_page,
        );
        let version = self.branch_version(repo, branch);
        self.kept_view(&self.coalesced.test_history, key, version, || {
            self.test_history_now(repo, branch, test, page, per_page)
        })
        .await
    }

    async fn test_history_now(
        self: &Arc<Self>,
        repo: &str,
        branch: &str,
        test: &str,
        page: usize,
        per_page: usize,
    ) -> Result<Arc<Snapshot<TestHistoryView>>, ReadError> {
        let now_ms = format::now_millis();
        let per_page = per_page.clamp(1, MAX_PAGE);
        let HistoryWithStates {
            history,
            defs,
            states,
        } = self.history_page(repo, branch, page, per_page).await?;
        let states = states.view();
        let mut points = Vec::new();
        // The points read the test's own part of the state, or the commit's while the
        // scheduler does not know the test there yet.
        let mut reads = Vec::with_capacity(history.commits.len());
        let mut definition_hashes = Vec::with_capacity(history.commits.len());
        for (commit, defs) in history.commits.iter().zip(&defs) {
            let definition = defs.definitions.iter().find(|d| d.name == test);
            let status = definition
                .and_then(|d| states.get(&commit.hash).and_then(|s| s.tests.get(&d.hash)));
            match (definition, status) {
                (Some(d), Some(_)) => reads.push(test_part(&d.hash)),
                (Some(_), None) => reads.push(commit_part(repo, &commit.hash)),
                (None, _) => {}
            }
            let rate = FailureRate::new(
                status.map_or(0, |s| s.failures),
                status.map_or(0, |s| s.runs),
            );
            points.push(TestHistoryPoint {
                short: short_hash(&commit.hash).to_owned(),
                url: paths::commit_url(repo, &commit.hash),
                subject: commit.subject.clone(),
                defined: definition.is_some(),
                rate_text: if rate.runs > 0 {
                    cells::rate_text(&rate)
                } else {
                    String::new()
                },
                rate,
                active: status.map_or(0, |s| s.active),
                posterior: None,
                posterior_text: String::new(),
                change_probability: 0.0,
                hash: commit.hash.clone(),
            });
            definition_hashes.push(definition.map(|d| d.hash.clone()));
        }
        let (no_change, likely_change) = add_posteriors(&mut points, &definition_hashes);
        let oldest_first: Vec<PlotPoint> = points
            .iter()
            .rev()
            .filter(|p| p.defined)
            .map(|p| PlotPoint {
                label: format!("{} {}", p.short, p.subject),
                href: p.url.clone(),
                rate: p.rate,
            })
            .collect();
        let url = paths::test_history_url(repo, branch, test);
        let keep = parses_keep(defs.iter().map(|d| &d.parse), now_ms);
        let view = TestHistoryView {
            repo: repo.to_owned(),
            branch: branch.to_owned(),
            branch_url: paths::branch_url(repo, branch),
            test: test.to_owned(),
            svg: plot::failure_rate_svg(&oldest_first, 900.0),
            points,
            has_more: history.has_more,
            older_url: history
                .has_more
                .then(|| format!("{url}?page={}&per_page={per_page}", page + 1)),
            no_change,
            likely_change,
            hunts_url: format!(
                "/hunts?repo={}&branch={}&test={}",
                paths::encode_component(repo),
                paths::encode_component(branch),
                paths::encode_component(test)
            ),
        };
        Ok(Snapshot::new(view, Reads::Parts(reads), keep))
    }
}

/// Fills each point's posterior rate and change probability (`points` newest first, with the
/// definition hash each commit declares); returns P(no change) and the likely change.
fn add_posteriors(
    points: &mut [TestHistoryPoint],
    definition_hashes: &[Option<String>],
) -> (Option<f64>, Option<LikelyChange>) {
    for point in points.iter_mut().filter(|p| p.rate.runs > 0) {
        let posterior =
            RatePosterior::new(point.rate.failures, point.rate.runs, RatePrior::JEFFREYS);
        let (low, high) = posterior.interval_95();
        let rate = PosteriorRate {
            mean: posterior.mean(),
            low,
            high,
        };
        point.posterior_text = format!(
            "{} ({}–{})",
            format::percent(rate.mean),
            format::percent(rate.low),
            format::percent(rate.high)
        );
        point.posterior = Some(rate);
    }
    let oldest_first: Vec<PagePoint<&String>> = points
        .iter()
        .zip(definition_hashes)
        .rev()
        .map(|(point, hash)| PagePoint {
            definitions: hash.as_ref(),
            failures: point.rate.failures,
            runs: point.rate.runs,
        })
        .collect();
    let Some(changes) = page_changes(&oldest_first) else {
        return (None, None);
    };
    let last = points.len() - 1;
    for (index, probability) in changes.probabilities.iter().enumerate() {
        points[last - index].change_probability = *probability;
    }
    let likely = changes.likely.map(|(index, probability)| {
        let point = &points[last - index];
        LikelyChange {
            commit: point.hash.clone(),
            short: point.short.clone(),
            probability,
        }
    });
    (Some(changes.no_change), likely)
}
