//! Names that arrive in URLs (repos, branches, commits, test names, run ids), their
//! validation, and the URL scheme of browse pages.
//!
//! Browse URLs follow the original's scheme: names may contain `/`, and a lone `-`
//! segment ends a multi-segment name:
//! `/repos/<repo…>`, `/repos/<repo…>/-/branches/<branch…>`,
//! `/repos/<repo…>/-/branches/<branch…>/-/tests/<test…>` (a test across history),
//! `/repos/<repo…>/-/commits/<sha>`. Segments are percent-encoded in links and decoded here.
//! Anything that could climb out of a directory (`..`, `.`, empty segments, backslashes, control
//! characters) is rejected before it reaches git, Redis or storage.

use crate::git::store::is_safe_repo_name;

/// Why a name from a request was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {reason}")]
pub struct InvalidName {
    pub what: &'static str,
    pub reason: String,
}

fn invalid(what: &'static str, reason: impl Into<String>) -> InvalidName {
    InvalidName {
        what,
        reason: reason.into(),
    }
}

/// A repo name as the store knows it (`group/sub/name`).
pub fn repo_name(text: &str) -> Result<String, InvalidName> {
    if is_safe_repo_name(text) {
        Ok(text.to_owned())
    } else {
        Err(invalid("repo", format!("{text:?} is not a repo name")))
    }
}

/// A branch name that git accepts under `refs/heads/`.
pub fn branch_name(text: &str) -> Result<String, InvalidName> {
    if text.len() > 255 || !git2::Reference::is_valid_name(&format!("refs/heads/{text}")) {
        return Err(invalid("branch", format!("{text:?} is not a branch name")));
    }
    no_climbing("branch", text)?;
    Ok(text.to_owned())
}

/// A full 40-character lowercase hex commit hash.
pub fn commit_hash(text: &str) -> Result<String, InvalidName> {
    if text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(invalid(
            "commit",
            format!("{text:?} is not a 40-hex commit hash"),
        ))
    }
}

/// A definition name such as `tests/unit/linux` (or an individual test case name).
pub fn test_name(text: &str) -> Result<String, InvalidName> {
    if text.is_empty() || text.len() > 1000 {
        return Err(invalid("test", "empty or longer than 1000 bytes"));
    }
    no_climbing("test", text)?;
    Ok(text.to_owned())
}

/// A run or deployment id: letters, digits, `-` and `_`.
pub fn run_id(text: &str) -> Result<String, InvalidName> {
    if !text.is_empty()
        && text.len() <= 128
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    {
        Ok(text.to_owned())
    } else {
        Err(invalid("run id", format!("{text:?} is not a run id")))
    }
}

/// An artifact name as reported by a worker (a file name or `dir/file`).
pub fn artifact_name(text: &str) -> Result<String, InvalidName> {
    if text.is_empty() || text.len() > 1000 {
        return Err(invalid("artifact", "empty or too long"));
    }
    no_climbing("artifact", text)?;
    Ok(text.to_owned())
}

fn no_climbing(what: &'static str, text: &str) -> Result<(), InvalidName> {
    if text.starts_with('/') || text.contains('\\') || text.chars().any(char::is_control) {
        return Err(invalid(what, format!("{text:?} has a forbidden character")));
    }
    if text
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(invalid(
            what,
            format!("{text:?} has an empty, . or .. segment"),
        ));
    }
    Ok(())
}

/// A browse page named by its path under `/repos/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrowsePath {
    Repo {
        repo: String,
    },
    Branch {
        repo: String,
        branch: String,
    },
    TestHistory {
        repo: String,
        branch: String,
        test: String,
    },
    Commit {
        repo: String,
        commit: String,
    },
}

