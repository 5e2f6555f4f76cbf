//! Flake hunts as the API and the pages show them: a hunt's state, budget, culprit and the
//! posterior over the commits of its range ([`HuntView`], the JSON of
//! `GET /api/flake_hunts/{id}`), the list of a branch's hunts ([`HuntSummary`]), and the
//! posterior as an inline SVG bar chart ([`posterior_svg`]).

use crate::git::history::{CommitDiff, CommitMetadata};
use crate::views::format::{percent, push_escaped, short_hash, utc_millis};
use crate::views::paths;
use crate::views::plot::PlotFrame;
use serde::Serialize;
use std::fmt::Write;
use test_looper_core::scheduling::{HuntRecord, HuntReport, PinChange};
use test_looper_core::stats::change_point::{MissingReason, Position};
use test_looper_core::stats::posterior::RatePosterior;

/// One hunt in a list.
#[derive(Clone, Debug, Serialize)]
pub struct HuntSummary {
    pub hunt_id: String,
    pub repo: String,
    pub branch: String,
    pub test: String,
    pub case: Option<String>,
    pub state: &'static str,
    pub runs_used: u32,
    pub budget_runs: u32,
    pub culprit: Option<CulpritView>,
    pub created: String,
    pub url: String,
}

/// The commit a hunt named.
#[derive(Clone, Debug, Serialize)]
pub struct CulpritView {
    pub commit: String,
    pub probability: f64,
    /// Older commits that no run can tell apart from it (the test could not run there).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub could_also_be: Vec<String>,
    pub short: String,
    pub url: String,
    /// Subject and author, when git knows the commit.
    pub subject: Option<String>,
    pub author: Option<String>,
    /// Pinned repos whose commit changed here: the change came in through a pin bump.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pin_changes: Vec<PinChange>,
}

/// The posterior probability that one commit is the first with the new rate, with the runs
/// observed there.
#[derive(Clone, Debug, Serialize)]
pub struct PosteriorPoint {
    pub commit: String,
    pub probability: f64,
    /// Finished runs of the hunted test (or case) at this commit, and how many failed.
    pub runs: u64,
    pub failures: u64,
    /// `observed`, `not_run`, `absent`, `build_failed` or `untestable`.
    pub status: &'static str,
    /// Later commits that share this commit's definition (and so its runs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub same_definition: Vec<String>,
}

/// A hunt, as `GET /api/flake_hunts/{id}` answers and the hunt page shows: its summary
/// (with the culprit's author and pin changes) and the posterior.
#[derive(Clone, Debug, Serialize)]
pub struct HuntView {
    #[serde(flatten)]
    pub summary: HuntSummary,
    pub batches: u32,
    pub priority: u32,
    pub target_probability: f64,
    /// Oldest first, one point per commit that introduced a definition.
    pub posterior: Vec<PosteriorPoint>,
    /// P(the rate did not change in the range).
    pub no_change: f64,
    /// Posterior mean failure rate before and after the most probable change, with 95%
    /// credible intervals.
    pub rate_before: Option<f64>,
    pub rate_after: Option<f64>,
    pub rate_before_interval: Option<(f64, f64)>,
    pub rate_after_interval: Option<(f64, f64)>,
    pub more_than_one_change: f64,
    pub note: Option<String>,
    pub ended: Option<String>,
}

fn culprit_view(
    record: &HuntRecord,
    metadata: Option<&CommitMetadata>,
    pin_changes: Vec<PinChange>,
) -> Option<CulpritView> {
    let culprit = record.culprit.as_ref()?;
    Some(CulpritView {
        commit: culprit.commit.clone(),
        probability: culprit.probability,
        could_also_be: culprit.could_also_be.clone(),
        short: short_hash(&culprit.commit).to_owned(),
        url: paths::commit_url(&record.spec.repo, &culprit.commit),
        subject: metadata.map(|m| m.subject.clone()),
        author: metadata.map(|m| m.author.clone()),
        pin_changes,
    })
}

/// `/hunts/{id}`.
pub fn hunt_url(hunt_id: &str) -> String {
    format!("/hunts/{}", paths::encode_component(hunt_id))
}

