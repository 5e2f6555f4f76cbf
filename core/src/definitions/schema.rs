//! Schema decoding (docs/definitions.md#yaml-typing and the key tables there): the expanded
//! tree of one file into typed, unresolved records, with strict keys (unknown keys are
//! errors) and the original's coercions: a bare scalar where a list is expected is a
//! one-element list, nested lists flatten, a map section may be a list of maps (a duplicate
//! key across them is an error), bools in string fields become `true`/`false`, int fields
//! take only ints, `order` takes ints or floats.
//!
//! An environment with `platform` or `image` is a root environment; any other environment
//! is a derived (mixin) one, `base` defaulting to `[]`.

use indexmap::IndexMap;

use super::error::{invalid_at, DefinitionsError};
use super::model::{Artifact, ArtifactFormat, DefinitionKind, Platform, RepoReference, Stage};
use super::node::{python_float, FastIndexMap, Map, Mark, Node, Value};
use super::path::DocPath;
use super::source::CommitRef;

type Result<T> = std::result::Result<T, DefinitionsError>;

/// Where a record was declared (for errors), relative to its file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Origin {
    pub document_path: String,
    pub mark: Mark,
}

/// A repo definition as written.
#[derive(Clone, Debug, PartialEq)]
pub enum RawRepo {
    Reference {
        repo: String,
        commit: String,
    },
    Pin {
        repo: String,
        commit: String,
        branch: String,
        auto: bool,
        prioritize: bool,
    },
    Import {
        path: String,
    },
}

impl RawRepo {
    /// The reference a fixed or pinned repo declares, or for an import its path (`Err`),
    /// which needs the other repos of its commit to resolve.
    pub fn direct_reference(&self) -> std::result::Result<RepoReference, &str> {
        match self {
            RawRepo::Reference { repo, commit } => Ok(RepoReference::Fixed {
                reference: CommitRef::new(repo, commit),
            }),
            RawRepo::Pin {
                repo,
                commit,
                branch,
                auto,
                prioritize,
            } => Ok(RepoReference::Pin {
                reference: CommitRef::new(repo, commit),
                branch: branch.clone(),
                auto: *auto,
                prioritize: *prioritize,
            }),
            RawRepo::Import { path } => Err(path),
        }
    }
}

/// An include record after expansion.
#[derive(Clone, Debug, PartialEq)]
pub struct RawInclude {
    pub path: String,
    pub variables: Map,
    pub origin: Origin,
}

/// An environment image as written.
#[derive(Clone, Debug, PartialEq)]
pub enum RawImage {
    DockerfileContents(String),
    Dockerfile(String),
    Ami {
        base_ami: String,
        setup_script_contents: String,
    },
}

/// `test_*` defaults as written (0 / "" mean unset).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawDefaults {
    pub configuration: String,
    pub timeout: u64,
    pub min_cores: u64,
    pub max_cores: u64,
    pub min_ram_gb: u64,
    pub min_disk_gb: u64,
    pub max_retries: u64,
    pub retry_wait_seconds: u64,
}

/// An environment as written.
#[derive(Clone, Debug, PartialEq)]
pub struct RawEnvironment {
    pub name: String,
    /// `Some((platform, image))` for a root environment.
    pub root: Option<(Platform, RawImage)>,
    pub bases: Vec<String>,
    pub setup_script_contents: String,
    pub variables: FastIndexMap<String, String>,
    pub dependencies: FastIndexMap<String, String>,
    pub defaults: RawDefaults,
    pub test_stages: Vec<Stage>,
    pub origin: Origin,
}

/// A build, test or deployment as written.
#[derive(Clone, Debug, PartialEq)]
pub struct RawDefinition {
    pub name: String,
    pub kind: DefinitionKind,
    pub command: String,
    pub cleanup: String,
    pub stages: Vec<Stage>,
    pub environment: String,
    pub mixins: Vec<String>,
    pub configuration: String,
    pub project: String,
    pub dependencies: FastIndexMap<String, String>,
    pub variables: FastIndexMap<String, String>,
    pub disabled: bool,
    pub timeout: u64,
    pub min_cores: u64,
    pub max_cores: u64,
    pub min_ram_gb: u64,
    pub min_disk_gb: u64,
    pub max_retries: u64,
    pub retry_wait_seconds: u64,
    pub port_expose: IndexMap<String, u64>,
    /// `docker_socket: true`: the job's containers get the scoped Docker socket (H5).
    pub docker_socket: bool,
    pub origin: Origin,
}

