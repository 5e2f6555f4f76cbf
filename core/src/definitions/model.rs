//! The resolved model of one commit's test definitions: what the scheduler, the workers
//! and the UI consume. Everything here is plain data (`Serialize + Deserialize + Clone + Debug`).
//!
//! A [`ResolvedCommit`] holds the commit's repo pins, its named environments and every
//! build, test and deployment ([`ResolvedDefinition`]) with its environment, dependencies,
//! variables, stages and resource needs fully resolved. The JSON shape produced by serde
//! for these types is the stable shape printed by `tl info --json`.

use std::collections::BTreeMap;
use std::sync::Arc;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::source::CommitRef;

/// The outcome of resolving one commit's definitions successfully.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ResolvedCommit {
    /// The commit that was resolved.
    pub commit: CommitRef,
    /// Path of the root definitions file inside the commit; `None` means the commit has
    /// no definitions file (and therefore no tests).
    pub definitions_path: Option<String>,
    /// True when a repo reference is the `HEAD` placeholder (docs/definitions.md#repos):
    /// the commit then has no environments and no definitions, only its repo pins.
    pub head_placeholder: bool,
    /// Repo references by local name, in declaration order (root file first, then includes).
    pub repos: IndexMap<String, RepoReference>,
    /// The commit's named environments, fully merged and substituted. Synthetic
    /// `env+mixin` environments are not listed here; each definition carries its own.
    pub environments: IndexMap<String, Arc<ResolvedEnvironment>>,
    /// The commit's named environments whose inheritance chain has no root environment
    /// (mixins), merged and substituted (docs/definitions.md#inheritance). Other commits
    /// can use them as `base: repo/name`; no definition can run in one. Omitted from JSON
    /// when empty.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub derived_environments: IndexMap<String, Arc<DerivedEnvironment>>,
    /// Every build, test and deployment, in declaration order (builds, tests, deployments).
    pub definitions: IndexMap<String, ResolvedDefinition>,
    /// The root file's `prioritize` globs (not macro-expanded).
    pub prioritize: Vec<String>,
}

/// A reference from a commit to another repo's commit.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RepoReference {
    /// A fixed pin: `name: "git/repo/<hash>"` or `{reference: ...}`.
    Fixed { reference: CommitRef },
    /// A floating pin that follows `branch` of the referenced repo
    /// (docs/definitions.md#branch-pins).
    Pin {
        reference: CommitRef,
        branch: String,
        auto: bool,
        prioritize: bool,
    },
    /// `{import: "a/b/c"}`: a reference borrowed from another commit's repo map.
    Import {
        reference: CommitRef,
        /// The import path as written (`a/b/c`).
        import_source: String,
        /// Where the final entry came from: `""` for a fixed pin,
        /// `"<pinned repo>/<branch>"` for a floating pin (the original named the repo
        /// holding the pin), or the carried-over value for an import.
        orig_reference: String,
    },
}

impl RepoReference {
    /// The commit this reference points to.
    pub fn reference(&self) -> &CommitRef {
        match self {
            RepoReference::Fixed { reference }
            | RepoReference::Pin { reference, .. }
            | RepoReference::Import { reference, .. } => reference,
        }
    }
}

/// Operating-system class of an environment.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Linux,
    Windows,
}

/// The machine image of an environment.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Image {
    /// A Docker image built from Dockerfile text. `dockerfile` is the repo path the text was
    /// read from (`image: {dockerfile: PATH}`), or `None` for `dockerfile_contents`; the
    /// text already has the derived environments' `setup_script_contents` appended.
    Docker {
        dockerfile_contents: String,
        dockerfile: Option<String>,
    },
    /// A VM image plus a setup script (PowerShell on Windows), already substituted.
    Ami {
        base_ami: String,
        setup_script_contents: String,
    },
}

/// `test_*` defaults an environment gives to the definitions that use it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct EnvironmentDefaults {
    pub configuration: String,
    pub timeout: u64,
    pub min_cores: u64,
    pub max_cores: u64,
    pub min_ram_gb: u64,
    pub min_disk_gb: u64,
    pub max_retries: u64,
    pub retry_wait_seconds: u64,
}

/// A fully merged, substituted environment.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ResolvedEnvironment {
    /// The environment's name (for a test with mixins, the base environment's name).
    pub name: String,
    /// Mixins applied by the test (`environment: E, mixins: [..]`), empty otherwise.
    pub mixins: Vec<String>,
    /// The linearised bases, highest priority first, excluding the environment itself.
    pub inheritance: Vec<String>,
    pub platform: Platform,
    pub image: Image,
    /// Environment variables after merging and environment-level substitution.
    pub variables: BTreeMap<String, String>,
    /// Environment dependencies by input name (the on-disk location `${TEST_INPUTS}/name`).
    pub dependencies: IndexMap<String, ResolvedDependency>,
    pub defaults: EnvironmentDefaults,
    /// Stages prepended to every definition using this environment (merged base-first).
    pub test_stages: Vec<Stage>,
    /// Identity hash of the environment (see [`crate::definitions::identity`]).
    pub hash: String,
}

