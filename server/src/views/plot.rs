//! The failure-rate plot of one test across a branch's history: an inline SVG with one point
//! per commit (oldest left), its 95% interval drawn as a vertical bar, commits without results
//! as hollow markers on the axis. Built as a string (no JavaScript, no images).

use crate::views::cells::rate_text;
use crate::views::format::{escape, push_escaped};
use std::fmt::Write;
use test_looper_core::scheduling::stats::FailureRate;

/// One commit's point.
pub struct PlotPoint {
    /// Short label (e.g. the short hash and subject) shown in the tooltip.
    pub label: String,
    /// Link opened by clicking the point.
    pub href: String,
    pub rate: FailureRate,
}

const HEIGHT: f64 = 220.0;
const MARGIN_LEFT: f64 = 44.0;
const MARGIN_RIGHT: f64 = 12.0;
const MARGIN_TOP: f64 = 12.0;
const MARGIN_BOTTOM: f64 = 24.0;
const MIN_STEP: f64 = 6.0;
const MAX_STEP: f64 = 28.0;

/// The frame of a per-commit plot (oldest left): one slot of `step` pixels per commit, a
/// 0–100% scale with grid lines, "oldest" and "newest" under the ends. Shared by the
/// failure-rate plot and a flake hunt's posterior.
pub struct PlotFrame {
    pub step: f64,
    pub inner_width: f64,
    pub height: f64,
}

impl PlotFrame {
    /// A frame for `slots` commits that fits `width` pixels when each keeps at least
    /// `min_step` pixels (else it grows), each slot at most `max_step`.
    pub fn new(slots: usize, width: f64, min_step: f64, max_step: f64, height: f64) -> Self {
        let inner_width_wanted = (width - MARGIN_LEFT - MARGIN_RIGHT).max(100.0);
        let step = if slots == 0 {
            max_step
        } else {
            (inner_width_wanted / slots as f64).clamp(min_step, max_step)
        };
        PlotFrame {
            step,
            inner_width: step * slots.max(1) as f64,
            height,
        }
    }

    /// Left edge of slot `index`.
    pub fn x(&self, index: usize) -> f64 {
        MARGIN_LEFT + self.step * index as f64
    }

    /// The vertical position of a value in `0..=1`.
    pub fn y(&self, value: f64) -> f64 {
        let plot_height = self.height - MARGIN_TOP - MARGIN_BOTTOM;
        MARGIN_TOP + plot_height * (1.0 - value.clamp(0.0, 1.0))
    }

    /// Opens the `<svg>` with its scale (`ticks` in `0..=1`) and end labels; close it with
    /// `</svg>`.
    pub fn open(&self, svg: &mut String, class: &str, label: &str, ticks: &[f64]) {
        let total_width = MARGIN_LEFT + self.inner_width + MARGIN_RIGHT;
        let height = self.height;
        let _ = write!(
            svg,
            r#"<svg class="{class}" xmlns="http://www.w3.org/2000/svg" width="{total_width:.0}" height="{height:.0}" viewBox="0 0 {total_width:.0} {height:.0}" role="img" aria-label="{label}">"#
        );
        for tick in ticks {
            let ty = self.y(*tick);
            let _ = write!(
                svg,
                r#"<line class="grid" x1="{MARGIN_LEFT}" x2="{x2:.1}" y1="{ty:.1}" y2="{ty:.1}"/><text class="axis" x="{tx}" y="{ly:.1}" text-anchor="end">{pct:.0}%</text>"#,
                x2 = MARGIN_LEFT + self.inner_width,
                tx = MARGIN_LEFT - 4.0,
                ly = ty + 4.0,
                pct = tick * 100.0
            );
        }
        let _ = write!(
            svg,
            r#"<text class="axis" x="{MARGIN_LEFT}" y="{by:.1}">oldest</text><text class="axis" x="{ex:.1}" y="{by:.1}" text-anchor="end">newest</text>"#,
            by = height - 6.0,
            ex = MARGIN_LEFT + self.inner_width
        );
    }
}

