//! Interactive deployments through the executor against the real Docker engine (no server):
//! the environment is prepared like a run's, the deployment's command runs, then a shell with
//! a TTY takes keystrokes and resizes; ports are published on 127.0.0.1; the container is gone
//! after a shutdown or when the shell exits; a broken image is reported in the stream.

mod worker_support;

use std::path::Path;
use std::time::Duration;
use test_looper_containers::{remove_labelled, RUN_LABEL, SCOPE_LABEL, WORKER_LABEL};
use test_looper_core::definitions::memory::MemorySource;
use test_looper_core::definitions::{resolve_commit, CommitRef, ResolvedCommit};
use test_looper_core::protocol::{DeploymentAssignment, SourceCommit, TerminalInput};
use test_looper_tests::DockerEngine;
use test_looper_worker::executor::{run_deployment, DeploymentEnd, DeploymentEvent, Executor};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use worker_support::{executor, fixture_dir, COMMIT, REPO};

/// Upper bound for anything to show up; reaching it means the deployment hangs (never a
/// speed check).
const LIVENESS_LIMIT: Duration = Duration::from_secs(180);

const DEFINITIONS: &str = r#"
looper_version: 4
environments:
  linux:
    platform: linux
    image:
      dockerfile: docker/Dockerfile
    variables:
      GREETING: hello
  broken:
    platform: linux
    image:
      dockerfile_contents: |
        FROM test-looper/base:1
        RUN echo cannot-build-this && exit 3
deployments:
  shell/linux:
    environment: linux
    dependencies:
      src: HEAD
    variables:
      WHO: deployer
    command: echo "command says $GREETING to ${WHO} in $(pwd)"; ls src/tests
    portExpose:
      web: 8080
  broken/linux:
    environment: broken
tests:
  pass/linux:
    environment: linux
    command: echo the-test-command-ran
"#;

/// The fixture's files with [`DEFINITIONS`] as its definitions file, resolved.
fn resolved() -> ResolvedCommit {
    let mut source = MemorySource::new();
    source.add_file(REPO, COMMIT, "testlooper.yml", DEFINITIONS);
    let dockerfile = std::fs::read_to_string(fixture_dir().join("docker/Dockerfile")).unwrap();
    source.add_file(REPO, COMMIT, "docker/Dockerfile", &dockerfile);
    resolve_commit(&CommitRef::new(REPO, COMMIT), &source).expect("definitions resolve")
}

fn deployment(resolved: &ResolvedCommit, name: &str, id: &str) -> DeploymentAssignment {
    let definition = resolved.definitions.get(name).cloned().expect(name);
    DeploymentAssignment {
        deployment_id: id.into(),
        test_hash: definition.hash.clone(),
        source: SourceCommit {
            repo: REPO.into(),
            commit: COMMIT.into(),
        },
        definition,
        cores: 1,
        ram_gb: 1,
    }
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// Removes every container of the worker scope when dropped (also when a test fails).
struct ScopeCleanup {
    docker: bollard::Docker,
    scope: String,
}

impl Drop for ScopeCleanup {
    fn drop(&mut self) {
        let (docker, scope) = (self.docker.clone(), self.scope.clone());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(remove_labelled(&docker, SCOPE_LABEL, &scope))
        })
        .join();
    }
}

/// A deployment running in the background, and everything it printed so far.
struct Booted {
    events: UnboundedReceiver<DeploymentEvent>,
    controls: UnboundedSender<TerminalInput>,
    shutdown: CancellationToken,
    task: JoinHandle<DeploymentEnd>,
    transcript: Vec<u8>,
}

impl Booted {
    fn start(executor: &Executor, assignment: DeploymentAssignment) -> Booted {
        let (events, received) = unbounded_channel();
        let (controls, control_receiver) = unbounded_channel();
        let shutdown = CancellationToken::new();
        let task = {
            let (executor, shutdown) = (executor.clone(), shutdown.clone());
            tokio::spawn(async move {
                run_deployment(&executor, &assignment, events, control_receiver, shutdown).await
            })
        };
        Booted {
            events: received,
            controls,
            shutdown,
            task,
            transcript: Vec::new(),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.transcript).into_owned()
    }

