//! The load phase of one commit: parse the root file, resolve repo references and imports,
//! then process includes breadth-first, merging every file into one namespace. The result,
//! [`Loaded`], is what the resolver works on and what other commits see when they import
//! this commit's repos.
//!
//! Includes resolve relative to the *including* file (its repo, commit and directory;
//! unlike the original; see docs/definitions.md#includes); `/x` is from the including
//! file's commit root; a first segment that is a repo name means that repo's commit. Parsed
//! includes behave as part of the root commit for `HEAD`, local environment names and
//! Dockerfile paths (as in the original).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use indexmap::IndexMap;

use super::node::FastIndexMap;

use super::error::{DefinitionsError, ErrorLocation, FileRef};
use super::limits::Budget;
use super::model::RepoReference;
use super::parse::parse_file;
use super::schema::{Origin, RawDefinition, RawEnvironment, RawFile, RawInclude, RawRepo};
use super::source::{CommitRef, DefinitionsSource};

/// Maximum number of distinct includes of one commit.
pub const MAX_INCLUDES: usize = 128;

/// A record with the file it was declared in.
#[derive(Clone, Debug)]
pub struct Declared<T> {
    pub value: T,
    pub file: Arc<FileRef>,
}

/// The merged, unresolved namespace of one commit.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub definitions_path: Option<String>,
    pub head_placeholder: bool,
    pub raw_repos: FastIndexMap<String, Declared<(RawRepo, Origin)>>,
    pub repos: IndexMap<String, RepoReference>,
    pub environments: FastIndexMap<String, Declared<RawEnvironment>>,
    pub definitions: FastIndexMap<String, Declared<RawDefinition>>,
    pub prioritize: Vec<String>,
}

/// Something that can load other commits (the resolver, with its memo).
pub trait CommitLoader {
    fn source(&self) -> &dyn DefinitionsSource;
    /// The budget every file this loader parses is charged to (one per resolution).
    fn budget(&mut self) -> &mut Budget;
    fn load(&mut self, commit: &CommitRef) -> Result<Arc<Loaded>, DefinitionsError>;
}

/// An error located at a record of a file.
pub fn error_at(message: impl Into<String>, file: &FileRef, origin: &Origin) -> DefinitionsError {
    let (line, column) = match origin.mark.known() {
        Some((l, c)) => (Some(l), Some(c)),
        None => (None, None),
    };
    DefinitionsError::Invalid {
        message: message.into(),
        location: Box::new(ErrorLocation {
            file: Some(file.clone()),
            document_path: origin.document_path.clone(),
            line,
            column,
        }),
    }
}

/// Load one commit (see the module doc).
pub fn load_commit(
    loader: &mut dyn CommitLoader,
    commit: &CommitRef,
) -> Result<Loaded, DefinitionsError> {
    let mut loaded = Loaded::default();
    if !loader.source().is_valid_commit_ref(&commit.commit) {
        return Ok(loaded);
    }
    let Some(path) = loader.source().definitions_path(commit)? else {
        return Ok(loaded);
    };
    loaded.definitions_path = Some(path.clone());
    let file = Arc::new(FileRef {
        commit: commit.clone(),
        path: path.clone(),
    });
    let Some(text) = loader.source().read_file(commit, &path)? else {
        return Ok(loaded);
    };
    let Some(raw) =
        parse_file(&text, &path, BTreeMap::new(), loader.budget()).map_err(|e| e.in_file(&file))?
    else {
        return Ok(loaded);
    };
    let RawFile {
        repos,
        includes,
        environments,
        definitions,
        prioritize,
    } = raw;
    for (name, repo) in repos {
        loaded.raw_repos.insert(
            name,
            Declared {
                value: repo,
                file: file.clone(),
            },
        );
    }
    loaded.prioritize = prioritize;
    if has_head_reference(&loaded.raw_repos) {
        return Ok(placeholder(loaded));
    }
    check_commit_refs(loader, &loaded.raw_repos)?;
    loaded.repos = resolve_repos(loader, &loaded.raw_repos)?;
    if loaded
        .repos
        .values()
        .any(|r| r.reference().commit == "HEAD")
    {
        return Ok(placeholder(loaded));
    }
    for (name, env) in environments {
        loaded.environments.insert(
            name,
            Declared {
                value: env,
                file: file.clone(),
            },
        );
    }
    loaded.definitions.reserve(definitions.len());
    for (name, def) in definitions {
        loaded.definitions.insert(
            name,
            Declared {
                value: def,
                file: file.clone(),
            },
        );
    }
    process_includes(loader, &mut loaded, includes, &file)?;
    check_definition_names(&loaded)?;
    Ok(loaded)
}

fn placeholder(mut loaded: Loaded) -> Loaded {
    loaded.head_placeholder = true;
    loaded.repos = loaded
        .raw_repos
        .iter()
        .filter_map(|(name, declared)| {
            Some((name.clone(), declared.value.0.direct_reference().ok()?))
        })
        .collect();
    loaded
}