/// The list entry of a hunt.
pub fn hunt_summary(record: &HuntRecord) -> HuntSummary {
    summary_with(record, culprit_view(record, None, Vec::new()))
}

fn summary_with(record: &HuntRecord, culprit: Option<CulpritView>) -> HuntSummary {
    HuntSummary {
        hunt_id: record.hunt_id.clone(),
        repo: record.spec.repo.clone(),
        branch: record.spec.branch.clone(),
        test: record.spec.test.clone(),
        case: record.spec.case.clone(),
        state: record.state.name(),
        runs_used: record.runs_used,
        budget_runs: record.spec.budget_runs,
        culprit,
        created: utc_millis(record.created),
        url: hunt_url(&record.hunt_id),
    }
}

/// The whole view of a hunt (`culprit_metadata`: git's facts about the culprit, if found).
pub fn hunt_view(report: HuntReport, culprit_metadata: Option<&CommitMetadata>) -> HuntView {
    let record = &report.record;
    let posterior = report
        .positions
        .iter()
        .zip(&report.posterior)
        .map(|(position, probability)| {
            let (failures, runs) = position.observation.counts();
            PosteriorPoint {
                commit: position.first_commit().to_owned(),
                probability: *probability,
                runs,
                failures,
                status: status_name(&position.observation),
                same_definition: position.commits[1..].to_vec(),
            }
        })
        .collect();
    let interval = |rate: &Option<RatePosterior>| rate.as_ref().map(|r| r.interval_95());
    HuntView {
        summary: summary_with(
            record,
            culprit_view(record, culprit_metadata, report.pin_changes.clone()),
        ),
        batches: record.batches,
        priority: record.spec.priority,
        target_probability: record.spec.target_probability,
        posterior,
        no_change: report.no_change,
        rate_before: report.rate_before.as_ref().map(RatePosterior::mean),
        rate_after: report.rate_after.as_ref().map(RatePosterior::mean),
        rate_before_interval: interval(&report.rate_before),
        rate_after_interval: interval(&report.rate_after),
        more_than_one_change: report.more_than_one_change,
        note: record.note.clone(),
        ended: (record.ended > 0).then(|| utc_millis(record.ended)),
    }
}

fn status_name(position: &Position) -> &'static str {
    match position {
        Position::Observed { runs, .. } if *runs > 0 => "observed",
        Position::Observed { .. } | Position::Missing(MissingReason::NotRun) => "not_run",
        Position::Missing(MissingReason::Absent) => "absent",
        Position::Missing(MissingReason::BuildFailed) => "build_failed",
        Position::Missing(MissingReason::Untestable) => "untestable",
    }
}

/// What the hunt page shows besides the view: the culprit's diff.
pub struct HuntPage {
    pub view: HuntView,
    /// The hunts of the same branch.
    pub list_url: String,
    pub svg: String,
    pub diff: Option<CommitDiff>,
    pub rate_before: String,
    pub rate_after: String,
}

/// The page model of a hunt.
pub fn hunt_page(view: HuntView, diff: Option<CommitDiff>) -> HuntPage {
    let rate = |mean: Option<f64>, interval: Option<(f64, f64)>| match (mean, interval) {
        (Some(mean), Some((low, high))) => {
            format!("{} ({}–{})", percent(mean), percent(low), percent(high))
        }
        _ => "no runs yet".to_owned(),
    };
    HuntPage {
        list_url: format!(
            "/hunts?repo={}&branch={}",
            paths::encode_component(&view.summary.repo),
            paths::encode_component(&view.summary.branch)
        ),
        svg: posterior_svg(&view),
        rate_before: rate(view.rate_before, view.rate_before_interval),
        rate_after: rate(view.rate_after, view.rate_after_interval),
        view,
        diff,
    }
}

