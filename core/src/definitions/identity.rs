//! Identity hashes: "are two builds the same?" (docs/definitions.md#identity-hashes).
//!
//! An identity is the SHA-256 (64 lowercase hex digits) of a canonical byte encoding of
//! the fields listed below, in that order. The encoding is prefix-free, so two identities
//! are equal exactly when every listed field is equal:
//! - a string is its UTF-8 length as an unsigned LEB128 varint, then its bytes;
//! - an integer is an unsigned LEB128 varint; an `order` (f64) is its 8 IEEE-754 bytes,
//!   little-endian (every NaN as the one canonical NaN);
//! - a list is its length (varint), then its items; a map is its length, then its
//!   entries sorted by key, each key (string) then value;
//! - an enum is one tag byte, then its fields: kind `0` build, `1` test, `2` deployment;
//!   platform `0` linux, `1` windows; artifact format `0` tar, `1` zip, `2` files; a
//!   dependency `0` source (repo, commit, path) or `1` build (name, identity hash,
//!   artifact); an image `0` Docker (Dockerfile *text*; not the Dockerfile's path) or `1`
//!   AMI (base AMI, setup script text);
//! - a stage is command, cleanup, order and its artifacts, each artifact name,
//!   directory, include patterns, exclude patterns, format.
//!
//! **Environment identity** ([`environment_hash`]): the domain tag
//! `test-looper/environment/2`, then name, mixins, inheritance list, platform, image,
//! variables, dependencies in resolved form, the `test_*` defaults (configuration,
//! timeout, min cores, max cores, min RAM, min disk, max retries, retry wait) and the raw
//! `test_stages`.
//!
//! **Definition identity** ([`definition_hash`] of a [`DefinitionIdentity`]): the domain
//! tag `test-looper/definition/2`, then kind, name, project, configuration, the environment
//! identity (its hex text), resolved variables (no runtime variables), the sorted and
//! substituted stages, dependencies in resolved form, the resources (timeout, min cores,
//! max cores, min RAM, min disk, max retries, retry wait) and exposed ports (a map of name
//! to port), then, only when `docker_socket` is true, the tag byte `1` (so identities of
//! definitions without it are unchanged). A `Source` dependency's commit is the last commit
//! touching its path.
//!
//! Not included: the repo and commit that declare the definition (so a build without
//! source dependencies keeps its identity across commits and repos; a build depending on
//! `HEAD` does not), where a depended-on build is declared (its hash stands for it), and
//! `disabled` (so `prioritize` never changes identities). Dependencies chain the
//! identities: a Merkle hash over the dependency graph.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::model::{
    ArtifactFormat, DefinitionKind, EnvironmentDefaults, Image, Platform, ResolvedDependency, Stage,
};

/// Domain tag of environment identities (first in the encoding).
const ENVIRONMENT_DOMAIN: &str = "test-looper/environment/2";
/// Domain tag of definition identities (first in the encoding).
const DEFINITION_DOMAIN: &str = "test-looper/definition/2";

/// The canonical encoding being built (see the module doc).
struct Encoder {
    bytes: Vec<u8>,
}

impl Encoder {
    fn new(domain: &str) -> Self {
        let mut encoder = Encoder {
            bytes: Vec::with_capacity(1024),
        };
        encoder.str(domain);
        encoder
    }