fn has_head_reference(raw: &FastIndexMap<String, Declared<(RawRepo, Origin)>>) -> bool {
    raw.values().any(|d| match &d.value.0 {
        RawRepo::Reference { commit, .. } | RawRepo::Pin { commit, .. } => commit == "HEAD",
        RawRepo::Import { .. } => false,
    })
}

/// A reference must be a valid commit ref (or the `HEAD` placeholder).
fn check_commit_refs(
    loader: &mut dyn CommitLoader,
    raw: &FastIndexMap<String, Declared<(RawRepo, Origin)>>,
) -> Result<(), DefinitionsError> {
    for (name, declared) in raw {
        let (repo, origin) = &declared.value;
        if let RawRepo::Reference { commit, .. } | RawRepo::Pin { commit, .. } = repo {
            if commit != "HEAD" && !loader.source().is_valid_commit_ref(commit) {
                return Err(error_at(
                    format!(
                        "repo {name}: {commit:?} is not a commit hash (use the full 40-digit hash)"
                    ),
                    &declared.file,
                    origin,
                ));
            }
        }
    }
    Ok(())
}

/// Resolve every repo definition, following imports into other commits
/// (docs/definitions.md#repos).
pub fn resolve_repos(
    loader: &mut dyn CommitLoader,
    raw: &FastIndexMap<String, Declared<(RawRepo, Origin)>>,
) -> Result<IndexMap<String, RepoReference>, DefinitionsError> {
    let mut done: IndexMap<String, RepoReference> = IndexMap::new();
    for name in raw.keys() {
        let mut visiting = Vec::new();
        let reference = resolve_repo(loader, raw, name, &mut done, &mut visiting)?;
        done.insert(name.clone(), reference);
    }
    let ordered = raw
        .keys()
        .filter_map(|name| done.get(name).map(|r| (name.clone(), r.clone())))
        .collect();
    Ok(ordered)
}

fn resolve_repo(
    loader: &mut dyn CommitLoader,
    raw: &FastIndexMap<String, Declared<(RawRepo, Origin)>>,
    name: &str,
    done: &mut IndexMap<String, RepoReference>,
    visiting: &mut Vec<String>,
) -> Result<RepoReference, DefinitionsError> {
    if let Some(found) = done.get(name) {
        return Ok(found.clone());
    }
    let Some(declared) = raw.get(name) else {
        return Err(DefinitionsError::invalid(format!(
            "Can't resolve reference to repo def {name}"
        )));
    };
    let (repo, origin) = &declared.value;
    let at = |message: String| error_at(message, &declared.file, origin);
    let resolved = match repo.direct_reference() {
        Ok(direct) => direct,
        Err(path) => {
            if visiting.iter().any(|v| v == name) {
                visiting.push(name.to_owned());
                return Err(at(format!("Circular repo-refs: {}", visiting.join(" -> "))));
            }
            visiting.push(name.to_owned());
            let mut segments = path.split('/');
            let first = segments.next().unwrap_or_default();
            if !raw.contains_key(first) {
                return Err(at(format!(
                    "Can't resolve reference to repo def {first} (in import {path})"
                )));
            }
            let mut current = resolve_repo(loader, raw, first, done, visiting)?;
            let mut orig_reference = orig_of(&current);
            for segment in segments {
                if current.reference().commit == "HEAD" {
                    break;
                }
                let other = loader.load(current.reference())?;
                let Some(next) = other.repos.get(segment) else {
                    return Err(at(format!(
                        "Can't resolve reference {path} because {} doesn't have {segment}",
                        current.reference()
                    )));
                };
                orig_reference = orig_of(next);
                current = next.clone();
            }
            visiting.pop();
            RepoReference::Import {
                reference: current.reference().clone(),
                import_source: path.to_owned(),
                orig_reference,
            }
        }
    };
    done.insert(name.to_owned(), resolved.clone());
    Ok(resolved)
}

/// `orig_reference` of an import ending at `entry` (for a pin: `<pinned repo>/<branch>`;
/// the original named the repo holding the pin).
fn orig_of(entry: &RepoReference) -> String {
    match entry {
        RepoReference::Fixed { .. } => String::new(),
        RepoReference::Pin {
            reference, branch, ..
        } => format!("{}/{branch}", reference.repo),
        RepoReference::Import { orig_reference, .. } => orig_reference.clone(),
    }
}

