//! Identity hashes: "are two builds the same?" (§13).
//!
//! An identity is the SHA-256 (64 lowercase hex digits) of the compact `serde_json`
//! encoding of one of the structs below, fields in declaration order, maps sorted by key.
//!
//! **Environment identity** ([`EnvironmentIdentity`]): name, mixins, inheritance list,
//! platform, image (Dockerfile *text* or AMI + setup script text; not the Dockerfile's
//! path), variables, dependencies in resolved form, the `test_*` defaults and the raw
//! `test_stages`.
//!
//! **Definition identity** ([`DefinitionIdentity`]): kind, name, project, configuration,
//! the environment identity, resolved variables (no runtime variables), sorted and
//! substituted stages (command, cleanup, order, artifacts with name, directory, patterns,
//! format), timeout, min/max cores, min RAM and disk, max retries and retry wait, exposed
//! ports, and dependencies in resolved form: `Source` as (repo, commit, path) where commit
//! is the last commit touching the path, `Build` as (name, identity hash, artifact).
//!
//! Not included: the repo and commit that declare the definition (so a build without
//! source dependencies keeps its identity across commits and repos; a build depending on
//! `HEAD` does not), where a depended-on build is declared (its hash stands for it), and
//! `disabled` (so `prioritize` never changes identities, §15.18). Dependencies chain the
//! identities: a Merkle hash over the dependency graph.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::model::{
    ArtifactFormat, DefinitionKind, EnvironmentDefaults, Image, Platform, ResolvedDependency, Stage,
};

/// A dependency as it enters identities.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum DependencyIdentity<'a> {
    Source {
        repo: &'a str,
        commit: &'a str,
        path: &'a str,
    },
    Build {
        name: &'a str,
        hash: &'a str,
        artifact: &'a str,
    },
}

fn dependencies<'a>(
    deps: impl Iterator<Item = (&'a String, &'a ResolvedDependency)>,
) -> BTreeMap<&'a str, DependencyIdentity<'a>> {
    deps.map(|(key, dep)| {
        let identity = match dep {
            ResolvedDependency::Source { repo, commit, path } => {
                DependencyIdentity::Source { repo, commit, path }
            }
            ResolvedDependency::Build {
                name,
                hash,
                artifact,
                ..
            } => DependencyIdentity::Build {
                name,
                hash,
                artifact,
            },
        };
        (key.as_str(), identity)
    })
    .collect()
}

#[derive(Serialize)]
struct ImageIdentity<'a> {
    dockerfile_contents: Option<&'a str>,
    base_ami: Option<&'a str>,
    setup_script_contents: Option<&'a str>,
}

/// What goes into an environment's identity.
#[derive(Serialize)]
pub struct EnvironmentIdentity<'a> {
    name: &'a str,
    mixins: &'a [String],
    inheritance: &'a [String],
    platform: Platform,
    image: ImageIdentity<'a>,
    variables: &'a BTreeMap<String, String>,
    dependencies: BTreeMap<&'a str, DependencyIdentity<'a>>,
    defaults: &'a EnvironmentDefaults,
    test_stages: &'a [Stage],
}

/// Identity of an environment.
#[allow(clippy::too_many_arguments)]
pub fn environment_hash<'a>(
    name: &'a str,
    mixins: &'a [String],
    inheritance: &'a [String],
    platform: Platform,
    image: &'a Image,
    variables: &'a BTreeMap<String, String>,
    deps: impl Iterator<Item = (&'a String, &'a ResolvedDependency)>,
    defaults: &'a EnvironmentDefaults,
    test_stages: &'a [Stage],
) -> String {
    let image = match image {
        Image::Docker {
            dockerfile_contents,
            ..
        } => ImageIdentity {
            dockerfile_contents: Some(dockerfile_contents),
            base_ami: None,
            setup_script_contents: None,
        },
        Image::Ami {
            base_ami,
            setup_script_contents,
        } => ImageIdentity {
            dockerfile_contents: None,
            base_ami: Some(base_ami),
            setup_script_contents: Some(setup_script_contents),
        },
    };
    digest(&EnvironmentIdentity {
        name,
        mixins,
        inheritance,
        platform,
        image,
        variables,
        dependencies: dependencies(deps),
        defaults,
        test_stages,
    })
}

#[derive(Serialize)]
struct ArtifactIdentity<'a> {
    name: &'a str,
    directory: &'a str,
    include_patterns: &'a [String],
    exclude_patterns: &'a [String],
    format: ArtifactFormat,
}

#[derive(Serialize)]
struct StageIdentity<'a> {
    command: &'a str,
    cleanup: &'a str,
    order: f64,
    artifacts: Vec<ArtifactIdentity<'a>>,
}

/// What goes into a definition's identity.
#[derive(Serialize)]
pub struct DefinitionIdentity<'a> {
    pub kind: DefinitionKind,
    pub name: &'a str,
    pub project: &'a str,
    pub configuration: &'a str,
    pub environment_hash: &'a str,
    pub variables: &'a BTreeMap<String, String>,
    pub stages: &'a [Stage],
    pub dependencies: &'a indexmap::IndexMap<String, ResolvedDependency>,
    pub timeout: u64,
    pub min_cores: u64,
    pub max_cores: u64,
    pub min_ram_gb: u64,
    pub min_disk_gb: u64,
    pub max_retries: u64,
    pub retry_wait_seconds: u64,
    pub port_expose: &'a indexmap::IndexMap<String, u64>,
}

#[derive(Serialize)]
struct DefinitionEncoding<'a> {
    kind: DefinitionKind,
    name: &'a str,
    project: &'a str,
    configuration: &'a str,
    environment: &'a str,
    variables: &'a BTreeMap<String, String>,
    stages: Vec<StageIdentity<'a>>,
    dependencies: BTreeMap<&'a str, DependencyIdentity<'a>>,
    resources: [u64; 7],
    port_expose: BTreeMap<&'a str, u64>,
}

/// Identity of a definition.
pub fn definition_hash(input: &DefinitionIdentity<'_>) -> String {
    let stages = input
        .stages
        .iter()
        .map(|s| StageIdentity {
            command: &s.command,
            cleanup: &s.cleanup,
            order: s.order,
            artifacts: s
                .artifacts
                .iter()
                .map(|a| ArtifactIdentity {
                    name: &a.name,
                    directory: &a.directory,
                    include_patterns: &a.include_patterns,
                    exclude_patterns: &a.exclude_patterns,
                    format: a.format,
                })
                .collect(),
        })
        .collect();
    digest(&DefinitionEncoding {
        kind: input.kind,
        name: input.name,
        project: input.project,
        configuration: input.configuration,
        environment: input.environment_hash,
        variables: input.variables,
        stages,
        dependencies: dependencies(input.dependencies.iter()),
        resources: [
            input.timeout,
            input.min_cores,
            input.max_cores,
            input.min_ram_gb,
            input.min_disk_gb,
            input.max_retries,
            input.retry_wait_seconds,
        ],
        port_expose: input
            .port_expose
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect(),
    })
}

fn digest<T: Serialize>(value: &T) -> String {
    // Encode into one buffer, then hash it in one call (cheaper than streaming the
    // encoder's many small writes into the hasher). Serialising plain structs of strings
    // and numbers can't fail.
    let mut encoded = Vec::with_capacity(1024);
    let _ = serde_json::to_writer(&mut encoded, value);
    hex::encode(Sha256::digest(&encoded))
}
