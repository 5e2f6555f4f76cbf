//! The server's configuration file: loading, `${VAR}` expansion and validation.
//!
//! The format is YAML. See `deploy/config.example.yml` for a commented example of every
//! section; the schema lives in [`schema`], and what is refused although it parses (keys the
//! server does not act on, unsafe settings) in [`refusals`].

mod env_expand;
#[cfg(test)]
mod keys;
pub mod refusals;
mod schema;
mod storage;

pub use env_expand::expand_env_vars;
pub use refusals::Refusal;
pub use schema::*;
pub use storage::{
    DeploymentsSection, LogsSection, QuarantineSection, RetentionSection, StatisticsSection,
};

use std::path::Path;

/// Why a configuration file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("line {line}: {message}")]
    Expansion { line: usize, message: String },
    #[error("{0}")]
    Yaml(String),
    #[error("section `{section}`: {message}")]
    Invalid { section: String, message: String },
    #[error("{}", refused_lines(.0))]
    Refused(Vec<Refusal>),
}

fn refused_lines(refusals: &[Refusal]) -> String {
    let lines: Vec<String> = refusals.iter().map(Refusal::to_string).collect();
    lines.join("\n")
}

impl Config {
    /// Reads, expands and validates the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_text(&text, |name| std::env::var(name).ok())
    }

    /// Parses configuration text, looking environment variables up with `env`.
    pub fn from_text(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let expanded = expand_env_vars(text, env)?;
        let config: Config =
            serde_norway::from_str(&expanded).map_err(|err| ConfigError::Yaml(describe(&err)))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let sc = &self.source_control;
        exactly_one(
            "source_control",
            &[
                ("local", sc.local.is_some()),
                ("github", sc.github.is_some()),
                ("gitlab", sc.gitlab.is_some()),
            ],
        )?;
        let art = &self.artifacts;
        exactly_one(
            "artifacts",
            &[
                ("local_disk", art.local_disk.is_some()),
                ("s3", art.s3.is_some()),
            ],
        )?;
        let mm = &self.machine_management;
        // No pool at all is allowed: only workers started by hand (docs/workers.md) connect.
        if mm.local_docker.is_some() && mm.aws.is_some() {
            return Err(invalid(
                "machine_management",
                "give at most one of local_docker, aws (found local_docker and aws)".into(),
            ));
        }
        if let Some(github) = &sc.github {
            let valid_owner = github
                .owner
                .split_once(':')
                .is_some_and(|(kind, name)| matches!(kind, "org" | "user") && !name.is_empty());
            if !valid_owner {
                return Err(invalid(
                    "source_control.github",
                    format!(
                        "owner `{}` must be `org:<name>` or `user:<name>`",
                        github.owner
                    ),
                ));
            }
        }
        if mm.heartbeat_timeout_seconds < 4 {
            return Err(invalid(
                "machine_management",
                format!(
                    "heartbeat_timeout_seconds {} must be at least 4",
                    mm.heartbeat_timeout_seconds
                ),
            ));
        }
        if let Some(aws) = &mm.aws {
            if aws.instance_types.is_empty() {
                return Err(invalid(
                    "machine_management.aws",
                    "instance_types must list at least one instance type".into(),
                ));
            }
        }
        if !self.redis.url.starts_with("redis://") && !self.redis.url.starts_with("rediss://") {
            return Err(invalid(
                "redis",
                format!(
                    "url `{}` must start with redis:// or rediss://",
                    redact_userinfo(&self.redis.url)
                ),
            ));
        }
        storage::validate_storage_limits(&self.logs, &self.retention)?;
        let refused = refusals::refusals(self);
        if !refused.is_empty() {
            return Err(ConfigError::Refused(refused));
        }
        Ok(())
    }

    /// The secret that authenticates push webhooks: the one of the active back end (an empty
    /// string counts as none).
    pub fn webhook_secret(&self) -> Option<&str> {
        let sc = &self.source_control;
        let secret = if let Some(local) = &sc.local {
            local.webhook_secret.as_deref()
        } else if let Some(github) = &sc.github {
            github.webhook_secret.as_deref()
        } else if let Some(gitlab) = &sc.gitlab {
            gitlab.webhook_secret.as_deref()
        } else {
            None
        };
        secret.filter(|s| !s.is_empty())
    }
}

/// `url` with any `user:password@` replaced by `***@`, for messages and logs (L14).
pub fn redact_userinfo(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(at) => url.split_at(at + 3),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}***{}", &rest[at..]),
        None => url.to_string(),
    }
}

fn invalid(section: &str, message: String) -> ConfigError {
    ConfigError::Invalid {
        section: section.into(),
        message,
    }
}

fn exactly_one(section: &str, alternatives: &[(&str, bool)]) -> Result<(), ConfigError> {
    let chosen: Vec<&str> = alternatives
        .iter()
        .filter(|(_, present)| *present)
        .map(|(name, _)| *name)
        .collect();
    if chosen.len() == 1 {
        return Ok(());
    }
    let names: Vec<&str> = alternatives.iter().map(|(name, _)| *name).collect();
    Err(invalid(
        section,
        format!(
            "give exactly one of {} (found {})",
            names.join(", "),
            if chosen.is_empty() {
                "none".to_string()
            } else {
                chosen.join(" and ")
            }
        ),
    ))
}

/// Renders a YAML error with its position in the file.
fn describe(err: &serde_norway::Error) -> String {
    let message = err.to_string();
    match err.location() {
        Some(loc) if !message.contains("line") => {
            format!("line {} column {}: {message}", loc.line(), loc.column())
        }
        _ => message,
    }
}

#[cfg(test)]
mod tests;
