//! One run from assignment to outcome (see the module docs of [`super`]).

use super::confined::{open_file_beneath, walk_files, ConfinedDir};
use super::container::{run_command, CommandEnd, CommandSpec};
use super::dirs::{join_inside, RunDirs};
use super::docker_proxy::{scoped_docker_for, DockerProxy, CONTAINER_SOCKET};
use super::host::{link_run_root, run_host_command, RUN_ROOT_LINK};
use super::inputs::build_artifact_file;
use super::package::pack_directory_below;
use super::prepare::{
    prepare_environment, substitute, JobShape, PrepareFailure, PreparedEnvironment,
};
use super::results::collect_cases;
use super::{Executor, RunEvent, CLEANUP_TIMEOUT_SECONDS, DEFAULT_TIMEOUT_SECONDS};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use test_looper_artifacts::{sanitize_name, ArtifactKey};
use test_looper_containers::container_labels;
use test_looper_core::definitions::{Artifact, DefinitionKind};
use test_looper_core::protocol::{Assignment, FailureReason, RunOutcome, RunResult};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The run's log: every chunk goes to the event channel (live) and to a file (kept).
struct RunLog {
    events: UnboundedSender<RunEvent>,
    file: Mutex<Option<std::fs::File>>,
}

impl RunLog {
    fn write(&self, text: &str) {
        if text.is_empty() {
            return;
        }
        let _ = self.events.send(RunEvent::Log(text.to_string()));
        if let Ok(mut guard) = self.file.lock() {
            if let Some(file) = guard.as_mut() {
                let _ = file.write_all(text.as_bytes());
            }
        }
    }
}

fn failed(reason: FailureReason, message: impl Into<String>) -> RunResult {
    RunResult::Failed {
        reason,
        message: message.into(),
    }
}

/// Runs `assignment` and returns its outcome. Never panics on bad input: every failure
/// becomes a typed [`RunResult::Failed`].
pub async fn run_assignment(
    executor: &Executor,
    assignment: &Assignment,
    events: UnboundedSender<RunEvent>,
    cancel: CancellationToken,
) -> RunOutcome {
    let run_id = assignment.run_id.as_str();
    if ArtifactKey::run(&assignment.test_hash, run_id, "x").is_err() {
        return RunOutcome {
            result: failed(FailureReason::Infrastructure, "invalid run id or test hash"),
            test_cases: Vec::new(),
            artifacts: Vec::new(),
        };
    }
    let dirs = match RunDirs::create(&executor.storage, run_id) {
        Ok(dirs) => dirs,
        Err(error) => {
            return RunOutcome {
                result: failed(
                    FailureReason::Infrastructure,
                    format!("could not create run directories: {error}"),
                ),
                test_cases: Vec::new(),
                artifacts: Vec::new(),
            }
        }
    };
    let log_path = dirs.root.join("test_looper_log.txt");
    let log = RunLog {
        events,
        file: Mutex::new(std::fs::File::create(&log_path).ok()),
    };
    // Scoped Docker (H5): only when the definition asks for it and the worker allows it; the
    // run's commands then reach the engine only through this proxy.
    let (mut outcome, proxy) =
        match scoped_docker_for(executor, &dirs, &assignment.definition, run_id) {
            Ok(proxy) => {
                let docker_binds: Vec<String> =
                    proxy.iter().map(DockerProxy::container_bind).collect();
                let run = Run {
                    executor,
                    assignment,
                    dirs: &dirs,
                    log: &log,
                    cancel,
                    artifacts: Vec::new(),
                    docker_binds,
                };
                (run.execute().await, proxy)
            }
            Err(message) => (
                RunOutcome {
                    result: failed(FailureReason::Infrastructure, message),
                    test_cases: Vec::new(),
                    artifacts: Vec::new(),
                },
                None,
            ),
        };
    if let Some(proxy) = proxy {
        match proxy.finish(&executor.docker).await {
            Ok(0) => {}
            Ok(removed) => log.write(&format!(
                "removed {removed} container(s) the run started through docker\n"
            )),
            Err(error) => log.write(&format!(
                "could not remove containers the run started through docker: {error}\n"
            )),
        }
    }
    if let RunResult::Failed { message, .. } = &outcome.result {
        log.write(&format!("\nrun failed: {message}\n"));
    } else {
        log.write("\nrun passed\n");
    }
    if let Ok(mut guard) = log.file.lock() {
        guard.take();
    }
    // The full log is kept with the run's artifacts.
    match ArtifactKey::run(&assignment.test_hash, run_id, "test_looper_log.txt") {
        Ok(key) => {
            if let Err(error) = executor.store.put_file(&key, &log_path).await {
                tracing::warn!(%error, run_id, "could not store the run log");
            }
        }
        Err(error) => tracing::warn!(%error, "invalid log key"),
    }
    if let Err(error) = super::dirs::remove_tree(&dirs.root) {
        tracing::warn!(%error, path = %dirs.root.display(), "could not remove run directory");
    }
    outcome.test_cases.sort_by(|a, b| a.name.cmp(&b.name));
    outcome
}