/// The SVG for `points` in display order (oldest first). Fits `width` pixels when it can,
/// otherwise grows so that every point keeps at least a few pixels.
pub fn failure_rate_svg(points: &[PlotPoint], width: f64) -> String {
    let frame = PlotFrame::new(points.len(), width, MIN_STEP, MAX_STEP, HEIGHT);
    let step = frame.step;
    let y = |rate: f64| frame.y(rate);
    let mut svg = String::with_capacity(200 + points.len() * 300);
    frame.open(
        &mut svg,
        "rate-plot",
        "failure rate per commit, oldest first",
        &[0.0, 0.25, 0.5, 0.75, 1.0],
    );
    let mut line = String::new();
    for (index, point) in points.iter().enumerate() {
        let cx = MARGIN_LEFT + step * (index as f64 + 0.5);
        svg.push_str(r#"<a href=""#);
        push_escaped(&mut svg, &point.href);
        svg.push_str(r#""><g class="point">"#);
        svg.push_str("<title>");
        push_escaped(&mut svg, &point.label);
        if point.rate.runs == 0 {
            svg.push_str(": no finished runs");
        } else {
            let _ = write!(
                svg,
                ": {} of {} runs failed, {}",
                point.rate.failures,
                point.rate.runs,
                escape(&rate_text(&point.rate))
            );
        }
        svg.push_str("</title>");
        if point.rate.runs == 0 {
            let _ = write!(
                svg,
                r#"<circle class="no-data" cx="{cx:.1}" cy="{cy:.1}" r="2.5"/>"#,
                cy = y(0.0)
            );
        } else {
            let (low, high, mid) = (y(point.rate.low), y(point.rate.high), y(point.rate.rate));
            let _ = write!(
                svg,
                r#"<line class="interval" x1="{cx:.1}" x2="{cx:.1}" y1="{low:.1}" y2="{high:.1}"/><circle class="rate{bad}" cx="{cx:.1}" cy="{mid:.1}" r="3.5"/>"#,
                bad = if point.rate.failures > 0 {
                    " failing"
                } else {
                    ""
                }
            );
            let _ = write!(
                line,
                "{}{cx:.1},{mid:.1}",
                if line.is_empty() { "M" } else { " L" }
            );
        }
        svg.push_str("</g></a>");
    }
    if !line.is_empty() {
        let _ = write!(svg, r#"<path class="trend" d="{line}"/>"#);
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(label: &str, failures: u64, runs: u64) -> PlotPoint {
        PlotPoint {
            label: label.into(),
            href: "/repos/a/-/commits/x?y=1&z=2".into(),
            rate: FailureRate::new(failures, runs),
        }
    }

    #[test]
    fn draws_intervals_points_and_hollow_markers() {
        let svg = failure_rate_svg(
            &[point("c1", 0, 10), point("c2", 5, 10), point("c3", 0, 0)],
            600.0,
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches(r#"class="interval""#).count(), 2);
        assert_eq!(svg.matches(r#"class="no-data""#).count(), 1);
        assert_eq!(svg.matches(r#"class="rate failing""#).count(), 1);
        assert!(svg.contains("5 of 10 runs failed, 50% [24%–76%]"), "{svg}");
        assert!(svg.contains("c3: no finished runs"));
        assert!(svg.contains("x?y=1&amp;z=2"));
    }

    #[test]
    fn labels_are_escaped_and_many_points_keep_a_minimum_step() {
        let svg = failure_rate_svg(&[point("<script>alert(1)</script>", 1, 2)], 600.0);
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
        let many: Vec<_> = (0..1000).map(|i| point(&i.to_string(), 1, 3)).collect();
        let svg = failure_rate_svg(&many, 600.0);
        assert!(svg.contains(r#"width="6056""#), "{}", &svg[..200]);
        assert!(failure_rate_svg(&[], 600.0).ends_with("</svg>"));
    }
}
