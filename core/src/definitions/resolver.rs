//! The resolution phase: environments, definitions, dependencies,
//! `prioritize`/`disabled`, identity hashes; memoised per commit, with guards against
//! cycles between commits, environments, builds and variables. Everything a resolver reads
//! and builds is charged to its one [`Budget`] (H4).

use std::collections::BTreeMap;
use std::sync::Arc;

use indexmap::IndexMap;

use super::dependencies::{check_key, parse_dependency, Declarer, DependencyRef};
use super::environments::{linearize, EnvNode};
use super::error::DefinitionsError;
use super::glob::fnmatch;
use super::identity::{definition_hash, environment_hash, DefinitionIdentity};
use super::limits::{check_file_size, Budget, Counter, LimitExceeded};
use super::loader::{error_at, load_commit, CommitLoader, Declared, Loaded};
use super::model::{
    DefinitionKind, DerivedEnvironment, EnvironmentDefaults, Image, Platform, ResolvedCommit,
    ResolvedDefinition, ResolvedDependency, ResolvedEnvironment, Stage,
};
use super::node::{FastHashMap as HashMap, FastHashSet as HashSet};
use super::schema::{Origin, RawDefinition, RawEnvironment, RawImage};
use super::source::{CommitRef, DefinitionsSource};
use super::stages::{assemble, check_artifacts};
use super::variables::{resolve_within, substitute_within};

type Result<T> = std::result::Result<T, DefinitionsError>;

/// Resolves commits, memoising every commit it loads or resolves (reuse one resolver to
/// resolve many commits against the same source).
pub struct Resolver<'s> {
    source: &'s dyn DefinitionsSource,
    loaded: HashMap<CommitRef, Arc<Loaded>>,
    resolved: HashMap<CommitRef, Arc<ResolvedCommit>>,
    loading: HashSet<CommitRef>,
    resolving: Vec<CommitRef>,
    budget: Budget,
}

impl CommitLoader for Resolver<'_> {
    fn source(&self) -> &dyn DefinitionsSource {
        self.source
    }

    fn budget(&mut self) -> &mut Budget {
        &mut self.budget
    }

    fn load(&mut self, commit: &CommitRef) -> Result<Arc<Loaded>> {
        if let Some(done) = self.loaded.get(commit) {
            return Ok(done.clone());
        }
        if !self.loading.insert(commit.clone()) {
            return Err(DefinitionsError::invalid(format!(
                "Circular reference between commits: {commit} refers back to itself through its repos"
            )));
        }
        let outcome = load_commit(self, commit);
        self.loading.remove(commit);
        let loaded = Arc::new(outcome?);
        self.loaded.insert(commit.clone(), loaded.clone());
        Ok(loaded)
    }
}

/// Per-commit resolution state.
struct CommitState {
    loaded: Arc<Loaded>,
    commit: CommitRef,
    environments: HashMap<String, MergedEnvironment>,
    environments_in_progress: HashSet<String>,
    definitions: IndexMap<String, ResolvedDefinition>,
    /// Definitions being resolved, outermost first, by index in `loaded.definitions`.
    definition_stack: Vec<usize>,
    /// Definitions' dependencies by (substituted) value, once resolved: thousands of
    /// definitions share a handful of values (`src: HEAD`, `build: b/linux`). The outcome
    /// depends only on the value and the commit, and only successes are kept.
    definition_dependencies: HashMap<String, ResolvedDependency>,
}

/// An environment dependency before resolution, or one that arrived resolved.
enum EnvDependency {
    Raw(String),
    Resolved(ResolvedDependency),
}

/// One element of an environment's inheritance order.
enum EnvPart<'a> {
    Local(&'a Declared<RawEnvironment>),
    /// A root environment of another commit (already merged and substituted).
    External(Arc<ResolvedEnvironment>),
    /// A rootless environment of another commit (already merged and substituted).
    ExternalDerived(Arc<DerivedEnvironment>),
}

/// What an environment of another commit contributes to a chain. Root or not, it arrives
/// merged and substituted, so both kinds merge the same way.
struct ExternalContents<'a> {
    variables: &'a BTreeMap<String, String>,
    dependencies: &'a IndexMap<String, ResolvedDependency>,
    defaults: &'a EnvironmentDefaults,
    test_stages: &'a [Stage],
}

impl EnvPart<'_> {
    /// The environment as declared in this commit (`Err`), or what one of another commit
    /// contributes (`Ok`).
    fn contents(&self) -> std::result::Result<ExternalContents<'_>, &Declared<RawEnvironment>> {
        match self {
            EnvPart::Local(declared) => Err(declared),
            EnvPart::External(env) => Ok(ExternalContents {
                variables: &env.variables,
                dependencies: &env.dependencies,
                defaults: &env.defaults,
                test_stages: &env.test_stages,
            }),
            EnvPart::ExternalDerived(env) => Ok(ExternalContents {
                variables: &env.variables,
                dependencies: &env.dependencies,
                defaults: &env.defaults,
                test_stages: &env.test_stages,
            }),
        }
    }
}

/// A merged environment: with a root (runnable) or without (a mixin).
#[derive(Clone)]
enum MergedEnvironment {
    Rooted(Arc<ResolvedEnvironment>),
    Derived(Arc<DerivedEnvironment>),
}

