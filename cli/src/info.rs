//! `tl info [--json] [--repos DIR] [--repo-name NAME] [GLOB]`: resolve the definitions file at
//! HEAD of the git checkout `tl` runs in and print every resolved item matching GLOB.
//!
//! **JSON shape** (`--json`, stable): the serde encoding of
//! `test_looper_core::definitions::ResolvedCommit` with `definitions` filtered by GLOB:
//! `{commit: {repo, commit}, definitions_path, head_placeholder, repos: {name: {kind:
//! fixed|pin|import, reference: {repo, commit}, ...}}, environments: {name: Environment},
//! derived_environments: {name: {name, inheritance, variables, dependencies, defaults,
//! test_stages, setup_script_contents}} (the rootless environments, i.e. mixins other
//! commits can use as `base: repo/name`; omitted when there are none),
//! definitions: {name: {name, kind: build|test|deployment, hash, project, configuration,
//! environment: {name, mixins, inheritance, platform: linux|windows, image: {kind: docker,
//! dockerfile_contents, dockerfile} | {kind: ami, base_ami, setup_script_contents}, variables,
//! dependencies, defaults, test_stages, hash}, dependencies: {input: {kind: source, repo,
//! commit, path} | {kind: build, defined_in: {repo, commit}, name, hash, artifact}},
//! variables, stages: [{command, cleanup, order, artifacts: [{name, directory,
//! include_patterns, exclude_patterns, format}]}], timeout, min_cores, max_cores,
//! min_ram_gb, min_disk_gb, max_retries, retry_wait_seconds, disabled, port_expose}}, prioritize}`.
//! On failure: `{"error": {kind: pending|invalid, ...}}` and exit status 1.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use test_looper_core::definitions::glob::fnmatch;
use test_looper_core::definitions::{
    resolve_commit, CommitRef, Image, ResolvedCommit, ResolvedDefinition, ResolvedDependency,
};
use test_looper_git::DefinitionsCaches;

use crate::repos::ReposDir;

/// Arguments of `tl info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Directory holding referenced repos by name (`DIR/<name>`; names may contain `/`).
    #[arg(long)]
    pub repos: Option<PathBuf>,
    /// Repo name of the checkout itself (default: its directory name).
    #[arg(long)]
    pub repo_name: Option<String>,
    /// Only items whose name matches this glob (`*` matches `/` too).
    pub glob: Option<String>,
}

/// Run `tl info`; returns the process exit status.
pub fn run(args: &InfoArgs) -> Result<i32> {
    let cwd = std::env::current_dir().context("current directory")?;
    let repo =
        git2::Repository::discover(&cwd).context("tl info must run inside a git checkout")?;
    let head = repo
        .head()
        .context("reading HEAD")?
        .peel_to_commit()
        .context("HEAD is not a commit")?;
    let workdir = repo.workdir().map(PathBuf::from).unwrap_or(cwd);
    let name = match &args.repo_name {
        Some(name) => name.clone(),
        None => workdir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "HEAD".to_owned()),
    };
    let target = CommitRef::new(&name, head.id().to_string());
    drop(head);
    let repos = ReposDir::new(args.repos.clone());
    let caches = DefinitionsCaches::new();
    let source = repos.source(&caches, &name, repo);
    match resolve_commit(&target, &source) {
        Ok(mut resolved) => {
            if let Some(glob) = &args.glob {
                resolved.definitions.retain(|name, _| fnmatch(glob, name));
            }
            let text = if args.json {
                format!("{}\n", serde_json::to_string_pretty(&resolved)?)
            } else {
                render_text(&resolved)
            };
            write_stdout(&text)?;
            Ok(0)
        }
        Err(error) => {
            if args.json {
                let text = serde_json::to_string_pretty(&serde_json::json!({ "error": error }))?;
                write_stdout(&format!("{text}\n"))?;
            } else {
                eprintln!("error: {error}");
            }
            Ok(1)
        }
    }
}

