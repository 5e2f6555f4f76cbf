//! One deployment from assignment to exit: the environment is prepared exactly like a run's
//! (fresh directories, scoped Docker, image, dependencies, variables), then ONE container with
//! a TTY runs the definition's stages (a deployment's optional `command`; a build's or test's
//! commands are only written out, not run) and hands over an interactive shell (`bash -i`, or
//! `sh -i` when the image has no bash) in `TEST_INPUTS` with the job's variables. Declared
//! `portExpose` ports are published on 127.0.0.1.
//!
//! Everything the user should see goes into one byte stream ([`DeploymentEvent::Output`]):
//! `TestLooper> ` banners (progress, published ports, errors with their reason) and the TTY's
//! raw output. Input and resizes arrive on a channel; a shutdown is a cancellation token. The
//! container, its scoped-Docker siblings and its directory are removed on every path.

use super::confined::ConfinedDir;
use super::dirs::{remove_tree, RunDirs};
use super::docker_proxy::{scoped_docker_for, DockerProxy, CONTAINER_SOCKET};
use super::prepare::{prepare_environment, substitute, JobShape, PreparedEnvironment};
use super::tty_container::{PublishedPort, TtyContainer, TtyEnd, TtySpec};
use super::Executor;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use test_looper_artifacts::ArtifactKey;
use test_looper_containers::container_labels;
use test_looper_core::definitions::{DefinitionKind, Stage};
use test_looper_core::protocol::{DeploymentAssignment, TerminalInput};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio_util::sync::CancellationToken;

/// Working directory of the shell (the runtime contract's `TEST_INPUTS`).
const WORKING_DIR: &str = "/test_looper/test_inputs";
/// Container path of the scripts directory.
const COMMAND_DIR: &str = "/test_looper/command";
/// Prefix of every line the worker itself writes into the terminal.
pub const BANNER_PREFIX: &str = "TestLooper> ";

/// What a deployment reports while it is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeploymentEvent {
    /// The next bytes of the terminal stream (banners and the TTY's output), in order.
    Output(Vec<u8>),
}

/// How a deployment ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeploymentEnd {
    /// The container's process (the shell) ended, with its exit code when known.
    Exited { code: Option<i64> },
    /// Stopped because a shutdown was requested.
    ShutDown,
    /// The environment could not be prepared or the container could not start.
    Failed { message: String },
}

impl DeploymentEnd {
    /// Whether the server must be told that the deployment exited (it did not ask for it).
    pub fn reports_exit(&self) -> bool {
        !matches!(self, DeploymentEnd::ShutDown)
    }
}

/// Writes the worker's own messages into the terminal stream: each line prefixed with
/// [`BANNER_PREFIX`], line ends as `\r\n` (the browser terminal is raw).
struct Banners {
    events: UnboundedSender<DeploymentEvent>,
    at_line_start: Mutex<bool>,
}

impl Banners {
    fn new(events: UnboundedSender<DeploymentEvent>) -> Self {
        Self {
            events,
            at_line_start: Mutex::new(true),
        }
    }

    /// Progress text as it comes (may be partial lines).
    fn write(&self, text: &str) {
        if text.is_empty() {
            return;
        }
        let mut out = String::with_capacity(text.len() + 16);
        let mut at_line_start = self.at_line_start.lock().unwrap_or_else(|e| e.into_inner());
        for piece in text.split_inclusive('\n') {
            if *at_line_start {
                out.push_str(BANNER_PREFIX);
            }
            match piece.strip_suffix('\n') {
                Some(line) => {
                    out.push_str(line.strip_suffix('\r').unwrap_or(line));
                    out.push_str("\r\n");
                    *at_line_start = true;
                }
                None => {
                    out.push_str(piece);
                    *at_line_start = false;
                }
            }
        }
        let _ = self.events.send(DeploymentEvent::Output(out.into_bytes()));
    }

    /// One whole line.
    fn line(&self, text: &str) {
        let at_line_start = *self.at_line_start.lock().unwrap_or_else(|e| e.into_inner());
        let lead = if at_line_start { "" } else { "\n" };
        self.write(&format!("{lead}{text}\n"));
    }