    fn uint(&mut self, mut value: u64) {
        loop {
            let low = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                self.bytes.push(low);
                return;
            }
            self.bytes.push(low | 0x80);
        }
    }

    fn len(&mut self, len: usize) {
        self.uint(len as u64);
    }

    fn tag(&mut self, tag: u8) {
        self.bytes.push(tag);
    }

    fn str(&mut self, text: &str) {
        self.len(text.len());
        self.bytes.extend_from_slice(text.as_bytes());
    }

    fn float(&mut self, value: f64) {
        let value = if value.is_nan() { f64::NAN } else { value };
        self.bytes.extend_from_slice(&value.to_bits().to_le_bytes());
    }

    fn strings(&mut self, items: &[String]) {
        self.len(items.len());
        for item in items {
            self.str(item);
        }
    }

    /// A `BTreeMap` iterates sorted by key already.
    fn string_map(&mut self, map: &BTreeMap<String, String>) {
        self.len(map.len());
        for (key, value) in map {
            self.str(key);
            self.str(value);
        }
    }

    fn dependencies<'a>(
        &mut self,
        deps: impl Iterator<Item = (&'a String, &'a ResolvedDependency)>,
    ) {
        let mut sorted: Vec<(&str, &ResolvedDependency)> =
            deps.map(|(key, dep)| (key.as_str(), dep)).collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
        self.len(sorted.len());
        for (key, dep) in sorted {
            self.str(key);
            match dep {
                ResolvedDependency::Source { repo, commit, path } => {
                    self.tag(0);
                    self.str(repo);
                    self.str(commit);
                    self.str(path);
                }
                ResolvedDependency::Build {
                    name,
                    hash,
                    artifact,
                    ..
                } => {
                    self.tag(1);
                    self.str(name);
                    self.str(hash);
                    self.str(artifact);
                }
            }
        }
    }

    fn stages(&mut self, stages: &[Stage]) {
        self.len(stages.len());
        for stage in stages {
            self.str(&stage.command);
            self.str(&stage.cleanup);
            self.float(stage.order);
            self.len(stage.artifacts.len());
            for artifact in &stage.artifacts {
                self.str(&artifact.name);
                self.str(&artifact.directory);
                self.strings(&artifact.include_patterns);
                self.strings(&artifact.exclude_patterns);
                self.tag(match artifact.format {
                    ArtifactFormat::Tar => 0,
                    ArtifactFormat::Zip => 1,
                    ArtifactFormat::Files => 2,
                });
            }
        }
    }

    /// SHA-256 of the encoding, as 64 lowercase hex digits.
    fn finish(self) -> String {
        let digest = Sha256::digest(&self.bytes);
        let mut hex = [0u8; 64];
        // 32 bytes always fit 64 hex digits.
        let _ = hex::encode_to_slice(digest, &mut hex);
        String::from_utf8_lossy(&hex).into_owned()
    }
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
    let mut encoder = Encoder::new(ENVIRONMENT_DOMAIN);
    encoder.str(name);
    encoder.strings(mixins);
    encoder.strings(inheritance);
    encoder.tag(match platform {
        Platform::Linux => 0,
        Platform::Windows => 1,
    });
    match image {
        Image::Docker {
            dockerfile_contents,
            ..
        } => {
            encoder.tag(0);
            encoder.str(dockerfile_contents);
        }
        Image::Ami {
            base_ami,
            setup_script_contents,
        } => {
            encoder.tag(1);
            encoder.str(base_ami);
            encoder.str(setup_script_contents);
        }
    }
    encoder.string_map(variables);
    encoder.dependencies(deps);
    encoder.str(&defaults.configuration);
    for value in [
        defaults.timeout,
        defaults.min_cores,
        defaults.max_cores,
        defaults.min_ram_gb,
        defaults.min_disk_gb,
        defaults.max_retries,
        defaults.retry_wait_seconds,
    ] {
        encoder.uint(value);
    }
    encoder.stages(test_stages);
    encoder.finish()
}

/// What goes into a definition's identity.
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
    /// Whether the job's containers get the scoped Docker socket.
    pub docker_socket: bool,
}