impl<'s> Resolver<'s> {
    pub fn new(source: &'s dyn DefinitionsSource) -> Self {
        Resolver {
            source,
            loaded: HashMap::default(),
            resolved: HashMap::default(),
            loading: HashSet::default(),
            resolving: Vec::new(),
            budget: Budget::new(),
        }
    }

    /// What this resolver has spent of the cumulative [`limits`](super::limits).
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Substitute `vars` into `text`, charging the work and the result.
    fn substitute(&mut self, text: &str, vars: &BTreeMap<String, String>) -> Result<String> {
        let out = substitute_within(text, vars, &mut self.budget)
            .map_err(limit_error)?
            .into_owned();
        self.charge_resolved(out.len())?;
        Ok(out)
    }

    /// Charge `bytes` of resolved text, before it is copied when the caller can.
    fn charge_resolved(&mut self, bytes: usize) -> Result<()> {
        self.budget
            .charge(Counter::ResolvedBytes, bytes)
            .map_err(limit_error)
    }

    /// Only the repo references of a commit (parsed and imports resolved, includes merged).
    /// Used to keep pins of a commit whose full resolution fails.
    pub fn repos(
        &mut self,
        commit: &CommitRef,
    ) -> Result<IndexMap<String, super::model::RepoReference>> {
        Ok(self.load(commit)?.repos.clone())
    }

    /// Resolve one commit (memoised).
    pub fn resolve(&mut self, commit: &CommitRef) -> Result<Arc<ResolvedCommit>> {
        if let Some(done) = self.resolved.get(commit) {
            return Ok(done.clone());
        }
        if self.resolving.contains(commit) {
            let chain: Vec<String> = self.resolving.iter().map(ToString::to_string).collect();
            return Err(DefinitionsError::invalid(format!(
                "Circular reference between commits: {} -> {commit}",
                chain.join(" -> ")
            )));
        }
        self.resolving.push(commit.clone());
        let outcome = self.resolve_uncached(commit);
        self.resolving.pop();
        let resolved = Arc::new(outcome?);
        self.resolved.insert(commit.clone(), resolved.clone());
        Ok(resolved)
    }

    fn resolve_uncached(&mut self, commit: &CommitRef) -> Result<ResolvedCommit> {
        let loaded = self.load(commit)?;
        let mut result = ResolvedCommit {
            commit: commit.clone(),
            definitions_path: loaded.definitions_path.clone(),
            head_placeholder: loaded.head_placeholder,
            repos: loaded.repos.clone(),
            environments: IndexMap::new(),
            derived_environments: IndexMap::new(),
            definitions: IndexMap::new(),
            prioritize: loaded.prioritize.clone(),
        };
        if loaded.head_placeholder {
            return Ok(result);
        }
        let mut state = CommitState {
            loaded: loaded.clone(),
            commit: commit.clone(),
            environments: HashMap::default(),
            environments_in_progress: HashSet::default(),
            definitions: IndexMap::with_capacity(loaded.definitions.len()),
            definition_stack: Vec::new(),
            definition_dependencies: HashMap::default(),
        };
        for name in loaded.environments.keys() {
            match self.environment(&mut state, name, None)? {
                MergedEnvironment::Rooted(env) => {
                    result.environments.insert(name.clone(), env);
                }
                MergedEnvironment::Derived(env) => {
                    result.derived_environments.insert(name.clone(), env);
                }
            }
        }
        for name in loaded.definitions.keys() {
            self.definition(&mut state, name)?;
        }
        reenable_dependencies(&mut state);
        let mut definitions = std::mem::take(&mut state.definitions);
        // Build dependencies are resolved first, out of declaration order; restore it.
        let in_order = definitions
            .keys()
            .zip(loaded.definitions.keys())
            .all(|(resolved, declared)| resolved == declared);
        if !in_order {
            definitions.sort_by_cached_key(|name, _| loaded.definitions.get_index_of(name));
        }
        result.definitions = definitions;
        Ok(result)
    }

    /// Resolve environment `key` (a local name, or `E+M1+..` with `synthetic = (E, mixins)`).
    fn environment(
        &mut self,
        state: &mut CommitState,
        key: &str,
        synthetic: Option<(&str, &[String])>,
    ) -> Result<MergedEnvironment> {
        if let Some(done) = state.environments.get(key) {
            return Ok(done.clone());
        }
        if !state.environments_in_progress.insert(key.to_owned()) {
            return Err(DefinitionsError::invalid(format!(
                "Circular dependencies: environment {key} depends on itself through a build dependency"
            )));
        }
        let outcome = self.environment_uncached(state, key, synthetic);
        state.environments_in_progress.remove(key);
        let env = outcome?;
        state.environments.insert(key.to_owned(), env.clone());
        Ok(env)
    }