/// One decoded file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawFile {
    pub repos: FastIndexMap<String, (RawRepo, Origin)>,
    pub includes: Vec<RawInclude>,
    pub environments: FastIndexMap<String, RawEnvironment>,
    pub definitions: FastIndexMap<String, RawDefinition>,
    pub prioritize: Vec<String>,
}

const TOP_LEVEL: &[&str] = &[
    "looper_version",
    "repos",
    "includes",
    "environments",
    "builds",
    "tests",
    "deployments",
    "prioritize",
];
const SHARED_ENV: &[&str] = &[
    "variables",
    "dependencies",
    "test_configuration",
    "test_stages",
    "test_timeout",
    "test_min_cores",
    "test_max_cores",
    "test_min_ram_gb",
    "test_min_disk_gb",
    "test_max_retries",
    "test_retry_wait_seconds",
];
const DEFINITION_COMMON: &[&str] = &[
    "environment",
    "mixins",
    "configuration",
    "project",
    "dependencies",
    "variables",
    "timeout",
    "min_cores",
    "max_cores",
    "min_ram_gb",
    "min_disk_gb",
    "docker_socket",
];
/// Keys only a root environment (one with `platform` or `image`) takes.
const ROOT_ENV_ONLY: &[&str] = &["platform", "image"];
/// Keys only a derived (mixin) environment takes.
const DERIVED_ENV_ONLY: &[&str] = &["base", "setup_script_contents"];
/// The keys of the image forms: `{dockerfile_contents}`, `{dockerfile}` or
/// `{base_ami[, setup_script_contents]}` (what `decode_image` matches).
const IMAGE_KEYS: &[&str] = &[
    "dockerfile_contents",
    "dockerfile",
    "base_ami",
    "setup_script_contents",
];
/// A repo given as a map: a reference, optionally a pin.
const REPO_REFERENCE_KEYS: &[&str] = &["reference", "branch", "auto", "prioritize"];
/// A repo given as an import (alone).
const REPO_IMPORT_KEYS: &[&str] = &["import"];
/// An include record after expansion.
const INCLUDE_KEYS: &[&str] = &["path", "variables"];
const RUNNABLE: &[&str] = &["command", "cleanup", "stages", "disabled"];
const BUILD_ONLY: &[&str] = &["max_retries", "retry_wait_seconds"];
const DEPLOYMENT_ONLY: &[&str] = &["portExpose", "command"];
const STAGE_KEYS: &[&str] = &["command", "cleanup", "order", "artifacts"];
const ARTIFACT_KEYS: &[&str] = &[
    "name",
    "directory",
    "include_patterns",
    "exclude_patterns",
    "format",
];
/// Repo names that can't be used (docs/definitions.md#repos).
pub const RESERVED_REPO_NAMES: &[&str] = &["data", "source", "HEAD"];

/// Every key the schema accepts, by the kind of map that takes it, in the order of
/// `docs/definitions.md`: what a user may write. `core/tests/docs.rs` checks that the
/// reference documents exactly these. The macro directives' keys are
/// [`super::macros::DIRECTIVES`].
pub fn accepted_keys() -> Vec<(&'static str, Vec<&'static str>)> {
    let definition = |kind: DefinitionKind| -> Vec<&'static str> {
        let (runnable, specific): (&[&str], &[&str]) = match kind {
            DefinitionKind::Build => (RUNNABLE, BUILD_ONLY),
            DefinitionKind::Test => (RUNNABLE, &[]),
            DefinitionKind::Deployment => (&[], DEPLOYMENT_ONLY),
        };
        let mut keys: Vec<&str> = [DEFINITION_COMMON, runnable, specific].concat();
        let mut seen = std::collections::HashSet::new();
        keys.retain(|k| seen.insert(*k));
        keys
    };
    vec![
        ("top level", TOP_LEVEL.to_vec()),
        ("repo reference", REPO_REFERENCE_KEYS.to_vec()),
        ("repo import", REPO_IMPORT_KEYS.to_vec()),
        ("include", INCLUDE_KEYS.to_vec()),
        ("environment", SHARED_ENV.to_vec()),
        ("root environment", ROOT_ENV_ONLY.to_vec()),
        ("derived environment", DERIVED_ENV_ONLY.to_vec()),
        ("image", IMAGE_KEYS.to_vec()),
        ("build", definition(DefinitionKind::Build)),
        ("test", definition(DefinitionKind::Test)),
        ("deployment", definition(DefinitionKind::Deployment)),
        ("stage", STAGE_KEYS.to_vec()),
        ("artifact", ARTIFACT_KEYS.to_vec()),
    ]
}

