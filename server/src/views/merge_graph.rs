//! The merge graph drawn left of the commit-history grid: lanes assigned to commits listed
//! newest first (as `git log --graph` does), rendered as one small SVG per row so that the
//! drawing stays aligned with table rows of any height.

use crate::views::format::push_escaped;
use std::fmt::Write;

/// The graph slice of one row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowGraph {
    /// Lane of the commit's dot.
    pub column: usize,
    /// Lanes entering from the row above that end at the commit (the commit itself and merges
    /// of lanes expecting it).
    pub incoming: Vec<usize>,
    /// Lanes passing through untouched.
    pub through: Vec<usize>,
    /// Lanes leaving towards the row below from the dot (one per parent shown).
    pub outgoing: Vec<usize>,
    /// Number of lanes to make room for.
    pub width: usize,
}

/// Lanes for `rows` (hash, parents), newest first. Parents outside the list keep a lane that
/// runs off the bottom, so pages continue cleanly.
pub fn layout<'a>(rows: impl IntoIterator<Item = (&'a str, &'a [String])>) -> Vec<RowGraph> {
    let mut lanes: Vec<Option<&'a str>> = Vec::new();
    let mut out = Vec::new();
    for (hash, parents) in rows {
        let incoming: Vec<usize> = lanes
            .iter()
            .enumerate()
            .filter(|(_, lane)| **lane == Some(hash))
            .map(|(index, _)| index)
            .collect();
        let column = match incoming.first() {
            Some(&first) => first,
            None => free_lane(&mut lanes),
        };
        for &index in &incoming {
            lanes[index] = None;
        }
        let through: Vec<usize> = lanes
            .iter()
            .enumerate()
            .filter(|(index, lane)| lane.is_some() && *index != column)
            .map(|(index, _)| index)
            .collect();
        let mut outgoing = Vec::new();
        for (position, parent) in parents.iter().enumerate() {
            if let Some(existing) = lanes.iter().position(|lane| *lane == Some(parent.as_str())) {
                outgoing.push(existing);
                continue;
            }
            let lane = if position == 0 {
                column
            } else {
                free_lane(&mut lanes)
            };
            lanes[lane] = Some(parent.as_str());
            outgoing.push(lane);
        }
        while lanes.last() == Some(&None) {
            lanes.pop();
        }
        let width = lanes
            .len()
            .max(column + 1)
            .max(incoming.iter().max().map_or(0, |m| m + 1));
        out.push(RowGraph {
            column,
            incoming,
            through,
            outgoing,
            width,
        });
    }
    out
}

fn free_lane(lanes: &mut Vec<Option<&str>>) -> usize {
    match lanes.iter().position(Option::is_none) {
        Some(index) => index,
        None => {
            lanes.push(None);
            lanes.len() - 1
        }
    }
}

const LANE: f64 = 12.0;
const HEIGHT: f64 = 28.0;

/// The SVG of one row, `width` lanes wide (use the page maximum so rows line up).
pub fn row_svg(row: &RowGraph, width: usize, title: &str) -> String {
    let x = |lane: usize| LANE * lane as f64 + LANE / 2.0;
    let mid = HEIGHT / 2.0;
    let mut svg = String::with_capacity(256);
    let _ = write!(
        svg,
        r#"<svg class="graph" width="{w:.0}" height="{HEIGHT:.0}" viewBox="0 0 {w:.0} {HEIGHT:.0}" preserveAspectRatio="none">"#,
        w = LANE * width.max(1) as f64
    );
    for &lane in &row.through {
        let _ = write!(
            svg,
            r#"<line x1="{x:.0}" y1="0" x2="{x:.0}" y2="{HEIGHT:.0}"/>"#,
            x = x(lane)
        );
    }
    for &lane in &row.incoming {
        let _ = write!(
            svg,
            r#"<path d="M{x1:.0},0 C{x1:.0},{q:.0} {x2:.0},{q:.0} {x2:.0},{mid:.0}"/>"#,
            x1 = x(lane),
            x2 = x(row.column),
            q = mid / 2.0
        );
    }
    for &lane in &row.outgoing {
        let _ = write!(
            svg,
            r#"<path d="M{x1:.0},{mid:.0} C{x1:.0},{q:.0} {x2:.0},{q:.0} {x2:.0},{HEIGHT:.0}"/>"#,
            x1 = x(row.column),
            x2 = x(lane),
            q = mid * 1.5
        );
    }
    let _ = write!(
        svg,
        r#"<circle cx="{cx:.0}" cy="{mid:.0}" r="4"><title>"#,
        cx = x(row.column)
    );
    push_escaped(&mut svg, title);
    svg.push_str("</title></circle></svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(spec: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        spec.iter()
            .map(|(h, ps)| (h.to_string(), ps.iter().map(|p| p.to_string()).collect()))
            .collect()
    }

    fn run(spec: &[(&str, &[&str])]) -> Vec<RowGraph> {
        let rows = rows(spec);
        layout(rows.iter().map(|(h, p)| (h.as_str(), p.as_slice())))
    }

    #[test]
    fn a_linear_history_stays_in_one_lane() {
        let graph = run(&[("c", &["b"]), ("b", &["a"]), ("a", &[])]);
        assert!(graph.iter().all(|r| r.column == 0 && r.width == 1));
        assert_eq!(graph[0].outgoing, vec![0]);
        assert_eq!(graph[1].incoming, vec![0]);
        assert!(graph[2].outgoing.is_empty());
    }

    #[test]
    fn a_merge_forks_a_lane_that_joins_back_at_the_fork_point() {
        // m merges side s into main b; both come from a.
        let graph = run(&[("m", &["b", "s"]), ("s", &["a"]), ("b", &["a"]), ("a", &[])]);
        assert_eq!(graph[0].outgoing, vec![0, 1]);
        assert_eq!(graph[1].column, 1);
        assert_eq!(graph[1].through, vec![0]);
        // s's parent a takes lane 1; b (lane 0) then sees a already expected in lane 1.
        assert_eq!(graph[2].column, 0);
        assert_eq!(graph[2].outgoing, vec![1]);
        assert_eq!(graph[3].incoming, vec![1]);
        assert!(graph.iter().all(|r| r.width <= 2));
        let svg = row_svg(&graph[0], 2, "<m>");
        assert!(svg.contains("&lt;m&gt;") && svg.matches("<path").count() == 2);
    }

    #[test]
    fn parents_outside_the_page_run_off_the_bottom() {
        let graph = run(&[("b", &["a"])]);
        assert_eq!(graph[0].outgoing, vec![0]);
    }
}