    /// Merge environment `key` along its own steps: linearise the bases, collect the
    /// parts, check there is a single root, merge variables, dependencies and stages (and
    /// the `test_*` defaults and setup scripts), build the image, substitute, resolve the
    /// dependencies, and assemble the result (see docs/definitions.md#inheritance).
    fn environment_uncached(
        &mut self,
        state: &mut CommitState,
        key: &str,
        synthetic: Option<(&str, &[String])>,
    ) -> Result<MergedEnvironment> {
        let loaded = state.loaded.clone();
        let commit = state.commit.clone();
        let (display_name, mixins): (String, Vec<String>) = match synthetic {
            Some((base, mixins)) => (base.to_owned(), mixins.to_vec()),
            None => (key.to_owned(), Vec::new()),
        };
        let (located_file, located_origin) = match loaded.environments.get(display_name.as_str()) {
            Some(d) => ((*d.file).clone(), d.value.origin.clone()),
            None => (
                super::error::FileRef {
                    commit: commit.clone(),
                    path: loaded.definitions_path.clone().unwrap_or_default(),
                },
                Origin::default(),
            ),
        };
        let at = |message: String| error_at(message, &located_file, &located_origin);

        let order = environment_order(&loaded, &commit, key, synthetic).map_err(&at)?;
        let parts =
            self.environment_parts(&loaded, &commit, &order, key, synthetic.is_some(), &at)?;
        check_single_root(&parts).map_err(&at)?;
        let (variables, dependencies, test_stages) = merge_chain(&parts);
        let defaults = merge_defaults(&parts);
        let joined_setup = joined_setup_scripts(&parts);
        let root = self.root_image(&parts, &commit).map_err(&at)?;
        let variables = resolve_within(&variables, &BTreeMap::new(), &mut self.budget)
            .map_err(|e| at(e.to_string()))?;
        let root =
            self.finish_image(root, &joined_setup, &variables, &test_stages, &located_file)?;
        let resolved_deps = self.environment_dependencies(
            state,
            &loaded,
            key,
            dependencies,
            &variables,
            &located_file,
            &at,
        )?;

        // `order[0]` is the environment itself; the synthetic one is not in `parts`.
        let skip = usize::from(synthetic.is_none());
        let inheritance: Vec<String> = parts
            .iter()
            .skip(skip)
            .map(|(name, _)| name.clone())
            .collect();
        let Some((platform, image)) = root else {
            return Ok(MergedEnvironment::Derived(Arc::new(DerivedEnvironment {
                name: display_name,
                inheritance,
                variables,
                dependencies: resolved_deps,
                defaults,
                test_stages,
                setup_script_contents: joined_setup,
            })));
        };
        let hash = environment_hash(
            &display_name,
            &mixins,
            &inheritance,
            platform,
            &image,
            &variables,
            resolved_deps.iter(),
            &defaults,
            &test_stages,
        );
        Ok(MergedEnvironment::Rooted(Arc::new(ResolvedEnvironment {
            name: display_name,
            mixins,
            inheritance,
            platform,
            image,
            variables,
            dependencies: resolved_deps,
            defaults,
            test_stages,
            hash,
        })))
    }