/// Check `looper_version` on the expanded root map.
pub fn check_version(root: &Map, root_mark: Mark) -> Result<()> {
    let path = DocPath::Root;
    match root.get("looper_version") {
        None => Err(invalid_at(
            "No looper version specified. Valid versions for this build are [4]",
            &path,
            root_mark,
        )),
        Some(node) => match node.value {
            Value::Int(4) => Ok(()),
            Value::Float(4.0) => Ok(()),
            Value::Int(3) => Err(invalid_at(
                "Can't handle looper version 3. Valid versions are [4] (version 3 is no longer supported: move test_preCommand into test_stages)",
                &path.key("looper_version"),
                node.mark,
            )),
            _ => Err(invalid_at(
                format!("Can't handle looper version {}. Valid versions are [4]", node.to_json()),
                &path.key("looper_version"),
                node.mark,
            )),
        },
    }
}

/// Decode an expanded root map (top-level keys already expanded, see
/// docs/definitions.md#macros). The definition sections are consumed: their strings move
/// into the decoded definitions.
pub fn decode_file(root: &mut Map, root_mark: Mark) -> Result<RawFile> {
    let path = DocPath::Root;
    check_keys(root, TOP_LEVEL, "the top level", &path, root_mark)?;
    let mut file = RawFile::default();
    let definition_count: usize = ["builds", "tests", "deployments"]
        .iter()
        .filter_map(|section| match root.get(*section).map(|n| &n.value) {
            Some(Value::Map(map)) => Some(map.len()),
            _ => None,
        })
        .sum();
    file.definitions.reserve(definition_count);
    if let Some(repos) = root.get("repos") {
        let p = path.key("repos");
        for (name, node) in section_entries(repos, &p)? {
            let ep = p.key(name);
            let repo = decode_repo(name, node, &ep)?;
            let declared_at = Origin {
                document_path: ep.render(),
                mark: node.mark,
            };
            file.repos.insert(name.to_owned(), (repo, declared_at));
        }
    }
    if let Some(includes) = root.get("includes") {
        let p = path.key("includes");
        for (i, node) in flatten_ref(includes).into_iter().enumerate() {
            if matches!(node.value, Value::Null) {
                continue;
            }
            file.includes.push(decode_include(node, &p.index(i))?);
        }
    }
    if let Some(envs) = root.get("environments") {
        let p = path.key("environments");
        for (name, node) in section_entries(envs, &p)? {
            let ep = p.key(name);
            let env = decode_environment(name, node, &ep)?;
            file.environments.insert(name.to_owned(), env);
        }
    }
    for kind in [
        DefinitionKind::Build,
        DefinitionKind::Test,
        DefinitionKind::Deployment,
    ] {
        let Some(section) = root.get_mut(kind.section()) else {
            continue;
        };
        let p = path.key(kind.section());
        match std::mem::replace(&mut section.value, Value::Null) {
            // The usual form, decoded by value.
            Value::Map(entries) => {
                for (name, node) in entries {
                    add_definition(&mut file, kind, name, node, &p)?;
                }
            }
            other => {
                let section = Node::new(other, section.mark);
                for (name, node) in section_entries(&section, &p)? {
                    add_definition(&mut file, kind, name.to_owned(), node.clone(), &p)?;
                }
            }
        }
    }
    if let Some(prioritize) = root.get("prioritize") {
        file.prioritize = string_list(prioritize, &path.key("prioritize"))?;
    }
    Ok(file)
}

/// Decode definition `name` of section `section_path` into `file`.
fn add_definition(
    file: &mut RawFile,
    kind: DefinitionKind,
    name: String,
    mut node: Node,
    section_path: &DocPath,
) -> Result<()> {
    let ep = section_path.key(&name);
    if let Some(previous) = file.definitions.get(&name) {
        return Err(invalid_at(
            format!(
                "the name {name:?} is defined twice: as a {} and as a {}",
                singular(previous.kind),
                singular(kind)
            ),
            &ep,
            node.mark,
        ));
    }
    let definition = decode_definition(&name, kind, &mut node, &ep)?;
    file.definitions.insert(name, definition);
    Ok(())
}

fn singular(kind: DefinitionKind) -> &'static str {
    match kind {
        DefinitionKind::Build => "build",
        DefinitionKind::Test => "test",
        DefinitionKind::Deployment => "deployment",
    }
}