    /// The TTY's own output, as it is (a banner after it starts on a fresh line).
    fn raw(&self, bytes: Vec<u8>) {
        if let Some(last) = bytes.last() {
            *self.at_line_start.lock().unwrap_or_else(|e| e.into_inner()) = *last == b'\n';
        }
        let _ = self.events.send(DeploymentEvent::Output(bytes));
    }
}

/// Runs `assignment` until its shell exits, `shutdown` fires, or it fails to start. Output goes
/// to `events`; `controls` carries keystrokes and resizes (queued until the shell is up).
pub async fn run_deployment(
    executor: &Executor,
    assignment: &DeploymentAssignment,
    events: UnboundedSender<DeploymentEvent>,
    mut controls: UnboundedReceiver<TerminalInput>,
    shutdown: CancellationToken,
) -> DeploymentEnd {
    let banners = Banners::new(events);
    let id = assignment.deployment_id.as_str();
    banners.line(&format!(
        "machine {} accepting deployment {id}",
        executor.machine_id
    ));
    let definition = &assignment.definition;
    banners.line(&format!(
        "{} {} of {} at {}",
        kind_name(definition.kind),
        definition.name,
        assignment.source.repo,
        assignment.source.commit
    ));
    if ArtifactKey::run(&assignment.test_hash, id, "x").is_err() {
        return failed(&banners, "invalid deployment id or test hash".into());
    }
    let dirs = match RunDirs::create(&executor.storage, id) {
        Ok(dirs) => dirs,
        Err(error) => {
            return failed(
                &banners,
                format!("could not create the deployment's directories: {error}"),
            )
        }
    };
    // Scoped Docker (H5): only when the definition asks for it and the worker allows it.
    let proxy = match scoped_docker_for(executor, &dirs, definition, id) {
        Ok(proxy) => proxy,
        Err(message) => {
            if let Err(error) = remove_tree(&dirs.root) {
                tracing::warn!(%error, path = %dirs.root.display(), "could not remove deployment directory");
            }
            return failed(&banners, message);
        }
    };
    let end = Deployment {
        executor,
        assignment,
        dirs: &dirs,
        banners: &banners,
        docker_binds: proxy.iter().map(DockerProxy::container_bind).collect(),
    }
    .boot_and_serve(&mut controls, &shutdown)
    .await;
    if let Some(proxy) = proxy {
        match proxy.finish(&executor.docker).await {
            Ok(0) => {}
            Ok(removed) => banners.line(&format!(
                "removed {removed} container(s) the deployment started through docker"
            )),
            Err(error) => banners.line(&format!(
                "could not remove containers the deployment started through docker: {error}"
            )),
        }
    }
    if let Err(error) = remove_tree(&dirs.root) {
        tracing::warn!(%error, path = %dirs.root.display(), "could not remove deployment directory");
    }
    match &end {
        DeploymentEnd::Exited { code } => banners.line(&format!(
            "the shell exited{}; deployment {id} is over",
            code.map(|c| format!(" with code {c}")).unwrap_or_default()
        )),
        DeploymentEnd::ShutDown => banners.line(&format!("deployment {id} was shut down")),
        DeploymentEnd::Failed { .. } => {}
    }
    end
}

fn failed(banners: &Banners, message: String) -> DeploymentEnd {
    banners.line(&format!("error: {message}"));
    DeploymentEnd::Failed { message }
}

fn kind_name(kind: DefinitionKind) -> &'static str {
    match kind {
        DefinitionKind::Build => "build",
        DefinitionKind::Test => "test",
        DefinitionKind::Deployment => "deployment",
    }
}

struct Deployment<'a> {
    executor: &'a Executor,
    assignment: &'a DeploymentAssignment,
    dirs: &'a RunDirs,
    banners: &'a Banners,
    /// Bind of the scoped Docker socket (empty when the proxy could not start).
    docker_binds: Vec<String>,
}

