//! Human formatting shared by pages: ages, durations, byte sizes, percentages, short hashes,
//! and HTML escaping for markup built in Rust (SVG plots, highlighted source).

use crate::cache::snapshot::Keep;
use std::fmt::Write;

/// "42 seconds", "3.5 minutes", "7.2 hours", "12.0 days" (as the original showed them).
pub fn duration(seconds: i64) -> String {
    let seconds = seconds.max(0);
    if seconds < 60 {
        format!("{seconds} seconds")
    } else if seconds < 2 * 3600 {
        format!("{:.1} minutes", seconds as f64 / 60.0)
    } else if seconds < 48 * 3600 {
        format!("{:.1} hours", seconds as f64 / 3600.0)
    } else {
        format!("{:.1} days", seconds as f64 / 86400.0)
    }
}

/// Age of a timestamp (seconds since the epoch) relative to `now`.
pub fn age(timestamp: i64, now: i64) -> String {
    duration(now - timestamp)
}

/// "512 bytes", "3.2 Kb", "4.0 Mb", "1.5 Gb".
pub fn bytes(size: u64) -> String {
    const KIB: f64 = 1024.0;
    let value = size as f64;
    if size < 2 * 1024 {
        format!("{size} bytes")
    } else if size < 2 * 1024 * 1024 {
        format!("{:.1} Kb", value / KIB)
    } else if size < 2 * 1024 * 1024 * 1024 {
        format!("{:.1} Mb", value / KIB / KIB)
    } else {
        format!("{:.1} Gb", value / KIB / KIB / KIB)
    }
}

/// A rate in `0..=1` as a percentage with precision that suits its size: "0%", "0.4%", "12%".
pub fn percent(rate: f64) -> String {
    let pct = (rate * 100.0).clamp(0.0, 100.0);
    if pct == 0.0 || pct >= 10.0 {
        format!("{pct:.0}%")
    } else {
        format!("{pct:.1}%")
    }
}

/// The first 8 characters of a hash (whole string if shorter, never splits a character).
pub fn short_hash(hash: &str) -> &str {
    match hash.char_indices().nth(8) {
        Some((index, _)) => &hash[..index],
        None => hash,
    }
}

/// Cuts `text` to `max` characters, adding "…" when it was longer.
pub fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((index, _)) => format!("{}…", &text[..index]),
        None => text.to_owned(),
    }
}

/// Escapes text for HTML/SVG content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    push_escaped(&mut out, text);
    out
}

/// Appends `text` escaped to `out`.
pub fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
}

/// A millisecond timestamp as UTC "2024-05-01 12:30:05".
pub fn utc_millis(millis: u64) -> String {
    let seconds = i64::try_from(millis / 1000).unwrap_or(i64::MAX);
    utc_seconds(seconds)
}

/// A second timestamp as UTC "2024-05-01 12:30:05".
pub fn utc_seconds(seconds: i64) -> String {
    match chrono::DateTime::from_timestamp(seconds, 0) {
        Some(time) => {
            let mut out = String::new();
            let _ = write!(out, "{}", time.format("%Y-%m-%d %H:%M:%S UTC"));
            out
        }
        None => "?".into(),
    }
}

/// Seconds since the epoch now.
pub fn now_seconds() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Milliseconds since the epoch now (the clock of [`now_seconds`]).
pub fn now_millis() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
}

/// How many more seconds [`duration`]`(seconds)` keeps its text: `duration(seconds + d)` is
/// the same text for every `d` below the answer and a different one at it. Views keep their
/// clock-dependent texts exactly this long.
pub fn duration_holds_for(seconds: i64) -> i64 {
    // The text is a non-decreasing function of `seconds` (a different text never comes
    // back), so the first change is found by bisection below a step that always changes it:
    // two tenths of the unit (rounding at the tenths' boundaries makes one tenth last one
    // second more or less than a tenth).
    let step = if seconds < 60 {
        (1 - seconds).max(1)
    } else if seconds < 2 * 3600 {
        12
    } else if seconds < 48 * 3600 {
        720
    } else {
        17_280
    };
    let text = duration(seconds);
    let (mut same, mut changed) = (0, step);
    if duration(seconds.saturating_add(changed)) == text {
        return step;
    }
    while changed - same > 1 {
        let middle = same + (changed - same) / 2;
        if duration(seconds.saturating_add(middle)) == text {
            same = middle;
        } else {
            changed = middle;
        }
    }
    changed
}

/// How long texts of the elapsed time since each of `since_ms` (wall-clock milliseconds), as
/// [`duration`] writes them at `now_ms` from whole seconds, stay the same.
pub fn elapsed_texts_keep(now_ms: u64, since_ms: impl IntoIterator<Item = i64>) -> Keep {
    let now_ms = i64::try_from(now_ms).unwrap_or(i64::MAX);
    since_ms
        .into_iter()
        .map(|since| {
            let elapsed = now_ms.saturating_sub(since).div_euclid(1000);
            let changes_at = elapsed.saturating_add(duration_holds_for(elapsed));
            let until = since.saturating_add(changes_at.saturating_mul(1000));
            Keep::Until(u64::try_from(until).unwrap_or(0))
        })
        .fold(Keep::WhileUnchanged, Keep::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_the_original_thresholds() {
        assert_eq!(duration(59), "59 seconds");
        assert_eq!(duration(90), "1.5 minutes");
        assert_eq!(duration(3 * 3600), "3.0 hours");
        assert_eq!(duration(3 * 86400), "3.0 days");
        assert_eq!(duration(-5), "0 seconds");
    }

    #[test]
    fn a_duration_text_holds_exactly_as_long_as_said() {
        let mut seconds = -70;
        while seconds < 4 * 86400 {
            let holds = duration_holds_for(seconds);
            let text = duration(seconds);
            assert!(holds >= 1);
            assert_eq!(
                duration(seconds + holds - 1),
                text,
                "at {seconds} + {holds} - 1"
            );
            assert_ne!(duration(seconds + holds), text, "at {seconds} + {holds}");
            // Past one minute the texts step at most every six seconds.
            seconds += if seconds < 7200 { 1 } else { 97 };
        }
        assert_eq!(duration_holds_for(-5), 6);
        assert_eq!(duration_holds_for(10), 1);
        assert_eq!(duration_holds_for(59), 1);
    }

    #[test]
    fn sizes() {
        assert_eq!(bytes(100), "100 bytes");
        assert_eq!(bytes(4096), "4.0 Kb");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 Mb");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 Gb");
    }

    #[test]
    fn percents_and_truncation() {
        assert_eq!(percent(0.0), "0%");
        assert_eq!(percent(0.004), "0.4%");
        assert_eq!(percent(0.5), "50%");
        assert_eq!(truncate("héllo wörld", 5), "héllo…");
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(short_hash("0123456789abcdef"), "01234567");
    }

    #[test]
    fn escaping() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