/// Write to stdout; a closed pipe (`tl info | head`) is not an error.
fn write_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// The human-readable listing.
pub fn render_text(resolved: &ResolvedCommit) -> String {
    let mut out = String::new();
    let path = resolved
        .definitions_path
        .as_deref()
        .unwrap_or("(no definitions file)");
    out.push_str(&format!("{} {path}\n", resolved.commit));
    if resolved.head_placeholder {
        out.push_str("a repo reference is the HEAD placeholder: no items\n");
    }
    for (name, reference) in &resolved.repos {
        out.push_str(&format!("repo {name}: {}\n", reference.reference()));
    }
    for definition in resolved.definitions.values() {
        out.push('\n');
        render_definition(&mut out, definition);
    }
    out
}

fn render_definition(out: &mut String, d: &ResolvedDefinition) {
    let kind = format!("{:?}", d.kind).to_lowercase();
    out.push_str(&format!("{kind} {}\n", d.name));
    out.push_str(&format!("  hash: {}\n", d.hash));
    out.push_str(&format!(
        "  project: {}  configuration: {}\n",
        d.project, d.configuration
    ));
    let env = &d.environment;
    let image = match &env.image {
        Image::Docker {
            dockerfile: Some(path),
            ..
        } => format!("docker (Dockerfile {path})"),
        Image::Docker {
            dockerfile_contents,
            ..
        } => {
            format!(
                "docker ({} lines of Dockerfile)",
                dockerfile_contents.lines().count()
            )
        }
        Image::Ami { base_ami, .. } => format!("ami {base_ami}"),
    };
    let mixins = if env.mixins.is_empty() {
        String::new()
    } else {
        format!(" + {}", env.mixins.join(" + "))
    };
    out.push_str(&format!(
        "  environment: {}{mixins}  inheritance: [{}]  platform: {:?}  image: {image}\n",
        env.name,
        env.inheritance.join(", "),
        env.platform
    ));
    let deps = d.all_dependencies();
    if !deps.is_empty() {
        out.push_str("  dependencies:\n");
        for (key, dep) in &deps {
            let text = match dep {
                ResolvedDependency::Source { repo, commit, path } if path.is_empty() => {
                    format!("source {repo}/{commit}")
                }
                ResolvedDependency::Source { repo, commit, path } => {
                    format!("source {repo}/{commit}:{path}")
                }
                ResolvedDependency::Build {
                    defined_in,
                    name,
                    hash,
                    artifact,
                } => {
                    let artifact = if artifact.is_empty() {
                        String::new()
                    } else {
                        format!(" artifact {artifact}")
                    };
                    format!("build {defined_in}/{name}{artifact} ({hash})")
                }
            };
            out.push_str(&format!("    {key}: {text}\n"));
        }
    }
    if !d.variables.is_empty() {
        out.push_str("  variables:\n");
        for (k, v) in &d.variables {
            out.push_str(&format!("    {k}={v}\n"));
        }
    }
    for (i, stage) in d.stages.iter().enumerate() {
        out.push_str(&format!("  stage {i} (order {}):\n", stage.order));
        for line in stage.command.lines() {
            out.push_str(&format!("    $ {line}\n"));
        }
        if !stage.cleanup.is_empty() {
            out.push_str(&format!(
                "    cleanup: {}\n",
                stage.cleanup.replace('\n', "; ")
            ));
        }
        for artifact in &stage.artifacts {
            let name = if artifact.name.is_empty() {
                "(unnamed)"
            } else {
                &artifact.name
            };
            out.push_str(&format!(
                "    artifact {name}: directory {:?} include {:?} exclude {:?} {:?}\n",
                artifact.directory,
                artifact.include_patterns,
                artifact.exclude_patterns,
                artifact.format
            ));
        }
    }
    out.push_str(&format!(
        "  timeout: {}s  cores: {}..{}  ram: {} GB  disk: {} GB  retries: {}  retry wait: {}s  disabled: {}\n",
        d.timeout, d.min_cores, d.max_cores, d.min_ram_gb, d.min_disk_gb, d.max_retries, d.retry_wait_seconds, d.disabled
    ));
    if !d.port_expose.is_empty() {
        let ports: Vec<String> = d
            .port_expose
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push_str(&format!("  ports: {}\n", ports.join(", ")));
    }
}