fn process_includes(
    loader: &mut dyn CommitLoader,
    loaded: &mut Loaded,
    includes: Vec<RawInclude>,
    root_file: &Arc<FileRef>,
) -> Result<(), DefinitionsError> {
    let mut queue: VecDeque<(RawInclude, Arc<FileRef>)> = includes
        .into_iter()
        .map(|i| (i, root_file.clone()))
        .collect();
    let mut seen: HashSet<(CommitRef, String, String)> = HashSet::new();
    while let Some((include, includer)) = queue.pop_front() {
        let (commit, path) = include_location(&include, &includer, &loaded.repos)?;
        let variables_key = serde_json::Value::Object(
            include
                .variables
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
        )
        .to_string();
        if !seen.insert((commit.clone(), path.clone(), variables_key)) {
            continue;
        }
        if seen.len() > MAX_INCLUDES {
            return Err(error_at(
                format!("Exceeded the maximum number of file includes: {MAX_INCLUDES}"),
                &includer,
                &include.origin,
            ));
        }
        let Some(text) = loader.source().read_file(&commit, &path)? else {
            return Err(error_at(
                format!(
                    "Can't find path {path} in {commit} (included as {:?})",
                    include.path
                ),
                &includer,
                &include.origin,
            ));
        };
        let file = Arc::new(FileRef {
            commit: commit.clone(),
            path: path.clone(),
        });
        let scope = include.variables.into_iter().collect();
        let Some(raw) =
            parse_file(&text, &path, scope, loader.budget()).map_err(|e| e.in_file(&file))?
        else {
            return Err(DefinitionsError::invalid(
                "No looper version specified. Valid versions for this build are [4] (the included file is empty)",
            )
            .in_file(&file));
        };
        merge_included(loader, loaded, raw, &file, &mut queue)?;
    }
    Ok(())
}

fn merge_included(
    loader: &mut dyn CommitLoader,
    loaded: &mut Loaded,
    raw: RawFile,
    file: &Arc<FileRef>,
    queue: &mut VecDeque<(RawInclude, Arc<FileRef>)>,
) -> Result<(), DefinitionsError> {
    let second_time = |name: &str, origin: &Origin| {
        error_at(
            format!(
                "Name {name} can't be defined a second time in include {}",
                file.path
            ),
            file,
            origin,
        )
    };
    if !raw.prioritize.is_empty() {
        return Err(
            DefinitionsError::invalid("include targets can't prioritize individual tests")
                .in_file(file),
        );
    }
    let mut added_repos = false;
    for (name, (repo, origin)) in raw.repos {
        if loaded.raw_repos.contains_key(&name) {
            return Err(second_time(&name, &origin));
        }
        if let RawRepo::Pin { auto: true, .. } = repo {
            return Err(error_at(
                format!("Included repo {name} can't be marked 'auto'"),
                file,
                &origin,
            ));
        }
        loaded.raw_repos.insert(
            name,
            Declared {
                value: (repo, origin),
                file: file.clone(),
            },
        );
        added_repos = true;
    }
    if added_repos {
        check_commit_refs(loader, &loaded.raw_repos)?;
        loaded.repos = resolve_repos(loader, &loaded.raw_repos)?;
    }
    for (name, env) in raw.environments {
        if loaded.environments.contains_key(&name) || loaded.repos.contains_key(&name) {
            return Err(second_time(&name, &env.origin));
        }
        loaded.environments.insert(
            name,
            Declared {
                value: env,
                file: file.clone(),
            },
        );
    }
    for (name, def) in raw.definitions {
        if loaded.definitions.contains_key(&name)
            || loaded.environments.contains_key(&name)
            || loaded.repos.contains_key(&name)
        {
            return Err(second_time(&name, &def.origin));
        }
        loaded.definitions.insert(
            name,
            Declared {
                value: def,
                file: file.clone(),
            },
        );
    }
    for include in raw.includes {
        queue.push_back((include, file.clone()));
    }
    Ok(())
}

/// Where an include points: (commit, path).
fn include_location(
    include: &RawInclude,
    includer: &FileRef,
    repos: &IndexMap<String, RepoReference>,
) -> Result<(CommitRef, String), DefinitionsError> {
    let path = include.path.as_str();
    let (first, rest) = path.split_once('/').unwrap_or((path, ""));
    if first.is_empty() {
        return Ok((includer.commit.clone(), normalize(rest)));
    }
    if first == "." || first == ".." {
        let dir = includer.path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let joined = if dir.is_empty() {
            path.to_owned()
        } else {
            format!("{dir}/{path}")
        };
        return Ok((includer.commit.clone(), normalize(&joined)));
    }
    if let Some(reference) = repos.get(first) {
        return Ok((reference.reference().clone(), normalize(rest)));
    }
    Err(error_at(
        format!("Invalid include {path}: should start with a repo, a '/', '.', or '..'"),
        includer,
        &include.origin,
    ))
}

/// Normalise `.` and `..` textually; a `..` above the root is kept (and then fails to load).
fn normalize(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|s| *s != "..") {
                    out.pop();
                } else {
                    out.push("..");
                }
            }
            s => out.push(s),
        }
    }
    out.join("/")
}

/// The first `/`-segment of a definition name must not be a repo name.
fn check_definition_names(loaded: &Loaded) -> Result<(), DefinitionsError> {
    for (name, declared) in &loaded.definitions {
        let first = name.split('/').next().unwrap_or(name);
        if loaded.repos.contains_key(first) {
            return Err(error_at(
                format!(
                    "Cant produce a test with name {name}, because {first} is already a repo name."
                ),
                &declared.file,
                &declared.value.origin,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn normalizes_paths() {
        assert_eq!(normalize("ci/./x/../y.yml"), "ci/y.yml");
        assert_eq!(normalize("../y.yml"), "../y.yml");
    }
}