/// Identity of a definition.
pub fn definition_hash(input: &DefinitionIdentity<'_>) -> String {
    let mut encoder = Encoder::new(DEFINITION_DOMAIN);
    encoder.tag(match input.kind {
        DefinitionKind::Build => 0,
        DefinitionKind::Test => 1,
        DefinitionKind::Deployment => 2,
    });
    encoder.str(input.name);
    encoder.str(input.project);
    encoder.str(input.configuration);
    encoder.str(input.environment_hash);
    encoder.string_map(input.variables);
    encoder.stages(input.stages);
    encoder.dependencies(input.dependencies.iter());
    for value in [
        input.timeout,
        input.min_cores,
        input.max_cores,
        input.min_ram_gb,
        input.min_disk_gb,
        input.max_retries,
        input.retry_wait_seconds,
    ] {
        encoder.uint(value);
    }
    let mut ports: Vec<(&str, u64)> = input
        .port_expose
        .iter()
        .map(|(name, port)| (name.as_str(), *port))
        .collect();
    ports.sort_unstable();
    encoder.len(ports.len());
    for (name, port) in ports {
        encoder.str(name);
        encoder.uint(port);
    }
    // Last and only when set: a trailing byte cannot be confused with any other field.
    if input.docker_socket {
        encoder.tag(1);
    }
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity<'a>(
        variables: &'a BTreeMap<String, String>,
        stages: &'a [Stage],
        deps: &'a indexmap::IndexMap<String, ResolvedDependency>,
        ports: &'a indexmap::IndexMap<String, u64>,
    ) -> DefinitionIdentity<'a> {
        DefinitionIdentity {
            kind: DefinitionKind::Build,
            name: "b/linux",
            project: "b",
            configuration: "linux",
            environment_hash: "e",
            variables,
            stages,
            dependencies: deps,
            timeout: 0,
            min_cores: 0,
            max_cores: 0,
            min_ram_gb: 0,
            min_disk_gb: 0,
            max_retries: 0,
            retry_wait_seconds: 0,
            port_expose: ports,
            docker_socket: false,
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn hashes_are_hex_and_deterministic_and_the_encoding_is_prefix_free() {
        let (stages, deps, ports) = (Vec::new(), Default::default(), Default::default());
        let a = vars(&[("a", "bc")]);
        let b = vars(&[("ab", "c")]);
        let first = definition_hash(&identity(&a, &stages, &deps, &ports));
        assert_eq!(first.len(), 64);
        assert!(first
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(
            first,
            definition_hash(&identity(&a, &stages, &deps, &ports))
        );
        assert_ne!(
            first,
            definition_hash(&identity(&b, &stages, &deps, &ports))
        );
    }

    #[test]
    fn dependency_and_port_order_do_not_matter_but_values_do() {
        let (variables, stages) = (BTreeMap::new(), Vec::new());
        let src = |commit: &str| ResolvedDependency::Source {
            repo: "r".into(),
            commit: commit.into(),
            path: String::new(),
        };
        let forward: indexmap::IndexMap<String, ResolvedDependency> =
            [("x".to_string(), src("1")), ("y".to_string(), src("2"))].into();
        let backward: indexmap::IndexMap<String, ResolvedDependency> =
            [("y".to_string(), src("2")), ("x".to_string(), src("1"))].into();
        let other: indexmap::IndexMap<String, ResolvedDependency> =
            [("x".to_string(), src("2")), ("y".to_string(), src("1"))].into();
        let ports = Default::default();
        let hash = |deps| definition_hash(&identity(&variables, &stages, deps, &ports));
        assert_eq!(hash(&forward), hash(&backward));
        assert_ne!(hash(&forward), hash(&other));
    }

    #[test]
    fn the_docker_socket_opt_in_changes_the_identity_only_when_set() {
        let (variables, stages, deps, ports) = (
            BTreeMap::new(),
            Vec::new(),
            Default::default(),
            Default::default(),
        );
        let without = identity(&variables, &stages, &deps, &ports);
        let with = DefinitionIdentity {
            docker_socket: true,
            ..identity(&variables, &stages, &deps, &ports)
        };
        assert_ne!(definition_hash(&without), definition_hash(&with));
        // Definitions without the key keep the identity they had before it existed.
        let mut encoder = Encoder::new(DEFINITION_DOMAIN);
        encoder.tag(0);
        for text in ["b/linux", "b", "linux", "e"] {
            encoder.str(text);
        }
        encoder.string_map(&variables);
        encoder.stages(&stages);
        encoder.dependencies(deps.iter());
        for _ in 0..7 {
            encoder.uint(0);
        }
        encoder.len(0);
        assert_eq!(definition_hash(&without), encoder.finish());
    }
}