impl Deployment<'_> {
    async fn boot_and_serve(
        &self,
        controls: &mut UnboundedReceiver<TerminalInput>,
        shutdown: &CancellationToken,
    ) -> DeploymentEnd {
        let definition = &self.assignment.definition;
        let id = &self.assignment.deployment_id;
        self.banners
            .line("preparing the environment: image, dependencies, variables");
        let log = |text: &str| self.banners.write(text);
        let shape = JobShape {
            id,
            cores: self.assignment.cores,
            ram_gb: self.assignment.ram_gb,
        };
        let prepared = tokio::select! {
            prepared = prepare_environment(self.executor, definition, self.dirs, shape, &log) => prepared,
            _ = shutdown.cancelled() => return DeploymentEnd::ShutDown,
        };
        let PreparedEnvironment {
            image,
            mut env,
            vm_setup_script,
        } = match prepared {
            Ok(prepared) => prepared,
            Err(failure) => return failed(self.banners, failure.message),
        };
        if vm_setup_script.is_some() {
            return failed(
                self.banners,
                "deployments of VM environments are not served: a one-shot VM runs builds and tests only"
                    .into(),
            );
        }
        if !self.docker_binds.is_empty() {
            env.insert("DOCKER_HOST".into(), format!("unix://{CONTAINER_SOCKET}"));
        }
        let script = match self.write_scripts(&env) {
            Ok(script) => script,
            Err(error) => {
                return failed(
                    self.banners,
                    format!("could not write the deployment's scripts: {error}"),
                )
            }
        };
        self.banners
            .line(&format!("starting a container of {image}"));
        let labels = container_labels(
            &self.executor.scope,
            &self.executor.machine_id,
            id,
            &HashMap::new(),
        );
        let spec = TtySpec {
            image: &image,
            cmd: vec!["sh".into(), format!("{COMMAND_DIR}/{script}")],
            env: &env,
            labels: &labels,
            binds: self
                .dirs
                .binds()
                .into_iter()
                .chain(self.docker_binds.iter().cloned())
                .collect(),
            working_dir: WORKING_DIR,
            name: format!(
                "{}_{}_{id}_shell",
                self.executor.scope, self.executor.machine_id
            ),
            cores: self.assignment.cores,
            ram_gb: self.assignment.ram_gb,
            ports: definition
                .port_expose
                .iter()
                .map(|(name, port)| (name.clone(), *port))
                .collect(),
            sandbox: &self.executor.sandbox,
        };
        let started = tokio::select! {
            started = TtyContainer::start(&self.executor.docker, spec) => started,
            _ = shutdown.cancelled() => return DeploymentEnd::ShutDown,
        };
        let (mut container, ports) = match started {
            Ok(started) => started,
            Err(error) => {
                return failed(
                    self.banners,
                    format!("the deployment's container did not start: {error}"),
                )
            }
        };
        for port in &ports {
            self.banners.line(&port_banner(port));
        }
        let sink = |bytes: Vec<u8>| self.banners.raw(bytes);
        let end = container.serve(&sink, controls, shutdown).await;
        container.remove().await;
        match end {
            TtyEnd::Exited(code) => DeploymentEnd::Exited { code },
            TtyEnd::ShutDown => DeploymentEnd::ShutDown,
        }
    }

    /// Writes one script per stage command and cleanup, and the container's entry script that
    /// runs them (deployments only) and then execs the interactive shell, before the container
    /// starts (`command/` is mounted read-only); returns the entry script's name.
    fn write_scripts(
        &self,
        env: &BTreeMap<String, String>,
    ) -> Result<String, super::confined::ConfinedError> {
        let definition = &self.assignment.definition;
        let command_dir = ConfinedDir::open_root(&self.dirs.command())?;
        let mut scripts = Vec::new();
        for (index, stage) in definition.stages.iter().enumerate() {
            for (what, text) in [("command", &stage.command), ("cleanup", &stage.cleanup)] {
                if text.trim().is_empty() {
                    continue;
                }
                let name = format!("stage_{}_{what}.sh", index + 1);
                let mut script = substitute(text, env);
                if !script.ends_with('\n') {
                    script.push('\n');
                }
                command_dir.create_file(&name, script.as_bytes(), 0o644)?;
                scripts.push(name);
            }
        }
        let run_stages = definition.kind == DefinitionKind::Deployment;
        let entry = entry_script(&definition.stages, run_stages, &scripts);
        let name = "deployment_shell.sh".to_string();
        command_dir.create_file(&name, entry.as_bytes(), 0o644)?;
        Ok(name)
    }
}

fn port_banner(port: &PublishedPort) -> String {
    match &port.host {
        Some(host) => format!(
            "port {} ({}/tcp) is published at {host}",
            port.name, port.container_port
        ),
        None => format!(
            "port {} ({}/tcp) could not be published",
            port.name, port.container_port
        ),
    }
}