    /// Reads output until the part after byte `from` contains `needle`; returns the length of
    /// the transcript then.
    async fn wait_for_after(&mut self, from: usize, needle: &str) -> usize {
        let found = tokio::time::timeout(LIVENESS_LIMIT, async {
            loop {
                if String::from_utf8_lossy(&self.transcript[from..]).contains(needle) {
                    return true;
                }
                match self.events.recv().await {
                    Some(DeploymentEvent::Output(bytes)) => self.transcript.extend(bytes),
                    None => return false,
                }
            }
        })
        .await;
        assert!(
            found == Ok(true),
            "{needle:?} never appeared; transcript:\n{}",
            self.text()
        );
        self.transcript.len()
    }

    async fn wait_for(&mut self, needle: &str) -> usize {
        self.wait_for_after(0, needle).await
    }

    fn send(&self, input: TerminalInput) {
        self.controls.send(input).expect("deployment takes input");
    }

    fn keys(&self, text: &str) {
        self.send(TerminalInput::Keys { data: text.into() });
    }

    /// Waits for the end, collecting the rest of the output.
    async fn end(mut self) -> (DeploymentEnd, String) {
        let end = tokio::time::timeout(LIVENESS_LIMIT, &mut self.task)
            .await
            .expect("the deployment ends")
            .expect("the deployment task does not panic");
        while let Ok(DeploymentEvent::Output(bytes)) = self.events.try_recv() {
            self.transcript.extend(bytes);
        }
        (end, self.text())
    }
}

/// The host address the transcript says port `name` landed on.
fn published(transcript: &str, name: &str) -> String {
    let marker = format!("port {name} (8080/tcp) is published at ");
    let start = transcript.find(&marker).expect("port banner") + marker.len();
    transcript[start..]
        .split(['\r', '\n'])
        .next()
        .unwrap()
        .to_string()
}