    /// Step 2 of [`Self::environment_uncached`]: each environment of the inheritance
    /// order, as declared (local) or as resolved in its own commit (`repo/name`). The
    /// synthetic `E+M1+..` environment itself has no part.
    fn environment_parts<'l>(
        &mut self,
        loaded: &'l Loaded,
        commit: &CommitRef,
        order: &[EnvNode],
        key: &str,
        synthetic: bool,
        at: &dyn Fn(String) -> DefinitionsError,
    ) -> Result<Vec<(String, EnvPart<'l>)>> {
        let mut parts: Vec<(String, EnvPart)> = Vec::with_capacity(order.len());
        for node in order {
            match node {
                EnvNode::Local(name) if name == key && synthetic => {}
                EnvNode::Local(name) => match loaded.environments.get(name) {
                    Some(declared) => parts.push((name.clone(), EnvPart::Local(declared))),
                    None => {
                        return Err(at(format!(
                            "Can't find environment {name} for {commit}. Available: {}",
                            available_environments(loaded)
                        )))
                    }
                },
                EnvNode::External(repo, name) => {
                    let Some(reference) = loaded.repos.get(repo) else {
                        return Err(at(format!(
                            "Can't find repo {repo} for environment base {repo}/{name}"
                        )));
                    };
                    let other = self.resolve(reference.reference()).map_err(|e| {
                        e.context(&format!(
                            "While resolving {} for environment {key}:",
                            reference.reference()
                        ))
                    })?;
                    let part = match (
                        other.environments.get(name),
                        other.derived_environments.get(name),
                    ) {
                        (Some(env), _) => EnvPart::External(env.clone()),
                        (None, Some(env)) => EnvPart::ExternalDerived(env.clone()),
                        (None, None) => {
                            return Err(at(format!(
                                "Can't find environment {name} for {}. Available: {}",
                                reference.reference(),
                                other
                                    .environments
                                    .keys()
                                    .chain(other.derived_environments.keys())
                                    .cloned()
                                    .collect::<Vec<_>>()
                                    .join(",")
                            )));
                        }
                    };
                    parts.push((name.clone(), part));
                }
            }
        }
        Ok(parts)
    }

    /// The chain's root platform and image: a local root's image is built here (a
    /// `dockerfile` is read from `commit`); another commit's arrives built. `None` for a
    /// chain without a root (a mixin, kept merged for other commits).
    fn root_image(
        &self,
        parts: &[(String, EnvPart)],
        commit: &CommitRef,
    ) -> std::result::Result<Option<(Platform, Image)>, String> {
        Ok(
            match parts.iter().find_map(|(_, p)| match p {
                EnvPart::Local(d) => d
                    .value
                    .root
                    .as_ref()
                    .map(|(platform, image)| (*platform, Some(image), None)),
                EnvPart::External(env) => Some((env.platform, None, Some(env.image.clone()))),
                EnvPart::ExternalDerived(_) => None,
            }) {
                Some((platform, Some(raw_image), _)) => {
                    Some((platform, self.image(raw_image, commit)?))
                }
                Some((platform, None, Some(image))) => Some((platform, image)),
                _ => None,
            },
        )
    }

    /// Charge the environment's resolved size, append the joined setup scripts to the
    /// root's Dockerfile text or AMI script, and substitute the AMI script's variables.
    fn finish_image(
        &mut self,
        mut root: Option<(Platform, Image)>,
        joined_setup: &str,
        variables: &BTreeMap<String, String>,
        test_stages: &[Stage],
        file: &super::error::FileRef,
    ) -> Result<Option<(Platform, Image)>> {
        let image_bytes = match &root {
            Some((
                _,
                Image::Docker {
                    dockerfile_contents,
                    ..
                },
            )) => dockerfile_contents.len(),
            Some((
                _,
                Image::Ami {
                    setup_script_contents,
                    ..
                },
            )) => setup_script_contents.len(),
            None => 0,
        };
        self.charge_resolved(
            map_bytes(variables) + image_bytes + 2 * joined_setup.len() + stages_bytes(test_stages),
        )
        .map_err(|e| e.in_file(file))?;
        if let (false, Some((_, image))) = (joined_setup.is_empty(), &mut root) {
            match image {
                Image::Docker {
                    dockerfile_contents,
                    ..
                } => {
                    dockerfile_contents.push('\n');
                    dockerfile_contents.push_str(joined_setup);
                }
                Image::Ami {
                    setup_script_contents,
                    ..
                } => {
                    setup_script_contents.push('\n');
                    setup_script_contents.push_str(joined_setup);
                }
            }
        }
        if let Some((
            _,
            Image::Ami {
                setup_script_contents,
                ..
            },
        )) = &mut root
        {
            *setup_script_contents = self
                .substitute(setup_script_contents, variables)
                .map_err(|e| e.in_file(file))?;
        }
        Ok(root)
    }

    /// Resolve the merged dependencies of environment `key`: the local ones (keys and
    /// values substituted with the environment's variables) now, in this commit; those of
    /// other commits' environments arrived resolved.
    #[allow(clippy::too_many_arguments)]
    fn environment_dependencies(
        &mut self,
        state: &mut CommitState,
        loaded: &Loaded,
        key: &str,
        dependencies: IndexMap<String, EnvDependency>,
        variables: &BTreeMap<String, String>,
        file: &super::error::FileRef,
        at: &dyn Fn(String) -> DefinitionsError,
    ) -> Result<IndexMap<String, ResolvedDependency>> {
        let mut resolved_deps: IndexMap<String, ResolvedDependency> = IndexMap::new();
        for (raw_key, dep) in dependencies {
            match dep {
                EnvDependency::Resolved(resolved) => {
                    resolved_deps.insert(raw_key, resolved);
                }
                EnvDependency::Raw(value) => {
                    let dep_key = self
                        .substitute(&raw_key, variables)
                        .map_err(|e| e.in_file(file))?;
                    check_key(&dep_key)
                        .map_err(|m| at(format!("environment {key}, dependency {raw_key}: {m}")))?;
                    let value = self
                        .substitute(&value, variables)
                        .map_err(|e| e.in_file(file))?;
                    let parsed = parse_dependency(&value, Declarer::Environment, &|r| {
                        loaded.repos.contains_key(r)
                    })
                    .map_err(|m| at(format!("environment {key}, dependency {dep_key}: {m}")))?;
                    let resolved = self
                        .dependency(state, &parsed, &value)
                        .map_err(|e| e.in_file(file))?;
                    resolved_deps.insert(dep_key, resolved);
                }
            }
        }
        Ok(resolved_deps)
    }

    fn image(&self, raw: &RawImage, commit: &CommitRef) -> std::result::Result<Image, String> {
        Ok(match raw {
            RawImage::DockerfileContents(text) => Image::Docker {
                dockerfile_contents: text.clone(),
                dockerfile: None,
            },
            RawImage::Dockerfile(path) => {
                let clean = path.trim_start_matches('/');
                match self.source.read_file(commit, clean) {
                    Ok(Some(text)) if text.len() > super::limits::MAX_FILE_BYTES => {
                        return Err(check_file_size(clean, text.len() as u64)
                            .err()
                            .map(|e| e.message)
                            .unwrap_or_default())
                    }
                    Ok(Some(text)) => Image::Docker {
                        dockerfile_contents: text,
                        dockerfile: Some(path.clone()),
                    },
                    Ok(None) => return Err(format!("Can't find dockerfile {path} in {commit}")),
                    Err(e) => return Err(format!("Can't read dockerfile {path} in {commit}: {e}")),
                }
            }
            RawImage::Ami {
                base_ami,
                setup_script_contents,
            } => Image::Ami {
                base_ami: base_ami.clone(),
                setup_script_contents: setup_script_contents.clone(),
            },
        })
    }

    /// Resolve a parsed dependency in the context of `state`'s commit.
    fn dependency(
        &mut self,
        state: &mut CommitState,
        parsed: &DependencyRef,
        value: &str,
    ) -> Result<ResolvedDependency> {
        let loaded = state.loaded.clone();
        match parsed {
            DependencyRef::Source { repo, path } => {
                let reference = match repo {
                    None => state.commit.clone(),
                    Some(local) => match loaded.repos.get(local) {
                        Some(r) => r.reference().clone(),
                        None => {
                            return Err(DefinitionsError::invalid(format!(
                                "Test depends on unknown reponame: {local}"
                            )))
                        }
                    },
                };
                if path.is_empty() {
                    return Ok(ResolvedDependency::Source {
                        repo: reference.repo,
                        commit: reference.commit,
                        path: String::new(),
                    });
                }
                match self.source.last_commit_touching(&reference, path)? {
                    Some(last) => Ok(ResolvedDependency::Source {
                        repo: reference.repo,
                        commit: last,
                        path: path.clone(),
                    }),
                    None => Err(DefinitionsError::invalid(format!(
                        "dependency {value}: path {path} doesn't exist in {reference}"
                    ))),
                }
            }
            DependencyRef::InternalBuild { name } => {
                let (definition, artifact) =
                    find_by_prefix(name, |n| loaded.definitions.get(n).map(|d| d.value.kind))
                        .ok_or_else(|| {
                            DefinitionsError::invalid(format!(
                                "Can't resolve {name} to a valid name amongst: {}",
                                loaded
                                    .definitions
                                    .keys()
                                    .cloned()
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ))
                        })?;
                self.definition(state, &definition)?;
                let resolved = state.definitions.get(&definition).ok_or_else(|| {
                    DefinitionsError::invalid(format!(
                        "internal error: {definition} was not resolved"
                    ))
                })?;
                build_dependency(resolved, &state.commit, artifact)
            }
            DependencyRef::ExternalBuild { repo, name } => {
                let Some(reference) = loaded.repos.get(repo) else {
                    return Err(DefinitionsError::invalid(format!(
                        "Test depends on unknown reponame: {repo}"
                    )));
                };
                let reference = reference.reference().clone();
                let other = self.resolve(&reference).map_err(|e| {
                    e.context(&format!(
                        "While resolving {reference} for dependency {value}:"
                    ))
                })?;
                let (definition, artifact) =
                    find_by_prefix(name, |n| other.definitions.get(n).map(|d| d.kind)).ok_or_else(
                        || {
                            DefinitionsError::invalid(format!(
                                "Can't resolve {name} to a valid name amongst: {} (in {reference})",
                                other
                                    .definitions
                                    .keys()
                                    .cloned()
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ))
                        },
                    )?;
                let resolved = other.definitions.get(&definition).ok_or_else(|| {
                    DefinitionsError::invalid(format!("internal error: {definition} missing"))
                })?;
                build_dependency(resolved, &reference, artifact)
            }
        }
    }

    /// Resolve definition `name` of `state`'s commit into `state.definitions`.
    fn definition(&mut self, state: &mut CommitState, name: &str) -> Result<()> {
        if state.definitions.contains_key(name) {
            return Ok(());
        }
        let loaded = state.loaded.clone();
        let index = loaded.definitions.get_index_of(name);
        let on_stack = index.and_then(|i| state.definition_stack.iter().position(|n| *n == i));
        if let Some(at) = on_stack {
            let mut cycle: Vec<&str> = state.definition_stack[at..]
                .iter()
                .filter_map(|i| loaded.definitions.get_index(*i).map(|(n, _)| n.as_str()))
                .collect();
            cycle.push(name);
            return Err(DefinitionsError::invalid(format!(
                "Circular test dependency found: {}",
                cycle.join(" -> ")
            )));
        }
        if state.definition_stack.len() > 512 {
            return Err(DefinitionsError::invalid(
                "build dependencies are nested more than 512 levels deep",
            ));
        }
        let Some((index, declared)) =
            index.and_then(|i| Some((i, loaded.definitions.get_index(i)?.1)))
        else {
            return Err(DefinitionsError::invalid(format!(
                "unknown definition {name}"
            )));
        };
        state.definition_stack.push(index);
        let outcome = self.definition_uncached(state, declared);
        state.definition_stack.pop();
        let resolved = outcome.map_err(|e| {
            let wrapped = e.context(&format!("While processing test {name}:"));
            match wrapped {
                DefinitionsError::Invalid { message, location } if location.file.is_none() => {
                    error_at(message, &declared.file, &declared.value.origin)
                }
                other => other,
            }
        })?;
        state.definitions.insert(name.to_owned(), resolved);
        Ok(())
    }

    fn definition_uncached(
        &mut self,
        state: &mut CommitState,
        declared: &Declared<RawDefinition>,
    ) -> Result<ResolvedDefinition> {
        let raw = &declared.value;
        let loaded = state.loaded.clone();
        let environment_name = if raw.environment.is_empty() {
            let last = raw.name.rsplit('/').next().unwrap_or(&raw.name);
            if last.contains('$') {
                return Err(DefinitionsError::invalid(format!(
                    "Malformed name {}: the environment part can't contain '$'",
                    raw.name
                )));
            }
            last
        } else {
            raw.environment.as_str()
        };
        for env in std::iter::once(environment_name).chain(raw.mixins.iter().map(String::as_str)) {
            if !loaded.environments.contains_key(env) {
                let mut names: Vec<&String> = loaded.environments.keys().collect();
                names.sort();
                return Err(DefinitionsError::invalid(format!(
                    "Can't find environment {env} (referenced by {}) in {names:?}",
                    raw.name
                )));
            }
        }
        let merged = if raw.mixins.is_empty() {
            self.environment(state, environment_name, None)?
        } else {
            let key = format!("{environment_name}+{}", raw.mixins.join("+"));
            self.environment(state, &key, Some((environment_name, &raw.mixins)))?
        };
        let MergedEnvironment::Rooted(environment) = merged else {
            return Err(DefinitionsError::invalid(format!(
                "environment {environment_name} has no root (platform/image) environment"
            )));
        };

        // Each definition holds its own copy of its variables: charged before copying.
        self.charge_resolved(map_bytes(&environment.variables))?;
        let variables = if raw.variables.is_empty() {
            environment.variables.clone()
        } else {
            let mut merged = environment.variables.clone();
            for (k, v) in &raw.variables {
                merged.insert(k.clone(), v.clone());
            }
            let resolved = resolve_within(&merged, &BTreeMap::new(), &mut self.budget)
                .map_err(|e| DefinitionsError::invalid(e.to_string()))?;
            self.charge_resolved(
                map_bytes(&resolved).saturating_sub(map_bytes(&environment.variables)),
            )?;
            resolved
        };
        let configuration = self.substitute(
            if !raw.configuration.is_empty() {
                &raw.configuration
            } else if !environment.defaults.configuration.is_empty() {
                &environment.defaults.configuration
            } else {
                environment_name
            },
            &variables,
        )?;
        let project = self.substitute(
            if raw.project.is_empty() {
                raw.name.split('/').next().unwrap_or(&raw.name)
            } else {
                &raw.project
            },
            &variables,
        )?;
        let pick = |own: u64, default: u64| if own != 0 { own } else { default };
        let defaults = &environment.defaults;
        let is_build = raw.kind == DefinitionKind::Build;
        let stages = match raw.kind {
            DefinitionKind::Deployment => assemble(
                raw.kind,
                &environment.test_stages,
                &[],
                &raw.command,
                "",
                &variables,
                &mut self.budget,
            ),
            _ => assemble(
                raw.kind,
                &environment.test_stages,
                &raw.stages,
                &raw.command,
                &raw.cleanup,
                &variables,
                &mut self.budget,
            ),
        }
        .map_err(limit_error)?;
        if raw.kind != DefinitionKind::Deployment {
            check_artifacts(&raw.name, &stages).map_err(DefinitionsError::invalid)?;
        }
        let mut dependencies = IndexMap::with_capacity(raw.dependencies.len());
        for (raw_key, raw_value) in &raw.dependencies {
            let key = self.substitute(raw_key, &variables)?;
            check_key(&key).map_err(DefinitionsError::invalid)?;
            let value =
                substitute_within(raw_value, &variables, &mut self.budget).map_err(limit_error)?;
            let resolved = match state.definition_dependencies.get(value.as_ref()) {
                Some(done) => done.clone(),
                None => {
                    let parsed = parse_dependency(&value, Declarer::Definition, &|r| {
                        loaded.repos.contains_key(r)
                    })
                    .map_err(DefinitionsError::invalid)?;
                    let resolved = self.dependency(state, &parsed, &value)?;
                    state
                        .definition_dependencies
                        .insert(value.into_owned(), resolved.clone());
                    resolved
                }
            };
            if dependencies.insert(key.clone(), resolved).is_some() {
                return Err(DefinitionsError::invalid(format!(
                    "dependency key {key} is defined twice after substitution"
                )));
            }
        }
        let mut definition = ResolvedDefinition {
            name: raw.name.clone(),
            kind: raw.kind,
            hash: String::new(),
            project,
            configuration,
            environment: environment.clone(),
            dependencies,
            variables,
            stages,
            timeout: pick(raw.timeout, defaults.timeout),
            min_cores: pick(raw.min_cores, defaults.min_cores),
            max_cores: pick(raw.max_cores, defaults.max_cores),
            min_ram_gb: pick(raw.min_ram_gb, defaults.min_ram_gb),
            min_disk_gb: pick(raw.min_disk_gb, defaults.min_disk_gb),
            max_retries: if is_build {
                pick(raw.max_retries, defaults.max_retries)
            } else {
                0
            },
            retry_wait_seconds: if is_build {
                pick(raw.retry_wait_seconds, defaults.retry_wait_seconds)
            } else {
                0
            },
            disabled: raw.kind != DefinitionKind::Deployment
                && (raw.disabled
                    || (!loaded.prioritize.is_empty()
                        && !loaded.prioritize.iter().any(|g| fnmatch(g, &raw.name)))),
            port_expose: raw.port_expose.clone(),
            docker_socket: raw.docker_socket,
        };
        definition.hash = definition_hash(&DefinitionIdentity {
            kind: definition.kind,
            name: &definition.name,
            project: &definition.project,
            configuration: &definition.configuration,
            environment_hash: &environment.hash,
            variables: &definition.variables,
            stages: &definition.stages,
            dependencies: &definition.dependencies,
            timeout: definition.timeout,
            min_cores: definition.min_cores,
            max_cores: definition.max_cores,
            min_ram_gb: definition.min_ram_gb,
            min_disk_gb: definition.min_disk_gb,
            max_retries: definition.max_retries,
            retry_wait_seconds: definition.retry_wait_seconds,
            port_expose: &definition.port_expose,
            docker_socket: definition.docker_socket,
        });
        Ok(definition)
    }
}