/// Single-quotes `text` for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The first line of a command, for banners.
fn headline(command: &str) -> String {
    let trimmed = command.trim();
    let first = trimmed.lines().next().unwrap_or_default();
    if first.len() < trimmed.len() {
        format!("{first} …")
    } else {
        first.to_string()
    }
}

/// The POSIX `sh` entry script: run the stages (when `run_stages`; a failing stage stops
/// the rest but still opens the shell), then replace itself with the interactive shell.
fn entry_script(stages: &[Stage], run_stages: bool, scripts: &[String]) -> String {
    let mut text = String::from(concat!(
        "# Written by test-looper: runs the deployment's stages, then opens a shell.\n",
        "cd /test_looper/test_inputs || exit 1\n",
        "if command -v bash >/dev/null 2>&1; then TL_SHELL=bash; else TL_SHELL=sh; fi\n",
        "tl_status=0\n",
    ));
    let say = |text: &mut String, line: &str| {
        text.push_str(&format!(
            "echo {}\n",
            shell_quote(&format!("{BANNER_PREFIX}{line}"))
        ));
    };
    if run_stages {
        for (index, stage) in stages.iter().enumerate() {
            let number = index + 1;
            for (what, command) in [("command", &stage.command), ("cleanup", &stage.cleanup)] {
                let name = format!("stage_{number}_{what}.sh");
                if !scripts.contains(&name) {
                    continue;
                }
                let guard = if what == "command" {
                    "[ $tl_status -eq 0 ] && "
                } else {
                    ""
                };
                text.push_str(&format!("if {guard}true; then\n"));
                say(
                    &mut text,
                    &format!("stage {number} {what}: {}", headline(command)),
                );
                text.push_str(&format!(
                    "  \"$TL_SHELL\" {COMMAND_DIR}/{name}; tl_code=$?\n  echo \"{BANNER_PREFIX}stage {number} {what} exited with code $tl_code\"\n  [ $tl_status -ne 0 ] || tl_status=$tl_code\nfi\n"
                ));
            }
        }
    } else if !scripts.is_empty() {
        say(
            &mut text,
            &format!(
                "this definition's commands were not run; they are in {COMMAND_DIR}/stage_*.sh"
            ),
        );
    }
    text.push_str(&format!(
        "echo \"{BANNER_PREFIX}opening an interactive $TL_SHELL in $PWD\"\nexec \"$TL_SHELL\" -i\n"
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(command: &str, cleanup: &str) -> Stage {
        Stage {
            command: command.into(),
            cleanup: cleanup.into(),
            order: 0.0,
            artifacts: Vec::new(),
        }
    }

    #[test]
    fn banners_prefix_every_line_and_end_lines_with_crlf() {
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
        let banners = Banners::new(sender);
        banners.write("building image\nStep 1/2 : FR");
        banners.write("OM base\r\n");
        banners.line("done");
        banners.raw(b"bash-5.2# ".to_vec());
        banners.line("shut down");
        let mut text = Vec::new();
        while let Ok(DeploymentEvent::Output(bytes)) = receiver.try_recv() {
            text.extend(bytes);
        }
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "TestLooper> building image\r\nTestLooper> Step 1/2 : FROM base\r\nTestLooper> done\r\n\
             bash-5.2# \r\nTestLooper> shut down\r\n"
        );
    }

    #[test]
    fn entry_script_runs_stages_only_for_deployments() {
        let stages = [stage("echo up\necho more", ""), stage("true", "echo clean")];
        let scripts: Vec<String> = [
            "stage_1_command.sh",
            "stage_2_command.sh",
            "stage_2_cleanup.sh",
        ]
        .map(String::from)
        .to_vec();
        let deployment = entry_script(&stages, true, &scripts);
        assert!(deployment.contains("\"$TL_SHELL\" /test_looper/command/stage_1_command.sh"));
        assert!(deployment.contains("stage 1 command: echo up …"));
        assert!(deployment.contains("/test_looper/command/stage_2_cleanup.sh"));
        assert!(deployment.ends_with("exec \"$TL_SHELL\" -i\n"));
        let test = entry_script(&stages, false, &scripts);
        assert!(!test.contains("stage_1_command.sh;"));
        assert!(test.contains("were not run"));
        assert!(test.ends_with("exec \"$TL_SHELL\" -i\n"));
    }

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
