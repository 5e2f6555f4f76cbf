//! The key layout shared by every backend, key validation, and the reversible name sanitizer.
//!
//! Layout (relative to the store root or the S3 key prefix):
//! - `builds/<build hash>/<name>`: outputs of a build, shared by every commit with that hash;
//! - `runs/<test hash>/<run id>/<name>`: artifacts, logs and the result record of one run
//!   (names may contain `/`, e.g. `individual_test_logs/<case>/<file>`);
//! - `sources/<repo>/<commit>/<name>`: source tarballs, keyed by repo and commit (not by
//!   commit alone, as the original did);
//! - `scheduler/<name>`: the scheduler's durable documents (`results/<test hash>/<run id>.json`,
//!   `settings.json`), from which an empty Redis is rebuilt.
//!
//! Every part is checked: no empty segment, no `.`/`..`, no `\`, NUL or control characters, and
//! no absolute path, so a key always stays inside the store.

use crate::error::ArtifactError;

/// Where one object lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ArtifactKey {
    relative: String,
}

/// A listable folder of objects (all artifacts of one run, or of one build).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ArtifactPrefix {
    relative: String,
}

impl ArtifactKey {
    /// `builds/<hash>/<name>`.
    pub fn build(hash: &str, name: &str) -> Result<Self, ArtifactError> {
        Ok(Self {
            relative: format!("{}/{}", ArtifactPrefix::build(hash)?.relative, path(name)?),
        })
    }

    /// `runs/<test hash>/<run id>/<name>`.
    pub fn run(test_hash: &str, run_id: &str, name: &str) -> Result<Self, ArtifactError> {
        Ok(Self {
            relative: format!(
                "{}/{}",
                ArtifactPrefix::run(test_hash, run_id)?.relative,
                path(name)?
            ),
        })
    }

    /// `sources/<sanitized repo>/<commit>/<name>`.
    pub fn source(repo: &str, commit: &str, name: &str) -> Result<Self, ArtifactError> {
        Ok(Self {
            relative: format!(
                "sources/{}/{}/{}",
                segment(&sanitize_name(repo))?,
                segment(commit)?,
                path(name)?
            ),
        })
    }

    /// `scheduler/<name>`.
    pub fn scheduler(name: &str) -> Result<Self, ArtifactError> {
        Ok(Self {
            relative: format!("scheduler/{}", path(name)?),
        })
    }

    /// `audit/<day>/<name>`: one segment of the audit log (`day` is `YYYY-MM-DD`).
    pub fn audit(day: &str, name: &str) -> Result<Self, ArtifactError> {
        Ok(Self {
            relative: format!("audit/{}/{}", segment(day)?, segment(name)?),
        })
    }

    /// The key relative to the store root, `/`-separated.
    pub fn as_str(&self) -> &str {
        &self.relative
    }

    /// The last path segment (the file name).
    pub fn file_name(&self) -> &str {
        self.relative.rsplit('/').next().unwrap_or(&self.relative)
    }
}

impl ArtifactPrefix {
    /// Every object of one build hash.
    pub fn build(hash: &str) -> Result<Self, ArtifactError> {
        Ok(Self {
            relative: format!("builds/{}", segment(hash)?),
        })
    }

    /// Every object of one run.
    pub fn run(test_hash: &str, run_id: &str) -> Result<Self, ArtifactError> {
        Ok(Self {
            relative: format!("runs/{}/{}", segment(test_hash)?, segment(run_id)?),
        })
    }

    /// Every run's objects (`runs/`), for retention.
    pub fn all_runs() -> Self {
        Self {
            relative: "runs".into(),
        }
    }

    /// Every build's outputs (`builds/`), for retention.
    pub fn all_builds() -> Self {
        Self {
            relative: "builds".into(),
        }
    }

    /// The audit log's segments of one day (`audit/<day>`).
    pub fn audit(day: &str) -> Result<Self, ArtifactError> {
        Ok(Self {
            relative: format!("audit/{}", segment(day)?),
        })
    }

    /// Every scheduler document under `scheduler/<dir>`.
    pub fn scheduler(dir: &str) -> Result<Self, ArtifactError> {
        Ok(Self {
            relative: format!("scheduler/{}", path(dir)?),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.relative
    }
}

impl std::fmt::Display for ArtifactKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.relative)
    }
}

/// One path segment: non-empty, not `.`/`..`, printable, no separators.
fn segment(part: &str) -> Result<&str, ArtifactError> {
    let invalid = |reason| ArtifactError::InvalidKey {
        part: part.to_string(),
        reason,
    };
    if part.is_empty() {
        return Err(invalid("empty"));
    }
    if part == "." || part == ".." {
        return Err(invalid("relative segment"));
    }
    if part.len() > 255 {
        return Err(invalid("longer than 255 bytes"));
    }
    if part
        .chars()
        .any(|c| c == '/' || c == '\\' || c.is_control())
    {
        return Err(invalid("separator or control character"));
    }
    Ok(part)
}

