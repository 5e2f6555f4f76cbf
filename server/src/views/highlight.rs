//! YAML syntax highlighting for the definitions file view: a small line-based tokenizer that
//! wraps keys, strings, comments, anchors/aliases/tags and scalars in `<span>`s, escapes
//! everything, numbers the lines and marks the line an error points at.

use crate::views::format::push_escaped;
use std::fmt::Write;

/// The file as an HTML `<ol>` of lines, with `error_line` (1-based) marked.
pub fn yaml_to_html(text: &str, error_line: Option<usize>) -> String {
    let mut out = String::with_capacity(text.len() * 2 + 64);
    out.push_str(r#"<ol class="source yaml">"#);
    // Errors at the end of the input point one past the last line: mark the last line.
    let line_count = text.lines().count();
    let error_line = error_line.map(|line| line.min(line_count));
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let class = if Some(number) == error_line {
            r#" class="error-line""#
        } else {
            ""
        };
        let _ = write!(out, r#"<li id="L{number}"{class}><code>"#);
        highlight_line(&mut out, line);
        out.push_str("</code></li>");
    }
    out.push_str("</ol>");
    out
}

/// The first "line N" in an error message (the format of definitions errors).
pub fn error_line(message: &str) -> Option<usize> {
    let index = message.find("line ")?;
    let digits: String = message[index + 5..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok().filter(|&n| n > 0)
}

fn highlight_line(out: &mut String, line: &str) {
    let indent_len = line.len() - line.trim_start().len();
    push_escaped(out, &line[..indent_len]);
    let mut rest = &line[indent_len..];
    while let Some(after) = rest.strip_prefix("- ") {
        out.push_str(r#"<span class="y-punct">-</span> "#);
        rest = after;
    }
    if rest == "-" {
        out.push_str(r#"<span class="y-punct">-</span>"#);
        return;
    }
    if let Some(key_end) = key_end(rest) {
        span(out, "y-key", &rest[..key_end]);
        out.push_str(r#"<span class="y-punct">:</span>"#);
        rest = &rest[key_end + 1..];
    }
    value(out, rest);
}

/// Byte index of the `:` ending a mapping key at the start of `text`, if any.
fn key_end(text: &str) -> Option<usize> {
    if text.starts_with('#') {
        return None;
    }
    let bytes = text.as_bytes();
    let mut quote: Option<u8> = None;
    for (index, &byte) in bytes.iter().enumerate() {
        match quote {
            Some(q) if byte == q => quote = None,
            Some(_) => {}
            None if index == 0 && (byte == b'"' || byte == b'\'') => quote = Some(byte),
            None if byte == b':' => {
                let next = bytes.get(index + 1);
                if next.is_none() || next == Some(&b' ') {
                    return Some(index);
                }
            }
            None if byte == b'#' && index > 0 && bytes[index - 1] == b' ' => return None,
            None => {}
        }
    }
    None
}

fn value(out: &mut String, text: &str) {
    let trimmed = text.trim_start();
    push_escaped(out, &text[..text.len() - trimmed.len()]);
    if trimmed.is_empty() {
        return;
    }
    if trimmed.starts_with('#') {
        span(out, "y-comment", trimmed);
        return;
    }
    let (body, comment) = split_comment(trimmed);
    let class = match body.as_bytes().first() {
        Some(b'"' | b'\'') => "y-string",
        Some(b'&' | b'*') => "y-anchor",
        Some(b'!') => "y-tag",
        Some(b'|' | b'>') => "y-punct",
        _ if matches!(
            body.trim_end(),
            "true" | "false" | "null" | "~" | "yes" | "no"
        ) =>
        {
            "y-literal"
        }
        _ if body.trim_end().parse::<f64>().is_ok() => "y-number",
        _ => "y-scalar",
    };
    span(out, class, body);
    if let Some(comment) = comment {
        span(out, "y-comment", comment);
    }
}

fn split_comment(text: &str) -> (&str, Option<&str>) {
    if text.starts_with(['"', '\'']) {
        return (text, None);
    }
    match text.find(" #") {
        Some(index) => (&text[..index + 1], Some(&text[index + 1..])),
        None => (text, None),
    }
}

fn span(out: &mut String, class: &str, text: &str) {
    let _ = write!(out, r#"<span class="{class}">"#);
    push_escaped(out, text);
    out.push_str("</span>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_values_comments_and_the_error_line() {
        let html = yaml_to_html(
            "# top\ntests:\n  unit: {command: \"x\"}\n  - &a 3 # n\n  name: \"<b>\"\n",
            Some(3),
        );
        assert!(
            html.contains(r#"<span class="y-comment"># top</span>"#),
            "{html}"
        );
        assert!(html.contains(r#"<span class="y-key">tests</span>"#));
        assert!(html.contains(r#"<li id="L3" class="error-line">"#));
        assert!(
            html.contains(
                r#"<span class="y-anchor">&amp;a 3 </span><span class="y-comment"># n</span>"#
            ),
            "{html}"
        );
        assert!(html.contains(r#"<span class="y-string">&quot;&lt;b&gt;&quot;</span>"#));
        assert!(!html.contains("<b>"));
        assert_eq!(html.matches("<li").count(), 5);
        let past_end = yaml_to_html("a: [1\n", Some(2));
        assert!(past_end.contains(r#"<li id="L1" class="error-line">"#));
    }

    #[test]
    fn finds_the_line_in_error_messages() {
        assert_eq!(
            error_line("app@abc:testlooper.yml, line 7 column 3, at tests"),
            Some(7)
        );
        assert_eq!(error_line("no location"), None);
        assert_eq!(error_line("line x"), None);
    }

    #[test]
    fn urls_in_values_are_not_keys() {
        let html = yaml_to_html("url: http://x:80/y", None);
        assert!(html.contains(r#"<span class="y-key">url</span>"#));
        assert!(
            html.contains(r#"<span class="y-scalar">http://x:80/y</span>"#),
            "{html}"
        );
    }
}
