//! The test-definitions language (documented for users in `docs/definitions.md`): finding,
//! loading, preprocessing, decoding and resolving one commit's definitions into a
//! [`ResolvedCommit`].
//!
//! Entry point: [`resolve_commit`]. It is pure: everything outside comes through a
//! [`DefinitionsSource`]. The pipeline, in order:
//!
//! - load one commit (`loader`): [`discovery`] finds the file; for each file `parse` runs
//!   `yaml` (YAML 1.1 typing) → `macros` (directives and `${name}` substitution) →
//!   `schema` (typed, unresolved records); then `loader` resolves the repo references and
//!   imports and follows the includes into one namespace;
//! - resolve it (`resolver`): `environments` (inheritance), [`variables`],
//!   `dependencies`, `stages` and artifacts, then [`identity`] hashes.
//!
//! Everything is bounded by the [`limits`].

mod dependencies;
pub mod discovery;
mod environments;
pub mod error;
pub mod glob;
pub mod identity;
pub mod limits;
mod loader;
mod macros;
pub mod memory;
pub mod model;
mod node;
mod parse;
mod path;
mod resolver;
mod schema;
pub mod source;
mod stages;
pub mod variables;
mod yaml;

pub use error::{DefinitionsError, ErrorLocation, FileRef};
pub use model::{
    Artifact, ArtifactFormat, DefinitionKind, DerivedEnvironment, EnvironmentDefaults, Image,
    Platform, RepoReference, ResolvedCommit, ResolvedDefinition, ResolvedDependency,
    ResolvedEnvironment, Stage,
};
pub use resolver::Resolver;
pub use source::{CommitRef, DefinitionsSource, SourceError};

/// Resolve the definitions of `target`, reading files and other commits through `source`.
///
/// - `Ok` with no definitions when the commit has no definitions file, the file is empty or
///   only comments, the commit ref is not a valid commit ref, or a repo is the `HEAD`
///   placeholder ([`ResolvedCommit::head_placeholder`]).
/// - `Err(DefinitionsError::Pending)` when a referenced repo or commit is not available.
/// - `Err(DefinitionsError::Invalid)` when the commit is untestable, with the message and
///   its location; also when the definitions pass one of the [`limits`].
pub fn resolve_commit(
    target: &CommitRef,
    source: &dyn DefinitionsSource,
) -> Result<ResolvedCommit, DefinitionsError> {
    let mut resolver = Resolver::new(source);
    let resolved = resolver.resolve(target);
    // Drop the resolver's memo first so the result is unwrapped without a deep copy.
    drop(resolver);
    resolved.map(std::sync::Arc::unwrap_or_clone)
}

/// Every key a definitions file may use, by the kind of map that takes it (`"top level"`,
/// `"build"`, `"stage"`, ..., and `"macro directive"`): the schema's own key lists, for
/// documentation and the test that keeps `docs/definitions.md` complete.
pub fn accepted_keys() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut keys = schema::accepted_keys();
    let mut directives: Vec<&'static str> = Vec::new();
    for key in macros::DIRECTIVES.iter().flat_map(|set| set.iter()) {
        if !directives.contains(key) {
            directives.push(key);
        }
    }
    keys.push(("macro directive", directives));
    keys
}

/// What one definitions file declares, after preprocessing and schema decoding (no
/// includes followed, nothing resolved): for linting a single file.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FileSummary {
    pub repos: Vec<String>,
    pub includes: Vec<String>,
    pub environments: Vec<String>,
    pub definitions: Vec<(String, DefinitionKind)>,
    pub prioritize: Vec<String>,
}

/// The document after preprocessing (the top-level `define` chain, directives and
/// `${v}` substitution in each section; see docs/definitions.md#macros), before schema decoding, as JSON: what a file's
/// macros expand to. `path` picks YAML or JSON by its extension. `Ok(None)` for an empty
/// file.
pub fn expand_file(text: &str, path: &str) -> Result<Option<serde_json::Value>, DefinitionsError> {
    let expanded = parse::expand_file(text, path, Default::default(), &mut limits::Budget::new())?;
    Ok(expanded.map(|(map, mark)| node::Node::new(node::Value::Map(map), mark).to_json()))
}

/// Parse and decode one file's text (`path` picks YAML or JSON by its extension).
/// `Ok(None)` for an empty file.
pub fn check_file(text: &str, path: &str) -> Result<Option<FileSummary>, DefinitionsError> {
    let parsed = parse::parse_file(text, path, Default::default(), &mut limits::Budget::new())?;
    Ok(parsed.map(|file| FileSummary {
        repos: file.repos.keys().cloned().collect(),
        includes: file.includes.iter().map(|i| i.path.clone()).collect(),
        environments: file.environments.keys().cloned().collect(),
        definitions: file
            .definitions
            .values()
            .map(|d| (d.name.clone(), d.kind))
            .collect(),
        prioritize: file.prioritize,
    }))
}
