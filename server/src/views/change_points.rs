//! Where a failure rate most likely changed along one page of a branch's history: the
//! one-change posterior of [`test_looper_core::stats::change_point`] over the page's
//! commits, oldest first, in O(commits) (no check for more than one change: this runs on
//! every request). Consecutive commits that declare the same definitions share their
//! runs, so they are one position (its probability goes to the oldest of them). Used by the
//! branch grid (per column) and the test history page.

use test_looper_core::stats::change_point::{
    one_change_posterior, ChangeModel, MissingReason, Position,
};

/// One commit of the page, oldest first.
pub struct PagePoint<K> {
    /// What the commit declares (`None`: nothing, the test or group is absent there).
    pub definitions: Option<K>,
    pub failures: u64,
    pub runs: u64,
}

/// The change points of a page.
pub struct PageChanges {
    /// Per point (same order): P(the rate changed at this commit).
    pub probabilities: Vec<f64>,
    /// P(the rate did not change across the page).
    pub no_change: f64,
    /// The point where it most likely changed, with the probability, when that holds at
    /// least half of the posterior.
    pub likely: Option<(usize, f64)>,
}

/// The change points of `points` (oldest first); `None` with fewer than two positions with
/// runs.
pub fn page_changes<K: PartialEq>(points: &[PagePoint<K>]) -> Option<PageChanges> {
    let mut positions = Vec::new();
    let mut first_point = Vec::new();
    for (index, point) in points.iter().enumerate() {
        let shares_previous = index > 0
            && point.definitions.is_some()
            && points[index - 1].definitions == point.definitions;
        if shares_previous {
            continue;
        }
        positions.push(match (&point.definitions, point.runs) {
            (None, _) => Position::Missing(MissingReason::Absent),
            (Some(_), 0) => Position::Missing(MissingReason::NotRun),
            (Some(_), runs) => Position::Observed {
                failures: point.failures,
                runs,
            },
        });
        first_point.push(index);
    }
    if positions.iter().filter(|p| p.counts().1 > 0).count() < 2 {
        return None;
    }
    let posterior = one_change_posterior(&positions, &ChangeModel::default()).ok()?;
    let mut probabilities = vec![0.0; points.len()];
    for (position, probability) in posterior.first_bad.iter().enumerate() {
        probabilities[first_point[position]] = *probability;
    }
    let likely = posterior
        .most_likely_culprit()
        .filter(|range| range.probability >= 0.5)
        .map(|range| (first_point[range.last], range.probability));
    Some(PageChanges {
        probabilities,
        no_change: posterior.no_change,
        likely,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(definitions: Option<u32>, failures: u64, runs: u64) -> PagePoint<u32> {
        PagePoint {
            definitions,
            failures,
            runs,
        }
    }

    #[test]
    fn a_clear_change_is_found_and_shared_definitions_count_once() {
        let mut points = vec![point(None, 0, 0)];
        points.extend((1..6).map(|i| point(Some(i), 0, 30)));
        // Commits 6 and 7 share one definition (and its runs).
        points.push(point(Some(6), 15, 30));
        points.push(point(Some(6), 15, 30));
        points.extend((8..12).map(|i| point(Some(i), 15, 30)));
        let changes = page_changes(&points).unwrap();
        let (at, probability) = changes.likely.unwrap();
        assert_eq!(at, 6);
        assert!(probability > 0.9, "{probability}");
        assert_eq!(
            changes.probabilities[7], 0.0,
            "the shared commit is one position"
        );
        assert!(changes.no_change < 0.01);
    }

    #[test]
    fn too_few_runs_say_nothing() {
        assert!(page_changes(&[point(Some(1), 1, 2), point(Some(2), 0, 0)]).is_none());
    }
}