/// The entries of a map section, which may also be a list of maps; null is empty.
/// Borrows from `node`: sections can hold thousands of entries.
fn section_entries<'a>(node: &'a Node, path: &DocPath) -> Result<Vec<(&'a str, &'a Node)>> {
    let parts: Vec<&Node> = match &node.value {
        Value::Null => return Ok(Vec::new()),
        Value::Map(map) => return Ok(map.iter().map(|(k, v)| (k.as_str(), v)).collect()),
        Value::List(_) => flatten_ref(node),
        _ => {
            return Err(invalid_at(
                format!("expected a map, found a {}", node.type_name()),
                path,
                node.mark,
            ))
        }
    };
    let mut out: FastIndexMap<&str, &Node> = FastIndexMap::default();
    for part in parts {
        match &part.value {
            Value::Map(map) => {
                for (key, value) in map {
                    if out.contains_key(key.as_str()) {
                        return Err(invalid_at(
                            format!("{key} is defined twice in this section"),
                            &path.key(key),
                            value.mark,
                        ));
                    }
                    out.insert(key, value);
                }
            }
            Value::Null => {}
            _ => {
                return Err(invalid_at(
                    format!("expected a map, found a {}", part.type_name()),
                    path,
                    part.mark,
                ))
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// Nested lists flattened, by reference; a non-list is a one-element list.
fn flatten_ref(node: &Node) -> Vec<&Node> {
    let mut out = Vec::new();
    let mut stack = vec![node];
    while let Some(node) = stack.pop() {
        match &node.value {
            Value::List(items) => stack.extend(items.iter().rev()),
            _ => out.push(node),
        }
    }
    out
}

fn check_keys(map: &Map, allowed: &[&str], what: &str, path: &DocPath, mark: Mark) -> Result<()> {
    let unknown: Vec<&str> = map
        .keys()
        .map(String::as_str)
        .filter(|k| !allowed.contains(k))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let bad = unknown[0];
    let at = map.get(bad).map(|n| n.mark).unwrap_or(mark);
    Err(invalid_at(
        format!(
            "unknown key{} {} in {what}; valid keys are: {}",
            if unknown.len() > 1 { "s" } else { "" },
            unknown
                .iter()
                .map(|k| format!("'{k}'"))
                .collect::<Vec<_>>()
                .join(", "),
            allowed.join(", ")
        ),
        &path.key(bad),
        at,
    ))
}

/// `map.get(key)`, by a linear scan when the map is small: a definition looks up a
/// score of optional fields in a map of a few keys, where comparing keys beats hashing.
fn small_map_get<'m>(map: &'m Map, key: &str) -> Option<&'m Node> {
    if map.len() <= 8 {
        map.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v)
    } else {
        map.get(key)
    }
}

/// [`small_map_get`], mutably.
fn small_map_get_mut<'m>(map: &'m mut Map, key: &str) -> Option<&'m mut Node> {
    if map.len() <= 8 {
        map.iter_mut()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v)
    } else {
        map.get_mut(key)
    }
}

/// A string field (see [`string_field`]) moved out of `map` (left empty).
fn take_text(map: &mut Map, key: &str, path: &DocPath) -> Result<String> {
    match small_map_get_mut(map, key) {
        None => Ok(String::new()),
        Some(node) => match &mut node.value {
            Value::Str(text) => Ok(std::mem::take(text)),
            _ => string_field(node, &path.key(key)),
        },
    }
}

/// [`string_map`], moving the keys and values out of a map node (left empty).
fn take_string_map(node: &mut Node, path: &DocPath) -> Result<FastIndexMap<String, String>> {
    let Value::Map(entries) = &mut node.value else {
        return string_map(node, path);
    };
    let entries = std::mem::take(entries);
    let mut out = FastIndexMap::with_capacity_and_hasher(entries.len(), Default::default());
    for (key, value) in entries {
        let vp = path.key(&key);
        if matches!(value.value, Value::Null) {
            return Err(invalid_at(format!("{key} has no value"), &vp, value.mark));
        }
        let text = match value.value {
            Value::Str(text) => text,
            _ => string_field(&value, &vp)?,
        };
        out.insert(key, text);
    }
    Ok(out)
}

fn as_map<'a>(node: &'a Node, what: &str, path: &DocPath) -> Result<std::borrow::Cow<'a, Map>> {
    match &node.value {
        Value::Map(map) => Ok(std::borrow::Cow::Borrowed(map)),
        Value::Null => Err(invalid_at(
            format!("definition of {what} is empty"),
            path,
            node.mark,
        )),
        _ => Err(invalid_at(
            format!("{what} must be a map, not a {}", node.type_name()),
            path,
            node.mark,
        )),
    }
}