/// GETs `http://address/path` with a bounded number of tries (the server starts in the
/// background).
async fn fetch(address: &str, path: &str) -> String {
    let url = format!("http://{address}{path}");
    let mut last = String::new();
    for _ in 0..100 {
        match reqwest::get(&url).await {
            Ok(response) if response.status().is_success() => {
                return response.text().await.unwrap();
            }
            Ok(response) => last = format!("status {}", response.status()),
            Err(error) => last = error.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{url} never answered: {last}");
}

fn run_dir(base: &Path, id: &str) -> std::path::PathBuf {
    base.join("worker/runs").join(id)
}

#[tokio::test]
async fn a_deployment_runs_its_command_then_serves_a_shell_until_shut_down() {
    let engine = DockerEngine::connect().await;
    let dir = tempfile::tempdir().unwrap();
    let scope = unique("wdep_shell");
    let _cleanup = ScopeCleanup {
        docker: engine.client().clone(),
        scope: scope.clone(),
    };
    let exec = executor(engine.client(), dir.path(), &scope, "machine-d1");
    let id = "dep-shell-1";
    let mut booted = Booted::start(&exec, deployment(&resolved(), "shell/linux", id));

    // Banners first, then the command's output with the variables and the source dependency.
    booted
        .wait_for("TestLooper> machine machine-d1 accepting deployment dep-shell-1")
        .await;
    booted
        .wait_for("command says hello to deployer in /test_looper/test_inputs")
        .await;
    booted.wait_for("pass.sh").await;
    booted
        .wait_for("TestLooper> stage 1 command exited with code 0")
        .await;
    let shell_open = booted
        .wait_for("TestLooper> opening an interactive bash in /test_looper/test_inputs")
        .await;
    let address = published(&booted.text(), "web");
    assert!(address.starts_with("127.0.0.1:"), "{address}");

    // The container carries the cleanup labels of runs.
    assert_eq!(engine.containers_labelled(RUN_LABEL, id).await.len(), 1);
    assert_eq!(
        engine.containers_labelled(WORKER_LABEL, "machine-d1").await,
        engine.containers_labelled(RUN_LABEL, id).await
    );

    // Keystrokes reach the shell; its environment holds the deployment's variables.
    booted.keys("echo hello-$((6*7))\n");
    let after_echo = booted.wait_for_after(shell_open, "hello-42").await;
    booted.keys("echo \"who=$WHO greeting=$GREETING id=$TEST_LOOPER_TEST_ID\"\n");
    let after_env = booted
        .wait_for_after(after_echo, "who=deployer greeting=hello id=dep-shell-1")
        .await;

    // A resize reaches the TTY.
    booted.send(TerminalInput::Resize {
        cols: 101,
        rows: 37,
    });
    booted.keys("stty size\n");
    let after_size = booted.wait_for_after(after_env, "37 101").await;

    // The exposed port is reachable on the published host address.
    booted.keys(
        "mkdir -p /tmp/www && echo served-from-deployment > /tmp/www/index.html && httpd -p 8080 -h /tmp/www\n",
    );
    assert_eq!(
        fetch(&address, "/index.html").await.trim(),
        "served-from-deployment"
    );
    let _ = after_size;

    // Shutdown: the container and the deployment's directory are gone.
    booted.shutdown.cancel();
    let (end, transcript) = booted.end().await;
    assert_eq!(end, DeploymentEnd::ShutDown, "{transcript}");
    assert!(
        transcript.contains("TestLooper> deployment dep-shell-1 was shut down"),
        "{transcript}"
    );
    assert!(engine.containers_labelled(RUN_LABEL, id).await.is_empty());
    assert!(engine
        .containers_labelled(SCOPE_LABEL, &scope)
        .await
        .is_empty());
    assert!(!run_dir(dir.path(), id).exists());
}

#[tokio::test]
async fn a_deployment_of_a_test_prepares_without_running_it_and_exits_with_its_shell() {
    let engine = DockerEngine::connect().await;
    let dir = tempfile::tempdir().unwrap();
    let scope = unique("wdep_exit");
    let _cleanup = ScopeCleanup {
        docker: engine.client().clone(),
        scope: scope.clone(),
    };
    let exec = executor(engine.client(), dir.path(), &scope, "machine-d2");
    let id = "dep-exit-1";
    let mut booted = Booted::start(&exec, deployment(&resolved(), "pass/linux", id));
    booted.wait_for("commands were not run").await;
    let open = booted.wait_for("TestLooper> opening an interactive").await;
    // The test's command is there to run by hand, with the variables substituted.
    booted.keys("cat /test_looper/command/stage_1_command.sh\n");
    let listed = booted
        .wait_for_after(open, "echo the-test-command-ran")
        .await;
    booted.keys("exit 3\n");
    booted.wait_for_after(listed, "the shell exited").await;
    let (end, transcript) = booted.end().await;
    assert_eq!(end, DeploymentEnd::Exited { code: Some(3) }, "{transcript}");
    assert!(end.reports_exit());
    assert!(
        !transcript.contains("\nthe-test-command-ran"),
        "the test command must not run: {transcript}"
    );
    assert!(engine.containers_labelled(RUN_LABEL, id).await.is_empty());
    assert!(!run_dir(dir.path(), id).exists());
}

#[tokio::test]
async fn a_deployment_whose_image_does_not_build_reports_the_error_and_exits() {
    let engine = DockerEngine::connect().await;
    let dir = tempfile::tempdir().unwrap();
    let scope = unique("wdep_broken");
    let _cleanup = ScopeCleanup {
        docker: engine.client().clone(),
        scope: scope.clone(),
    };
    let exec = executor(engine.client(), dir.path(), &scope, "machine-d3");
    let id = "dep-broken-1";
    let booted = Booted::start(&exec, deployment(&resolved(), "broken/linux", id));
    let (end, transcript) = booted.end().await;
    let DeploymentEnd::Failed { message } = &end else {
        panic!("expected a failure, got {end:?}: {transcript}");
    };
    assert!(
        message.contains("environment image build failed"),
        "{message}"
    );
    assert!(end.reports_exit());
    assert!(
        transcript.contains("TestLooper> building environment image"),
        "{transcript}"
    );
    assert!(transcript.contains("cannot-build-this"), "{transcript}");
    assert!(
        transcript.contains("TestLooper> error: environment image build failed"),
        "{transcript}"
    );
    assert!(engine
        .containers_labelled(SCOPE_LABEL, &scope)
        .await
        .is_empty());
    assert!(!run_dir(dir.path(), id).exists());
}