impl BrowsePath {
    /// Parses the raw (still percent-encoded) path after `/repos/`.
    pub fn parse(raw: &str) -> Result<BrowsePath, InvalidName> {
        // Split on the raw separator first: an encoded `%2D` segment is part of a name.
        let raw_segments: Vec<&str> = raw.trim_end_matches('/').split('/').collect();
        let decoded_parts = raw_segments
            .split(|s| *s == "-")
            .map(|part| {
                part.iter()
                    .map(|s| percent_decode(s))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut parts = decoded_parts.iter().map(Vec::as_slice);
        let repo = repo_name(&parts.next().unwrap_or_default().join("/"))?;
        let Some(kind_and_name) = parts.next() else {
            return Ok(BrowsePath::Repo { repo });
        };
        let (kind, name) = kind_and_name
            .split_first()
            .ok_or_else(|| invalid("path", "missing page kind after '-'"))?;
        let name = name.join("/");
        let page = match kind.as_str() {
            "branches" => {
                let branch = branch_name(&name)?;
                match parts.next() {
                    None => BrowsePath::Branch { repo, branch },
                    Some([tests, test @ ..]) if tests == "tests" => BrowsePath::TestHistory {
                        repo,
                        branch,
                        test: test_name(&test.join("/"))?,
                    },
                    Some(_) => return Err(invalid("path", "unknown page under a branch")),
                }
            }
            "commits" => BrowsePath::Commit {
                repo,
                commit: commit_hash(&name)?,
            },
            other => return Err(invalid("path", format!("unknown page kind {other:?}"))),
        };
        if parts.next().is_some() {
            return Err(invalid("path", "trailing segments"));
        }
        Ok(page)
    }

    /// The URL of this page (round-trips through [`BrowsePath::parse`]).
    pub fn url(&self) -> String {
        match self {
            BrowsePath::Repo { repo } => repo_url(repo),
            BrowsePath::Branch { repo, branch } => branch_url(repo, branch),
            BrowsePath::TestHistory { repo, branch, test } => test_history_url(repo, branch, test),
            BrowsePath::Commit { repo, commit } => commit_url(repo, commit),
        }
    }
}

pub fn repo_url(repo: &str) -> String {
    format!("/repos/{}", encode_path(repo))
}

pub fn branch_url(repo: &str, branch: &str) -> String {
    format!(
        "/repos/{}/-/branches/{}",
        encode_path(repo),
        encode_path(branch)
    )
}

pub fn test_history_url(repo: &str, branch: &str, test: &str) -> String {
    format!("{}/-/tests/{}", branch_url(repo, branch), encode_path(test))
}

pub fn commit_url(repo: &str, commit: &str) -> String {
    format!(
        "/repos/{}/-/commits/{}",
        encode_path(repo),
        encode_path(commit)
    )
}

pub fn run_url(run_id: &str) -> String {
    format!("/runs/{}", encode_path(run_id))
}

/// The page of a deployment's browser terminal.
pub fn terminal_url(deployment_id: &str) -> String {
    format!("/deployments/{}/terminal", encode_component(deployment_id))
}

pub fn artifact_url(run_id: &str, artifact: &str) -> String {
    format!(
        "/api/runs/{}/artifacts/{}",
        encode_path(run_id),
        encode_path(artifact)
    )
}

/// Percent-encodes everything but unreserved characters and `/`. A lone `-` segment (the
/// separator) is encoded as `%2D` so that names never contain the separator.
pub fn encode_path(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (index, segment) in text.split('/').enumerate() {
        if index > 0 {
            out.push('/');
        }
        if segment == "-" {
            out.push_str("%2D");
            continue;
        }
        out.push_str(&encode_component(segment));
    }
    out
}

/// Percent-encodes everything but unreserved characters (for query values and segments).
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; the result must be UTF-8.
pub fn percent_decode(text: &str) -> Result<String, InvalidName> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text
                .get(index + 1..index + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid("path", "bad percent escape"))?;
            out.push(hex);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid("path", "not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn every_page_round_trips_with_slashes_and_odd_characters() {
        let pages = [
            BrowsePath::Repo {
                repo: "group/app".into(),
            },
            BrowsePath::Branch {
                repo: "group/app".into(),
                branch: "feature/x+y@z%".into(),
            },
            BrowsePath::TestHistory {
                repo: "app".into(),
                branch: "feature/-/odd".into(),
                test: "tests/unit/linux #1".into(),
            },
            BrowsePath::Commit {
                repo: "group/sub/app".into(),
                commit: SHA.into(),
            },
        ];
        for page in pages {
            let url = page.url();
            let raw = url.strip_prefix("/repos/").unwrap();
            assert_eq!(BrowsePath::parse(raw).unwrap(), page, "{url}");
        }
    }

    #[test]
    fn climbing_and_garbage_are_rejected() {
        for raw in [
            "..%2F..%2Fetc",
            "../../etc",
            "app/-/branches/..",
            "app/-/branches/a/../b",
            "app/-/commits/xyz",
            "app/-/wat/x",
            "app/-/branches/master/-/tests/..",
            "app/-/branches/master/-/tests/a%00b",
            "app/-/commits/%ZZ",
            "%2E%2E/x",
        ] {
            assert!(BrowsePath::parse(raw).is_err(), "{raw}");
        }
        assert!(repo_name("../../etc").is_err());
        assert!(test_name("a/../../b").is_err());
        assert!(run_id("../x").is_err());
        assert!(artifact_name("/etc/passwd").is_err());
        assert!(artifact_name("logs/out.txt").is_ok());
        assert_eq!(commit_hash(&SHA.to_uppercase()).unwrap(), SHA);
    }
}