/// The posterior over the hunt's commits (oldest left) as bars, the culprit highlighted;
/// commits the test cannot run at are marked on the axis. Each bar links to its commit.
pub fn posterior_svg(view: &HuntView) -> String {
    let points = &view.posterior;
    let frame = PlotFrame::new(points.len(), 816.0, 2.0, 24.0, 200.0);
    let step = frame.step;
    let y = |p: f64| frame.y(p);
    let mut svg = String::with_capacity(300 + points.len() * 260);
    frame.open(
        &mut svg,
        "posterior-plot",
        "probability that each commit changed the failure rate, oldest first",
        &[0.0, 0.5, 1.0],
    );
    let culprit = view.summary.culprit.as_ref().map(|c| c.commit.as_str());
    for (index, point) in points.iter().enumerate() {
        let x = frame.x(index);
        svg.push_str(r#"<a href=""#);
        push_escaped(
            &mut svg,
            &paths::commit_url(&view.summary.repo, &point.commit),
        );
        svg.push_str(r#""><g><title>"#);
        push_escaped(
            &mut svg,
            &format!(
                "{}: P = {:.3}, {} of {} runs failed ({})",
                short_hash(&point.commit),
                point.probability,
                point.failures,
                point.runs,
                point.status.replace('_', " ")
            ),
        );
        svg.push_str("</title>");
        let class = if Some(point.commit.as_str()) == culprit {
            "bar culprit"
        } else {
            "bar"
        };
        let top = y(point.probability);
        let _ = write!(
            svg,
            r#"<rect class="{class}" x="{x:.1}" y="{top:.1}" width="{w:.1}" height="{h:.1}"/>"#,
            w = (step - 1.0).max(1.0),
            h = (y(0.0) - top).max(0.5)
        );
        if !matches!(point.status, "observed" | "not_run") {
            let _ = write!(
                svg,
                r#"<rect class="missing" x="{x:.1}" y="{my:.1}" width="{w:.1}" height="3"/>"#,
                my = y(0.0) + 2.0,
                w = (step - 1.0).max(1.0)
            );
        }
        svg.push_str("</g></a>");
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_looper_core::scheduling::{Culprit, HuntSpec, HuntState};

    fn view() -> HuntView {
        let record = HuntRecord {
            hunt_id: "r-hunt1".into(),
            spec: HuntSpec {
                repo: "app".into(),
                branch: "main".into(),
                test: "t/linux".into(),
                case: None,
                budget_runs: 100,
                from: None,
                to: None,
                priority: 1,
                batch_runs: 8,
                target_probability: 0.95,
            },
            commits: vec!["a".repeat(40), "b".repeat(40)],
            state: HuntState::Found,
            runs_used: 40,
            batches: 5,
            targets: Default::default(),
            culprit: Some(Culprit {
                commit: "b".repeat(40),
                probability: 0.97,
                could_also_be: Vec::new(),
            }),
            note: None,
            created: 1_000,
            ended: 2_000,
        };
        HuntView {
            posterior: vec![
                PosteriorPoint {
                    commit: "a".repeat(40),
                    probability: 0.01,
                    runs: 20,
                    failures: 0,
                    status: "observed",
                    same_definition: Vec::new(),
                },
                PosteriorPoint {
                    commit: "b".repeat(40),
                    probability: 0.97,
                    runs: 20,
                    failures: 6,
                    status: "observed",
                    same_definition: Vec::new(),
                },
            ],
            ..hunt_view(
                HuntReport {
                    record,
                    positions: Vec::new(),
                    posterior: Vec::new(),
                    no_change: 0.02,
                    rate_before: None,
                    rate_after: None,
                    more_than_one_change: 0.0,
                    pin_changes: Vec::new(),
                },
                None,
            )
        }
    }

    #[test]
    fn the_culprit_bar_is_marked_and_links_to_its_commit() {
        let view = view();
        assert_eq!(view.summary.state, "found");
        assert_eq!(
            view.summary.culprit.as_ref().unwrap().short,
            short_hash(&"b".repeat(40))
        );
        let svg = posterior_svg(&view);
        assert_eq!(svg.matches("bar culprit").count(), 1);
        assert!(svg.contains(&paths::commit_url("app", &"b".repeat(40))));
        assert!(svg.contains("P = 0.970, 6 of 20 runs failed"));
    }
}