/// A relative `/`-separated path of valid segments.
fn path(name: &str) -> Result<&str, ArtifactError> {
    if name.starts_with('/') {
        return Err(ArtifactError::InvalidKey {
            part: name.to_string(),
            reason: "absolute path",
        });
    }
    for part in name.split('/') {
        segment(part)?;
    }
    Ok(name)
}

const SANITIZE: [(char, &str); 5] = [
    ('_', "_u_"),
    ('/', "_s_"),
    ('\\', "_bs_"),
    (':', "_c_"),
    (' ', "_sp_"),
];

/// The reversible file-name encoding of names such as `build/linux/libs`:
/// `_`→`_u_`, `/`→`_s_`, `\`→`_bs_`, `:`→`_c_`, space→`_sp_`.
pub fn sanitize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match SANITIZE.iter().find(|(from, _)| *from == c) {
            Some((_, to)) => out.push_str(to),
            None => out.push(c),
        }
    }
    out
}

/// The inverse of [`sanitize_name`]; `None` when `text` is not a sanitized name.
pub fn unsanitize_name(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('_') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        let (from, to) = SANITIZE.iter().find(|(_, to)| tail.starts_with(to))?;
        out.push(*from);
        rest = &tail[to.len()..];
    }
    out.push_str(rest);
    Some(out)
}

/// Content type and encoding for serving an object by name: text logs inline, `.gz` text logs
/// as gzip-encoded text, PNG as an image, anything else as a download.
pub fn content_type_for(name: &str) -> (&'static str, Option<&'static str>) {
    const TEXT: [&str; 6] = [".txt", ".log", ".out", ".stdout", ".stderr", ".json"];
    let lower = name.to_ascii_lowercase();
    if TEXT.iter().any(|suffix| lower.ends_with(suffix)) {
        return ("text/plain; charset=utf-8", None);
    }
    if let Some(stem) = lower.strip_suffix(".gz") {
        if TEXT.iter().any(|suffix| stem.ends_with(suffix)) {
            return ("text/plain; charset=utf-8", Some("gzip"));
        }
    }
    if lower.ends_with(".png") {
        return ("image/png", None);
    }
    ("application/octet-stream", None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_the_same_for_every_backend() {
        assert_eq!(
            ArtifactKey::build("ab12", "build_s_linux_s_libs.tar.gz")
                .unwrap()
                .as_str(),
            "builds/ab12/build_s_linux_s_libs.tar.gz"
        );
        assert_eq!(
            ArtifactKey::run("ab12", "run7", "individual_test_logs/x/log.txt")
                .unwrap()
                .as_str(),
            "runs/ab12/run7/individual_test_logs/x/log.txt"
        );
        assert_eq!(
            ArtifactKey::source("org/repo", "c0ffee", "source.tar.gz")
                .unwrap()
                .as_str(),
            "sources/org_s_repo/c0ffee/source.tar.gz"
        );
    }

    #[test]
    fn traversal_and_odd_names_are_rejected() {
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            "",
            ".",
            "a/./b",
            "a\\b",
            "a\0b",
        ] {
            assert!(ArtifactKey::build("h", bad).is_err(), "{bad:?} accepted");
            assert!(ArtifactKey::run("h", "r", bad).is_err(), "{bad:?} accepted");
        }
        assert!(ArtifactKey::build("..", "x").is_err());
        assert!(ArtifactKey::run("h", "../r", "x").is_err());
        assert!(ArtifactKey::source("repo", "a/b", "x").is_err());
    }

    #[test]
    fn sanitizing_is_reversible() {
        for name in [
            "bad/linux",
            "b/x/a",
            "under_score",
            "c:\\x y",
            "plain",
            "_u_",
        ] {
            assert_eq!(unsanitize_name(&sanitize_name(name)).as_deref(), Some(name));
        }
        assert_eq!(sanitize_name("bad/linux"), "bad_s_linux");
        assert_eq!(sanitize_name("b/x/a"), "b_s_x_s_a");
        assert_eq!(unsanitize_name("broken_x"), None);
    }

    #[test]
    fn content_types_follow_the_suffix() {
        assert_eq!(content_type_for("log.txt").0, "text/plain; charset=utf-8");
        assert_eq!(
            content_type_for("log.txt.gz"),
            ("text/plain; charset=utf-8", Some("gzip"))
        );
        assert_eq!(content_type_for("shot.png").0, "image/png");
        assert_eq!(content_type_for("a.tar.gz").0, "application/octet-stream");
    }
}