struct Run<'a> {
    executor: &'a Executor,
    assignment: &'a Assignment,
    dirs: &'a RunDirs,
    log: &'a RunLog,
    cancel: CancellationToken,
    artifacts: Vec<String>,
    /// Bind of the scoped Docker socket (empty when the proxy could not start).
    docker_binds: Vec<String>,
}

impl Run<'_> {
    fn log(&self, text: &str) {
        self.log.write(text);
    }

    fn outcome(&mut self, result: RunResult) -> RunOutcome {
        RunOutcome {
            result,
            test_cases: Vec::new(),
            artifacts: std::mem::take(&mut self.artifacts),
        }
    }

    async fn execute(mut self) -> RunOutcome {
        let definition = &self.assignment.definition;
        let is_build = definition.kind == DefinitionKind::Build;
        if definition.kind == DefinitionKind::Deployment {
            return self.outcome(failed(
                FailureReason::EnvironmentError,
                "deployments are not runs",
            ));
        }

        // A build whose every artifact is already stored is done.
        if is_build
            && !self.assignment.artifacts.is_empty()
            && self.all_build_artifacts_exist().await
        {
            self.log("Build already exists\n");
            for name in self.assignment.artifacts.clone() {
                self.report_artifact(&name);
            }
            return self.outcome(RunResult::Passed);
        }

        let log_fn = |text: &str| self.log.write(text);
        let shape = JobShape {
            id: &self.assignment.run_id,
            cores: self.assignment.cores,
            ram_gb: self.assignment.ram_gb,
        };
        let PreparedEnvironment {
            image,
            env,
            vm_setup_script,
        } = match prepare_environment(self.executor, definition, self.dirs, shape, &log_fn).await {
            Ok(prepared) => prepared,
            Err(PrepareFailure { reason, message }) => {
                return self.outcome(failed(reason, message))
            }
        };
        self.log(&preamble(&env, &image));
        if let Err(error) = write_scripts(self.dirs, &definition.stages, &env, &vm_setup_script) {
            return self.outcome(failed(
                FailureReason::Infrastructure,
                format!("could not write the run's scripts: {error}"),
            ));
        }

        let timeout = match (self.assignment.timeout_seconds, definition.timeout) {
            (0, 0) => DEFAULT_TIMEOUT_SECONDS,
            (0, t) | (t, _) => t,
        };
        let deadline = Instant::now() + Duration::from_secs(timeout);
        if vm_setup_script.is_some() {
            if let Err(message) = self.set_up_vm(&env, deadline).await {
                return self.outcome(failed(FailureReason::EnvironmentError, message));
            }
        }
        let labels = container_labels(
            &self.executor.scope,
            &self.executor.machine_id,
            &self.assignment.run_id,
            &HashMap::new(),
        );

        let mut result = RunResult::Passed;
        let stages = definition.stages.clone();
        for (index, stage) in stages.iter().enumerate() {
            let mut stage_failure: Option<RunResult> = None;
            if !stage.command.trim().is_empty() {
                self.log(&format!(
                    "\n## stage {}: {}\n",
                    index + 1,
                    stage.command.trim()
                ));
                let end = self
                    .command(&image, &env, &labels, "cmd", index, deadline)
                    .await;
                stage_failure = self.judge(end, index, "command", timeout, is_build);
            }
            if !stage.cleanup.trim().is_empty() {
                self.log(&format!(
                    "\n## stage {} cleanup: {}\n",
                    index + 1,
                    stage.cleanup.trim()
                ));
                let cleanup_deadline =
                    Instant::now() + Duration::from_secs(CLEANUP_TIMEOUT_SECONDS);
                let end = self
                    .command(&image, &env, &labels, "cleanup", index, cleanup_deadline)
                    .await;
                let cleanup_failure =
                    self.judge(end, index, "cleanup", CLEANUP_TIMEOUT_SECONDS, is_build);
                stage_failure = stage_failure.or(cleanup_failure);
            }
            let upload = if is_build {
                stage_failure.is_none()
            } else {
                true
            };
            if upload {
                for artifact in &stage.artifacts {
                    if let Err(message) = self.upload_artifact(artifact, &env, is_build).await {
                        stage_failure.get_or_insert(failed(FailureReason::Infrastructure, message));
                        break;
                    }
                }
            }
            if let Some(failure) = stage_failure {
                result = failure;
                break;
            }
        }

        let mut test_cases = Vec::new();
        if !is_build {
            self.keep_output_files().await;
            let dirs = self.dirs.clone();
            let report =
                collect_cases(&self.dirs.root, &self.dirs.output(), &|p| dirs.host_path(p));
            for note in &report.notes {
                self.log(&format!("{note}\n"));
            }
            for (case, path) in &report.logs {
                let file = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "log".into());
                let name = format!("individual_test_logs/{}/{}", sanitize_name(case), file);
                if let Err(message) = self.store_run_file(&name, path).await {
                    self.log(&format!("could not store log of {case}: {message}\n"));
                }
            }
            test_cases = report.cases;
        }
        let mut outcome = self.outcome(result);
        outcome.test_cases = test_cases;
        outcome
    }

    async fn all_build_artifacts_exist(&self) -> bool {
        let definition = &self.assignment.definition;
        for name in &self.assignment.artifacts {
            let file = build_artifact_file(&definition.name, name);
            match ArtifactKey::build(&self.assignment.test_hash, &file) {
                Ok(key) => match self.executor.store.exists(&key).await {
                    Ok(true) => {}
                    _ => return false,
                },
                Err(_) => return false,
            }
        }
        true
    }

    fn report_artifact(&mut self, name: &str) {
        self.artifacts.push(name.to_string());
        let _ = self
            .log
            .events
            .send(RunEvent::ArtifactUploaded(name.to_string()));
    }

    #[allow(clippy::too_many_arguments)]
    async fn command(
        &self,
        image: &str,
        env: &BTreeMap<String, String>,
        labels: &HashMap<String, String>,
        what: &str,
        index: usize,
        deadline: Instant,
    ) -> Result<CommandEnd, String> {
        let mut env = env.clone();
        if !self.docker_binds.is_empty() {
            env.insert("DOCKER_HOST".into(), format!("unix://{CONTAINER_SOCKET}"));
        }
        let spec = CommandSpec {
            image,
            script_name: &script_name(what, index),
            env: &env,
            labels,
            extra_binds: &self.docker_binds,
            name: format!(
                "{}_{}_{}_{what}{index}",
                self.executor.scope, self.executor.machine_id, self.assignment.run_id
            ),
            cores: self.assignment.cores,
            ram_gb: self.assignment.ram_gb,
            deadline,
            sandbox: &self.executor.sandbox,
        };
        let log_fn = |text: &str| self.log.write(text);
        if self.executor.vm_ami.is_some() {
            return run_host_command(spec.script_name, spec.env, deadline, &log_fn, &self.cancel)
                .await
                .map_err(|e| e.to_string());
        }
        run_command(
            &self.executor.docker,
            self.dirs,
            spec,
            &log_fn,
            &self.cancel,
        )
        .await
        .map_err(|e| e.to_string())
    }

    /// On a one-shot VM: links `/test_looper` to the run's directory and runs the
    /// environment's setup script (when it has one) before the job.
    async fn set_up_vm(
        &self,
        env: &BTreeMap<String, String>,
        deadline: Instant,
    ) -> Result<(), String> {
        link_run_root(self.dirs).map_err(|e| format!("could not link {RUN_ROOT_LINK}: {e}"))?;
        if !self.dirs.command().join(VM_SETUP_SCRIPT).exists() {
            return Ok(());
        }
        self.log("\n## the environment's setup script\n");
        let log_fn = |text: &str| self.log.write(text);
        match run_host_command(VM_SETUP_SCRIPT, env, deadline, &log_fn, &self.cancel).await {
            Ok(CommandEnd::Exited(0)) => Ok(()),
            Ok(CommandEnd::Exited(code)) => Err(format!("the setup script exited with {code}")),
            Ok(CommandEnd::TimedOut) => Err("the setup script timed out".into()),
            Ok(CommandEnd::Cancelled) => Err("cancelled during the setup script".into()),
            Err(error) => Err(format!("could not run the setup script: {error}")),
        }
    }

    /// Turns how a command ended into a failure (or `None` for exit code 0).
    fn judge(
        &self,
        end: Result<CommandEnd, String>,
        index: usize,
        what: &str,
        timeout: u64,
        is_build: bool,
    ) -> Option<RunResult> {
        let stage = index + 1;
        match end {
            Ok(CommandEnd::Exited(0)) => {
                self.log(&format!("exit code 0 ({what} of stage {stage})\n"));
                None
            }
            Ok(CommandEnd::Exited(code)) => {
                self.log(&format!("exit code {code} ({what} of stage {stage})\n"));
                let reason = if is_build {
                    FailureReason::BuildError
                } else {
                    FailureReason::TestFailure
                };
                Some(failed(
                    reason,
                    format!("exit code {code} in the {what} of stage {stage}"),
                ))
            }
            Ok(CommandEnd::TimedOut) => {
                self.log(&format!(
                    "timed out after {timeout} s ({what} of stage {stage})\n"
                ));
                Some(failed(
                    FailureReason::Timeout,
                    format!("timed out after {timeout} s in the {what} of stage {stage}"),
                ))
            }
            Ok(CommandEnd::Cancelled) => {
                self.log("cancelled\n");
                Some(failed(FailureReason::Infrastructure, "cancelled"))
            }
            Err(message) => {
                self.log(&format!("docker: {message}\n"));
                Some(failed(
                    FailureReason::Infrastructure,
                    format!("docker: {message}"),
                ))
            }
        }
    }

    /// Packs one declared artifact, stores it and reports it.
    async fn upload_artifact(
        &mut self,
        artifact: &Artifact,
        env: &BTreeMap<String, String>,
        is_build: bool,
    ) -> Result<(), String> {
        let default_dir = if is_build {
            self.dirs.build_output()
        } else {
            self.dirs.output()
        };
        let directory = substitute(&artifact.directory, env);
        let host_dir = if directory.starts_with('/') {
            self.dirs.host_path(&directory).ok_or_else(|| {
                format!("artifact directory {directory} is not under a mounted directory")
            })?
        } else {
            join_inside(&default_dir, &directory).ok_or_else(|| {
                format!("artifact directory {directory} leaves the output directory")
            })?
        };
        let definition = &self.assignment.definition;
        let file = build_artifact_file(&definition.name, &artifact.name);
        let tarball = self.dirs.packages().join(&file);
        let (include, exclude) = (
            artifact.include_patterns.clone(),
            artifact.exclude_patterns.clone(),
        );
        let relative = host_dir
            .strip_prefix(&self.dirs.root)
            .map_err(|_| format!("artifact directory {directory} is outside the run directory"))?
            .to_path_buf();
        let (root, dest) = (self.dirs.root.clone(), tarball.clone());
        let count = tokio::task::spawn_blocking(move || {
            pack_directory_below(&root, &relative, &include, &exclude, &dest)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("pack {directory}: {e}"))?;
        if std::fs::symlink_metadata(&host_dir).is_err() {
            self.log(&format!("warning: artifact directory {directory} does not exist; storing an empty artifact\n"));
        }
        let key = if is_build {
            ArtifactKey::build(&self.assignment.test_hash, &file)
        } else {
            ArtifactKey::run(&self.assignment.test_hash, &self.assignment.run_id, &file)
        }
        .map_err(|e| e.to_string())?;
        let size = self
            .executor
            .store
            .put_file(&key, &tarball)
            .await
            .map_err(|e| format!("store artifact {file}: {e}"))?;
        let _ = std::fs::remove_file(&tarball);
        let shown = if artifact.name.is_empty() {
            "(unnamed)"
        } else {
            &artifact.name
        };
        self.log(&format!(
            "uploaded artifact {shown}: {count} files, {size} bytes\n"
        ));
        self.report_artifact(&artifact.name);
        Ok(())
    }

    /// Stores every regular file of `TEST_OUTPUT_DIR` as `output/<relative path>` (links and
    /// special files are skipped, never followed).
    async fn keep_output_files(&self) {
        let mut found: Vec<std::path::PathBuf> = Vec::new();
        let walked = ConfinedDir::open_root(&self.dirs.root).and_then(|root| {
            walk_files(&root, Path::new("output"), &mut |path, _| {
                found.push(path.to_path_buf())
            })
        });
        if let Err(error) = walked {
            self.log(&format!("could not list the output directory: {error}\n"));
        }
        let root = self.dirs.output();
        for relative in found {
            let name = format!("output/{}", relative.to_string_lossy().replace('\\', "/"));
            if let Err(message) = self.store_run_file(&name, &root.join(&relative)).await {
                self.log(&format!("could not keep {name}: {message}\n"));
            }
        }
    }

    /// Stores the file at host path `path` (below the run's directory, reached through no
    /// link) as the run artifact `name`.
    async fn store_run_file(&self, name: &str, path: &Path) -> Result<(), String> {
        let key = ArtifactKey::run(&self.assignment.test_hash, &self.assignment.run_id, name)
            .map_err(|e| e.to_string())?;
        let file = open_file_beneath(&self.dirs.root, path).map_err(|e| e.to_string())?;
        self.executor
            .store
            .put_reader(&key, Box::pin(tokio::fs::File::from_std(file)))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The script of stage `index`'s command (`cmd`) or cleanup (`cleanup`).
fn script_name(what: &str, index: usize) -> String {
    format!("{what}_{index}.sh")
}

/// Writes every stage's command and cleanup script into `command/`, before the run's first
/// container starts (the directory is mounted read-only, so nothing can be planted there).
/// The name of a one-shot VM's setup script under `command/`.
const VM_SETUP_SCRIPT: &str = "vm_setup.sh";

fn write_scripts(
    dirs: &RunDirs,
    stages: &[test_looper_core::definitions::Stage],
    env: &BTreeMap<String, String>,
    vm_setup_script: &Option<String>,
) -> Result<(), super::confined::ConfinedError> {
    let scripts = ConfinedDir::open_root(&dirs.command())?;
    if let Some(setup) = vm_setup_script.as_ref().filter(|s| !s.trim().is_empty()) {
        scripts.create_file(VM_SETUP_SCRIPT, setup.as_bytes(), 0o644)?;
    }
    for (index, stage) in stages.iter().enumerate() {
        for (what, text) in [("cmd", &stage.command), ("cleanup", &stage.cleanup)] {
            if !text.trim().is_empty() {
                let script = substitute(text, env);
                scripts.create_file(&script_name(what, index), script.as_bytes(), 0o644)?;
            }
        }
    }
    Ok(())
}

/// The header of the run's log: image and variables.
fn preamble(env: &BTreeMap<String, String>, image: &str) -> String {
    let mut text =
        format!("image: {image}\nworking directory: /test_looper/test_inputs\nvariables:\n");
    for (name, value) in env {
        text.push_str(&format!("  {name}={value}\n"));
    }
    text
}