fn limit_error(error: LimitExceeded) -> DefinitionsError {
    DefinitionsError::invalid(error.message)
}

/// Bytes of the names and values of a variable set.
fn map_bytes(vars: &BTreeMap<String, String>) -> usize {
    vars.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// Bytes of text in `stages`.
fn stages_bytes(stages: &[Stage]) -> usize {
    stages
        .iter()
        .map(|stage| {
            let artifacts: usize = stage
                .artifacts
                .iter()
                .map(|a| {
                    a.name.len()
                        + a.directory.len()
                        + a.include_patterns.iter().map(String::len).sum::<usize>()
                        + a.exclude_patterns.iter().map(String::len).sum::<usize>()
                })
                .sum();
            stage.command.len() + stage.cleanup.len() + artifacts
        })
        .sum()
}

/// First `/`-prefix of `name` that is a definition wins; the rest is the artifact
/// (docs/definitions.md#dependencies).
fn find_by_prefix(
    name: &str,
    kind_of: impl Fn(&str) -> Option<DefinitionKind>,
) -> Option<(String, String)> {
    let mut end = 0;
    loop {
        let next = name[end..].find('/').map(|i| end + i).unwrap_or(name.len());
        let prefix = &name[..next];
        if kind_of(prefix).is_some() {
            let artifact = if next < name.len() {
                &name[next + 1..]
            } else {
                ""
            };
            return Some((prefix.to_owned(), artifact.to_owned()));
        }
        if next >= name.len() {
            return None;
        }
        end = next + 1;
    }
}

fn build_dependency(
    target: &ResolvedDefinition,
    defined_in: &CommitRef,
    artifact: String,
) -> Result<ResolvedDependency> {
    if target.kind != DefinitionKind::Build {
        return Err(DefinitionsError::invalid(format!(
            "{} is a {}: only builds can be dependencies",
            target.name,
            match target.kind {
                DefinitionKind::Test => "test",
                _ => "deployment",
            }
        )));
    }
    let produced = target
        .stages
        .iter()
        .flat_map(|stage| &stage.artifacts)
        .any(|a| a.name == artifact);
    if !produced {
        let mut valid: Vec<&str> = target.artifact_names();
        valid.sort();
        return Err(DefinitionsError::invalid(format!(
            "Can't resolve artifact '{artifact}' in test {}. Valid are {valid:?}",
            target.name
        )));
    }
    Ok(ResolvedDependency::Build {
        defined_in: defined_in.clone(),
        name: target.name.clone(),
        hash: target.hash.clone(),
        artifact,
    })
}

/// Step 1 of `Resolver::environment_uncached`: the inheritance order of environment `key`,
/// highest priority first (see `environments.rs`); a synthetic `E+M1+..` has the bases
/// `[E, M1, ..]`.
fn environment_order(
    loaded: &Loaded,
    commit: &CommitRef,
    key: &str,
    synthetic: Option<(&str, &[String])>,
) -> std::result::Result<Vec<EnvNode>, String> {
    let bases_of = |node: &EnvNode| -> std::result::Result<Vec<EnvNode>, String> {
        match node {
            EnvNode::External(..) => Ok(Vec::new()),
            EnvNode::Local(name) if name == key && synthetic.is_some() => {
                let (base, mixins) = synthetic.unwrap_or_default();
                Ok(std::iter::once(base)
                    .chain(mixins.iter().map(String::as_str))
                    .map(|n| EnvNode::Local(n.to_owned()))
                    .collect())
            }
            EnvNode::Local(name) => {
                let Some(declared) = loaded.environments.get(name) else {
                    return Err(format!(
                        "Can't find environment {name} for {commit}. Available: {}",
                        available_environments(loaded)
                    ));
                };
                if declared.value.root.is_some() {
                    return Ok(Vec::new());
                }
                declared
                    .value
                    .bases
                    .iter()
                    .map(|base| match base.split_once('/') {
                        None => Ok(EnvNode::Local(base.clone())),
                        Some((repo, env)) if !env.contains('/') => {
                            Ok(EnvNode::External(repo.to_owned(), env.to_owned()))
                        }
                        Some(_) => Err(format!(
                            "Invalid import {base}: an environment base is 'name' or 'repo/name'"
                        )),
                    })
                    .collect()
            }
        }
    };
    linearize(&EnvNode::Local(key.to_owned()), &bases_of)
}

/// The commit's environment names, for messages.
fn available_environments(loaded: &Loaded) -> String {
    loaded
        .environments
        .keys()
        .cloned()
        .collect::<Vec<_>>()
        .join(",")
}

/// At most one environment of a chain may be a root (have a platform and image).
fn check_single_root(parts: &[(String, EnvPart)]) -> std::result::Result<(), String> {
    let roots: Vec<&str> = parts
        .iter()
        .filter(|(_, p)| match p {
            EnvPart::Local(d) => d.value.root.is_some(),
            EnvPart::External(_) => true,
            EnvPart::ExternalDerived(_) => false,
        })
        .map(|(n, _)| n.as_str())
        .collect();
    if roots.len() > 1 {
        return Err(format!(
            "Can't depend on two different non-import environments: [{}]",
            roots.join(", ")
        ));
    }
    Ok(())
}

/// Merge a chain's variables and dependencies (overlaid from lowest priority to highest)
/// and its `test_stages` (concatenated lowest priority first).
fn merge_chain(
    parts: &[(String, EnvPart)],
) -> (
    BTreeMap<String, String>,
    IndexMap<String, EnvDependency>,
    Vec<Stage>,
) {
    let mut variables: BTreeMap<String, String> = BTreeMap::new();
    let mut dependencies: IndexMap<String, EnvDependency> = IndexMap::new();
    let mut test_stages: Vec<Stage> = Vec::new();
    for (_, part) in parts.iter().rev() {
        match part.contents() {
            Err(d) => {
                for (k, v) in &d.value.variables {
                    variables.insert(k.clone(), v.clone());
                }
                for (k, v) in &d.value.dependencies {
                    dependencies.insert(k.clone(), EnvDependency::Raw(v.clone()));
                }
                test_stages.extend(d.value.test_stages.iter().cloned());
            }
            Ok(env) => {
                for (k, v) in env.variables {
                    variables.insert(k.clone(), v.clone());
                }
                for (k, v) in env.dependencies {
                    dependencies.insert(k.clone(), EnvDependency::Resolved(v.clone()));
                }
                test_stages.extend(env.test_stages.iter().cloned());
            }
        }
    }
    (variables, dependencies, test_stages)
}

/// The derived environments' non-empty setup scripts, base-most first, joined with `\n`.
fn joined_setup_scripts(parts: &[(String, EnvPart)]) -> String {
    let setup_scripts: Vec<&str> = parts
        .iter()
        .filter_map(|(_, p)| match p {
            EnvPart::Local(d)
                if d.value.root.is_none() && !d.value.setup_script_contents.is_empty() =>
            {
                Some(d.value.setup_script_contents.as_str())
            }
            EnvPart::ExternalDerived(env) if !env.setup_script_contents.is_empty() => {
                Some(env.setup_script_contents.as_str())
            }
            _ => None,
        })
        .collect();
    setup_scripts
        .iter()
        .rev()
        .copied()
        .collect::<Vec<_>>()
        .join("\n")
}

fn merge_defaults(parts: &[(String, EnvPart)]) -> EnvironmentDefaults {
    let mut out = EnvironmentDefaults::default();
    for (_, part) in parts {
        let d = match part.contents() {
            Err(declared) => {
                let raw = &declared.value.defaults;
                EnvironmentDefaults {
                    configuration: raw.configuration.clone(),
                    timeout: raw.timeout,
                    min_cores: raw.min_cores,
                    max_cores: raw.max_cores,
                    min_ram_gb: raw.min_ram_gb,
                    min_disk_gb: raw.min_disk_gb,
                    max_retries: raw.max_retries,
                    retry_wait_seconds: raw.retry_wait_seconds,
                }
            }
            Ok(external) => external.defaults.clone(),
        };
        if out.configuration.is_empty() {
            out.configuration = d.configuration;
        }
        for (slot, value) in [
            (&mut out.timeout, d.timeout),
            (&mut out.min_cores, d.min_cores),
            (&mut out.max_cores, d.max_cores),
            (&mut out.min_ram_gb, d.min_ram_gb),
            (&mut out.min_disk_gb, d.min_disk_gb),
            (&mut out.max_retries, d.max_retries),
            (&mut out.retry_wait_seconds, d.retry_wait_seconds),
        ] {
            if *slot == 0 {
                *slot = value;
            }
        }
    }
    out
}

/// Every enabled definition re-enables its internal build dependencies, transitively.
fn reenable_dependencies(state: &mut CommitState) {
    if !state.definitions.values().any(|d| d.disabled) {
        return;
    }
    let mut stack: Vec<String> = state
        .definitions
        .values()
        .filter(|d| !d.disabled && d.kind != DefinitionKind::Deployment)
        .map(|d| d.name.clone())
        .collect();
    let mut seen: HashSet<String> = stack.iter().cloned().collect();
    while let Some(name) = stack.pop() {
        let Some(def) = state.definitions.get(&name) else {
            continue;
        };
        // `all_dependencies` without the copy: the definition's own, then the
        // environment's that it does not override.
        let internal: Vec<String> = def
            .dependencies
            .values()
            .chain(
                def.environment
                    .dependencies
                    .iter()
                    .filter(|(key, _)| !def.dependencies.contains_key(*key))
                    .map(|(_, dep)| dep),
            )
            .filter_map(|dep| match dep {
                ResolvedDependency::Build {
                    defined_in, name, ..
                } if *defined_in == state.commit => Some(name.clone()),
                _ => None,
            })
            .collect();
        for dep in internal {
            if let Some(target) = state.definitions.get_mut(&dep) {
                target.disabled = false;
            }
            if seen.insert(dep.clone()) {
                stack.push(dep);
            }
        }
    }
}