/// A merged environment without a root (no platform, no image): a mixin, as other commits
/// see it when they name it in `base: repo/name`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DerivedEnvironment {
    pub name: String,
    /// The linearised bases, highest priority first, excluding the environment itself.
    pub inheritance: Vec<String>,
    /// Variables after merging and environment-level substitution.
    pub variables: BTreeMap<String, String>,
    /// Environment dependencies by input name, resolved.
    pub dependencies: IndexMap<String, ResolvedDependency>,
    pub defaults: EnvironmentDefaults,
    /// Stages for every definition using an environment derived from this one.
    pub test_stages: Vec<Stage>,
    /// The chain's non-empty `setup_script_contents`, base-most first, joined with `\n`
    /// (appended to the image of whichever root environment this one is combined with).
    pub setup_script_contents: String,
}

/// Build, test or deployment.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum DefinitionKind {
    Build,
    Test,
    Deployment,
}

impl DefinitionKind {
    /// The section name in the definitions file (`builds`, `tests`, `deployments`).
    pub fn section(self) -> &'static str {
        match self {
            DefinitionKind::Build => "builds",
            DefinitionKind::Test => "tests",
            DefinitionKind::Deployment => "deployments",
        }
    }
}

/// A resolved dependency: what is placed at `${TEST_INPUTS}/<key>`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ResolvedDependency {
    /// A source checkout. With a non-empty `path`, `commit` is the last commit at or
    /// before the referenced commit that touched `path`.
    Source {
        repo: String,
        commit: String,
        path: String,
    },
    /// An artifact of a build (`artifact == ""` is the unnamed artifact).
    Build {
        /// The commit whose definitions declare the build (informational: not part of
        /// any identity hash; identical builds in other commits share `hash`).
        defined_in: CommitRef,
        name: String,
        hash: String,
        artifact: String,
    },
}

/// Archive format of an artifact.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub enum ArtifactFormat {
    #[default]
    Tar,
    Zip,
    Files,
}

/// A named output of a stage.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Artifact {
    pub name: String,
    /// After substitution. Absolute: used as is; relative (including `""`): relative to the
    /// default output directory (build output for builds, test output for tests).
    pub directory: String,
    pub include_patterns: Vec<String>,
    pub exclude_patterns: Vec<String>,
    pub format: ArtifactFormat,
}

/// One shell step of a definition.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Stage {
    pub command: String,
    pub cleanup: String,
    pub order: f64,
    pub artifacts: Vec<Artifact>,
}

/// A fully resolved build, test or deployment.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ResolvedDefinition {
    pub name: String,
    pub kind: DefinitionKind,
    /// Identity hash: 64 lowercase hex digits (SHA-256), see [`crate::definitions::identity`].
    pub hash: String,
    pub project: String,
    pub configuration: String,
    /// The resolved environment (for a test with mixins, the synthetic `E+M1+..` merge).
    pub environment: Arc<ResolvedEnvironment>,
    /// The definition's own dependencies by input name. At run time the environment's
    /// dependencies are added; on a clash the definition's value wins
    /// (see [`ResolvedDefinition::all_dependencies`]).
    pub dependencies: IndexMap<String, ResolvedDependency>,
    /// Environment variables overlaid with the definition's, resolved (no runtime variables).
    pub variables: BTreeMap<String, String>,
    /// Environment stages then the definition's own, stably sorted by `order`, substituted.
    /// A deployment's optional `command` is its only own stage (run before the shell opens).
    pub stages: Vec<Stage>,
    /// Seconds per command; 0 means the worker's default (3600 s).
    pub timeout: u64,
    pub min_cores: u64,
    pub max_cores: u64,
    pub min_ram_gb: u64,
    pub min_disk_gb: u64,
    /// Builds only: the maximum number of *attempts* (0 and 1 both mean one attempt).
    pub max_retries: u64,
    /// Builds only: seconds to wait between attempts.
    pub retry_wait_seconds: u64,
    /// Disabled by the file or by `prioritize` (and not re-enabled by an enabled consumer).
    pub disabled: bool,
    /// Deployments only: ports to publish, by name.
    pub port_expose: IndexMap<String, u64>,
    /// `docker_socket: true`: the job's containers get the scoped Docker socket (H5);
    /// without it they get no Docker API at all.
    #[serde(default)]
    pub docker_socket: bool,
}

impl ResolvedDefinition {
    /// Environment dependencies overlaid with the definition's own (the definition wins).
    pub fn all_dependencies(&self) -> IndexMap<String, ResolvedDependency> {
        let mut all = self.environment.dependencies.clone();
        for (key, dep) in &self.dependencies {
            all.insert(key.clone(), dep.clone());
        }
        all
    }

    /// Names of every artifact the stages produce, in upload order.
    pub fn artifact_names(&self) -> Vec<&str> {
        self.stages
            .iter()
            .flat_map(|stage| stage.artifacts.iter().map(|a| a.name.as_str()))
            .collect()
    }
}