/// A string field: strings; bools as `true`/`false`; ints in decimal; null is "".
pub fn string_field(node: &Node, path: &DocPath) -> Result<String> {
    match &node.value {
        Value::Str(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Int(i) => Ok(i.to_string()),
        Value::Null => Ok(String::new()),
        _ => Err(invalid_at(
            format!("field needs a string, not a {}", node.type_name()),
            path,
            node.mark,
        )),
    }
}

fn int_field(node: &Node, name: &str, path: &DocPath) -> Result<u64> {
    match node.value {
        Value::Int(i) if i >= 0 => Ok(i as u64),
        Value::Int(_) => Err(invalid_at(
            format!("field {name} can't be negative"),
            path,
            node.mark,
        )),
        Value::Null => Ok(0),
        _ => Err(invalid_at(
            format!(
                "field {name} needs a <int>, not a {} ({})",
                node.type_name(),
                node.to_json()
            ),
            path,
            node.mark,
        )),
    }
}

fn bool_field(node: &Node, name: &str, path: &DocPath) -> Result<bool> {
    match node.value {
        Value::Bool(b) => Ok(b),
        Value::Null => Ok(false),
        _ => Err(invalid_at(
            format!("field {name} needs a bool, not a {}", node.type_name()),
            path,
            node.mark,
        )),
    }
}

fn float_field(node: &Node, name: &str, path: &DocPath) -> Result<f64> {
    match node.value {
        Value::Float(f) if f.is_finite() => Ok(f),
        Value::Int(i) => Ok(i as f64),
        Value::Null => Ok(0.0),
        _ => Err(invalid_at(
            format!("field {name} needs a number, not {}", node.to_json()),
            path,
            node.mark,
        )),
    }
}

/// A list-of-strings field: a bare scalar is a 1-element list, nested lists flatten.
pub fn string_list(node: &Node, path: &DocPath) -> Result<Vec<String>> {
    if matches!(node.value, Value::Null) {
        return Ok(Vec::new());
    }
    flatten_ref(node)
        .into_iter()
        .enumerate()
        .map(|(i, item)| string_field(item, &path.index(i)))
        .collect()
}

/// A `variables` map: values str, bool (`true`/`false`), int or float; anything else
/// (including null) is an error.
fn variables_map(node: &Node, path: &DocPath) -> Result<FastIndexMap<String, String>> {
    let mut out = FastIndexMap::default();
    for (key, value) in section_entries(node, path)? {
        let vp = path.key(key);
        let text = match &value.value {
            Value::Str(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => python_float(*f),
            _ => {
                return Err(invalid_at(
                    format!("Unsupported variable value for {key}: {}", value.to_json()),
                    &vp,
                    value.mark,
                ))
            }
        };
        if super::variables::is_reserved_name(key) {
            return Err(invalid_at(
                format!("{key} is a reserved variable name (set by the worker at run time)"),
                &vp,
                value.mark,
            ));
        }
        out.insert(key.to_owned(), text);
    }
    Ok(out)
}

/// A `{str: str}` map such as `dependencies`.
fn string_map(node: &Node, path: &DocPath) -> Result<FastIndexMap<String, String>> {
    let mut out = FastIndexMap::default();
    for (key, value) in section_entries(node, path)? {
        let vp = path.key(key);
        if matches!(value.value, Value::Null) {
            return Err(invalid_at(format!("{key} has no value"), &vp, value.mark));
        }
        let text = string_field(value, &vp)?;
        out.insert(key.to_owned(), text);
    }
    Ok(out)
}

fn decode_repo(name: &str, node: &Node, path: &DocPath) -> Result<RawRepo> {
    if RESERVED_REPO_NAMES.contains(&name) {
        return Err(invalid_at(
            format!("{name} is a reserved name and can't be used as a reponame."),
            path,
            node.mark,
        ));
    }
    match &node.value {
        Value::Str(text) => {
            let (repo, commit) = parse_reference(text, path, node.mark)?;
            Ok(RawRepo::Reference { repo, commit })
        }
        Value::Map(map) => {
            if let Some(import) = map.get("import") {
                check_keys(
                    map,
                    REPO_IMPORT_KEYS,
                    "an import repo reference",
                    path,
                    node.mark,
                )?;
                let text = string_field(import, &path.key("import"))?;
                if text.is_empty() || text.split('/').any(str::is_empty) {
                    return Err(invalid_at(
                        format!("Invalid import {text:?}"),
                        &path.key("import"),
                        import.mark,
                    ));
                }
                return Ok(RawRepo::Import { path: text });
            }
            check_keys(
                map,
                REPO_REFERENCE_KEYS,
                "a repo reference",
                path,
                node.mark,
            )?;
            let Some(reference) = map.get("reference") else {
                return Err(invalid_at(
                    "a repo reference needs 'reference' or 'import'",
                    path,
                    node.mark,
                ));
            };
            let text = string_field(reference, &path.key("reference"))?;
            let (repo, commit) = parse_reference(&text, &path.key("reference"), reference.mark)?;
            match map.get("branch") {
                None => {
                    if map.len() > 1 {
                        return Err(invalid_at(
                            "'auto' and 'prioritize' need a 'branch'",
                            path,
                            node.mark,
                        ));
                    }
                    Ok(RawRepo::Reference { repo, commit })
                }
                Some(branch) => Ok(RawRepo::Pin {
                    repo,
                    commit,
                    branch: string_field(branch, &path.key("branch"))?,
                    auto: map
                        .get("auto")
                        .map(|n| bool_field(n, "auto", &path.key("auto")))
                        .transpose()?
                        .unwrap_or(false),
                    prioritize: map
                        .get("prioritize")
                        .map(|n| bool_field(n, "prioritize", &path.key("prioritize")))
                        .transpose()?
                        .unwrap_or(false),
                }),
            }
        }
        _ => Err(invalid_at(
            format!("Improperly formed repo definition: {}", node.to_json()),
            path,
            node.mark,
        )),
    }
}

/// `git/repo/name/<hash>` into (repo, hash).
pub fn parse_reference(text: &str, path: &DocPath, mark: Mark) -> Result<(String, String)> {
    match text.rsplit_once('/') {
        Some((repo, commit)) if !repo.is_empty() => {
            if commit.is_empty() {
                return Err(invalid_at(
                    format!("Can't have an empty commitHash in {text:?}"),
                    path,
                    mark,
                ));
            }
            Ok((repo.to_owned(), commit.to_owned()))
        }
        _ => Err(invalid_at(
            format!("Improperly formed repo definition: {text}"),
            path,
            mark,
        )),
    }
}

fn decode_include(node: &Node, path: &DocPath) -> Result<RawInclude> {
    let map = as_map(node, "include", path)?;
    let include_path = match map.get("path") {
        Some(p) => string_field(p, &path.key("path"))?,
        None => return Err(invalid_at("an include needs a path", path, node.mark)),
    };
    let variables = match map.get("variables").map(|v| &v.value) {
        Some(Value::Map(vars)) => vars.clone(),
        _ => Map::default(),
    };
    Ok(RawInclude {
        path: include_path,
        variables,
        origin: Origin {
            document_path: path.render(),
            mark: node.mark,
        },
    })
}

fn decode_environment(name: &str, node: &Node, path: &DocPath) -> Result<RawEnvironment> {
    let map = as_map(node, name, path)?;
    let is_root = map.contains_key("platform") || map.contains_key("image");
    let mut allowed: Vec<&str> = SHARED_ENV.to_vec();
    if is_root {
        allowed.extend(ROOT_ENV_ONLY);
    } else {
        allowed.extend(DERIVED_ENV_ONLY);
    }
    let what = if is_root {
        "a root environment"
    } else {
        "a derived environment"
    };
    check_keys(&map, &allowed, what, path, node.mark)?;
    let root = if is_root {
        let platform = match map.get("platform") {
            Some(p) => match string_field(p, &path.key("platform"))?.as_str() {
                "linux" => Platform::Linux,
                "windows" => Platform::Windows,
                other => {
                    return Err(invalid_at(
                        format!(
                            "Algebraic type Platform has no subtype {other} (use linux or windows)"
                        ),
                        &path.key("platform"),
                        p.mark,
                    ))
                }
            },
            None => {
                return Err(invalid_at(
                    "a root environment needs a platform",
                    path,
                    node.mark,
                ))
            }
        };
        let image = match map.get("image") {
            Some(image) => decode_image(image, &path.key("image"))?,
            None => {
                return Err(invalid_at(
                    "a root environment needs an image",
                    path,
                    node.mark,
                ))
            }
        };
        Some((platform, image))
    } else {
        None
    };
    let get = |key: &str| small_map_get(&map, key);
    let int = |key: &str| -> Result<u64> {
        get(key)
            .map(|n| int_field(n, key, &path.key(key)))
            .transpose()
            .map(|v| v.unwrap_or(0))
    };
    Ok(RawEnvironment {
        name: name.to_owned(),
        root,
        bases: get("base")
            .map(|b| string_list(b, &path.key("base")))
            .transpose()?
            .unwrap_or_default(),
        setup_script_contents: get("setup_script_contents")
            .map(|s| string_field(s, &path.key("setup_script_contents")))
            .transpose()?
            .unwrap_or_default(),
        variables: get("variables")
            .map(|v| variables_map(v, &path.key("variables")))
            .transpose()?
            .unwrap_or_default(),
        dependencies: get("dependencies")
            .map(|v| string_map(v, &path.key("dependencies")))
            .transpose()?
            .unwrap_or_default(),
        defaults: RawDefaults {
            configuration: get("test_configuration")
                .map(|s| string_field(s, &path.key("test_configuration")))
                .transpose()?
                .unwrap_or_default(),
            timeout: int("test_timeout")?,
            min_cores: int("test_min_cores")?,
            max_cores: int("test_max_cores")?,
            min_ram_gb: int("test_min_ram_gb")?,
            min_disk_gb: int("test_min_disk_gb")?,
            max_retries: int("test_max_retries")?,
            retry_wait_seconds: int("test_retry_wait_seconds")?,
        },
        test_stages: get("test_stages")
            .map(|s| stages(s, &path.key("test_stages")))
            .transpose()?
            .unwrap_or_default(),
        origin: Origin {
            document_path: path.render(),
            mark: node.mark,
        },
    })
}

fn decode_image(node: &Node, path: &DocPath) -> Result<RawImage> {
    let map = as_map(node, "image", path)?;
    let field = |key: &str| -> Result<String> {
        map.get(key)
            .map(|n| string_field(n, &path.key(key)))
            .transpose()
            .map(|v| v.unwrap_or_default())
    };
    let keys: Vec<&str> = map.keys().map(String::as_str).collect();
    match keys.as_slice() {
        ["dockerfile_contents"] => Ok(RawImage::DockerfileContents(field("dockerfile_contents")?)),
        ["dockerfile"] => Ok(RawImage::Dockerfile(field("dockerfile")?)),
        ["base_ami"] | ["base_ami", "setup_script_contents"] | ["setup_script_contents", "base_ami"] => {
            Ok(RawImage::Ami { base_ami: field("base_ami")?, setup_script_contents: field("setup_script_contents")? })
        }
        _ => Err(invalid_at(
            format!(
                "an image is one of {{dockerfile_contents}}, {{dockerfile}} or {{base_ami[, setup_script_contents]}}, not {{{}}}",
                keys.join(", ")
            ),
            path,
            node.mark,
        )),
    }
}

/// A list of stages.
fn stages(node: &Node, path: &DocPath) -> Result<Vec<Stage>> {
    if matches!(node.value, Value::Null) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (i, item) in flatten_ref(node).into_iter().enumerate() {
        let sp = path.index(i);
        let map = as_map(item, "stage", &sp)?;
        check_keys(&map, STAGE_KEYS, "a stage", &sp, item.mark)?;
        let mut stage = Stage::default();
        if let Some(n) = map.get("command") {
            stage.command = string_field(n, &sp.key("command"))?;
        }
        if let Some(n) = map.get("cleanup") {
            stage.cleanup = string_field(n, &sp.key("cleanup"))?;
        }
        if let Some(n) = map.get("order") {
            stage.order = float_field(n, "order", &sp.key("order"))?;
        }
        if let Some(n) = map.get("artifacts") {
            let ap = sp.key("artifacts");
            if !matches!(n.value, Value::Null) {
                for (j, artifact) in flatten_ref(n).into_iter().enumerate() {
                    stage
                        .artifacts
                        .push(decode_artifact(artifact, &ap.index(j))?);
                }
            }
        }
        out.push(stage);
    }
    Ok(out)
}

fn decode_artifact(node: &Node, path: &DocPath) -> Result<Artifact> {
    let map = as_map(node, "artifact", path)?;
    check_keys(&map, ARTIFACT_KEYS, "an artifact", path, node.mark)?;
    let mut artifact = Artifact::default();
    if let Some(n) = map.get("name") {
        artifact.name = string_field(n, &path.key("name"))?;
    }
    if let Some(n) = map.get("directory") {
        artifact.directory = string_field(n, &path.key("directory"))?;
    }
    if let Some(n) = map.get("include_patterns") {
        artifact.include_patterns = string_list(n, &path.key("include_patterns"))?;
    }
    if let Some(n) = map.get("exclude_patterns") {
        artifact.exclude_patterns = string_list(n, &path.key("exclude_patterns"))?;
    }
    if let Some(n) = map.get("format") {
        artifact.format = match string_field(n, &path.key("format"))?.as_str() {
            "Tar" => ArtifactFormat::Tar,
            "Zip" => ArtifactFormat::Zip,
            "Files" => ArtifactFormat::Files,
            other => {
                return Err(invalid_at(
                    format!(
                    "Algebraic type ArtifactFormat has no subtype {other} (use Tar, Zip or Files)"
                ),
                    &path.key("format"),
                    n.mark,
                ))
            }
        };
    }
    Ok(artifact)
}

fn decode_definition(
    name: &str,
    kind: DefinitionKind,
    node: &mut Node,
    path: &DocPath,
) -> Result<RawDefinition> {
    as_map(node, name, path)?;
    let mark = node.mark;
    let Value::Map(map) = &mut node.value else {
        return Err(invalid_at(format!("{name} must be a map"), path, mark));
    };
    let specific: &[&str] = match kind {
        DefinitionKind::Build => BUILD_ONLY,
        DefinitionKind::Test => &[],
        DefinitionKind::Deployment => DEPLOYMENT_ONLY,
    };
    let runnable: &[&str] = match kind {
        DefinitionKind::Deployment => &[],
        _ => RUNNABLE,
    };
    let known = |key: &str| {
        DEFINITION_COMMON.contains(&key) || runnable.contains(&key) || specific.contains(&key)
    };
    if !map.keys().all(|key| known(key)) {
        let allowed: Vec<&str> = [DEFINITION_COMMON, runnable, specific].concat();
        check_keys(
            map,
            &allowed,
            &format!("a {}", singular(kind)),
            path,
            node.mark,
        )?;
    }
    decode_definition_fields(name, kind, map, path, mark)
}

/// The fields of definition `name` (its keys already checked), in the order their errors
/// take precedence. `command` and `dependencies` are moved out of `map`.
fn decode_definition_fields(
    name: &str,
    kind: DefinitionKind,
    map: &mut Map,
    path: &DocPath,
    mark: Mark,
) -> Result<RawDefinition> {
    let text = |map: &Map, key: &str| -> Result<String> {
        small_map_get(map, key)
            .map(|n| string_field(n, &path.key(key)))
            .transpose()
            .map(|v| v.unwrap_or_default())
    };
    let int = |map: &Map, key: &str| -> Result<u64> {
        small_map_get(map, key)
            .map(|n| int_field(n, key, &path.key(key)))
            .transpose()
            .map(|v| v.unwrap_or(0))
    };
    let mut port_expose = IndexMap::default();
    if let Some(ports) = small_map_get(map, "portExpose") {
        let pp = path.key("portExpose");
        for (port_name, value) in section_entries(ports, &pp)? {
            let port = int_field(value, "portExpose", &pp.key(port_name))?;
            port_expose.insert(port_name.to_owned(), port);
        }
    }
    let command = take_text(map, "command", path)?;
    let cleanup = text(map, "cleanup")?;
    let stages = small_map_get(map, "stages")
        .map(|s| stages(s, &path.key("stages")))
        .transpose()?
        .unwrap_or_default();
    let environment = text(map, "environment")?;
    let mixins = small_map_get(map, "mixins")
        .map(|m| string_list(m, &path.key("mixins")))
        .transpose()?
        .unwrap_or_default()
        .into_iter()
        .filter(|m| !m.is_empty())
        .collect();
    let configuration = text(map, "configuration")?;
    let project = text(map, "project")?;
    let dependencies = small_map_get_mut(map, "dependencies")
        .map(|d| take_string_map(d, &path.key("dependencies")))
        .transpose()?
        .unwrap_or_default();
    Ok(RawDefinition {
        name: name.to_owned(),
        kind,
        command,
        cleanup,
        stages,
        environment,
        mixins,
        configuration,
        project,
        dependencies,
        variables: small_map_get(map, "variables")
            .map(|v| variables_map(v, &path.key("variables")))
            .transpose()?
            .unwrap_or_default(),
        disabled: small_map_get(map, "disabled")
            .map(|d| bool_field(d, "disabled", &path.key("disabled")))
            .transpose()?
            .unwrap_or(false),
        timeout: int(map, "timeout")?,
        min_cores: int(map, "min_cores")?,
        max_cores: int(map, "max_cores")?,
        min_ram_gb: int(map, "min_ram_gb")?,
        min_disk_gb: int(map, "min_disk_gb")?,
        max_retries: int(map, "max_retries")?,
        retry_wait_seconds: int(map, "retry_wait_seconds")?,
        port_expose,
        docker_socket: small_map_get(map, "docker_socket")
            .map(|d| bool_field(d, "docker_socket", &path.key("docker_socket")))
            .transpose()?
            .unwrap_or(false),
        origin: Origin {
            document_path: path.render(),
            mark,
        },
    })
}
