//! `test-looper-worker`: the worker daemon. Connects to the server's worker socket, runs
//! assignments in the local Docker engine, stores artifacts in the configured store.

use clap::Parser;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use test_looper_artifacts::{open_store, StoreConfig};
use test_looper_core::protocol::{MachineInfo, OsConfig, HEARTBEAT_INTERVAL_SECONDS};
use test_looper_worker::daemon::{http_sources::HttpSources, run_daemon, DaemonSettings};
use test_looper_worker::executor::{image::ImageCache, Executor};

#[derive(Parser, Debug)]
#[command(about = "test-looper worker daemon")]
struct Args {
    /// Server base URL, e.g. http://127.0.0.1:9081
    #[arg(long, env = "TEST_LOOPER_SERVER_URL")]
    server_url: String,
    /// Worker token (`auth.worker_token` of the server).
    #[arg(long, env = "TEST_LOOPER_WORKER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Stable machine id.
    #[arg(long, env = "TEST_LOOPER_MACHINE_ID")]
    machine_id: String,
    /// Directory for run directories and caches.
    #[arg(long, env = "TEST_LOOPER_WORKER_STORAGE")]
    storage: PathBuf,
    /// Install scope: container label `test-looper.scope` and name prefix.
    #[arg(long, env = "TEST_LOOPER_DOCKER_SCOPE", default_value = "test_looper")]
    scope: String,
    /// Artifact store as JSON, e.g. {"kind":"local_disk","path":"/srv/artifacts"}.
    /// Holds credentials for S3: pass it by environment, never on the command line (M5).
    #[arg(long, env = "TEST_LOOPER_ARTIFACTS", hide_env_values = true)]
    artifacts: String,
    /// Cores offered (default: all).
    #[arg(long)]
    cores: Option<u32>,
    /// RAM offered in GB (default: all).
    #[arg(long)]
    ram_gb: Option<u32>,
    /// Run several items at once, each on the cores it asks for, while they fit (a big
    /// machine shared by many small tests); without it, one item at a time on all cores.
    #[arg(long, env = "TEST_LOOPER_SHARES_CORES")]
    shares_cores: bool,
    /// This machine is a one-shot VM booted from this AMI (a naked AMI, launched by the EC2
    /// pool for one job of an environment with that `base_ami`): it runs that job on the
    /// machine itself, without Docker, and takes no other work.
    #[arg(long, env = "TEST_LOOPER_VM_AMI", conflicts_with = "shares_cores")]
    vm_ami: Option<String>,
    /// Exit after this many idle seconds (0: never).
    #[arg(long, default_value_t = 0)]
    idle_exit_seconds: u64,
    /// Heartbeat (and completion resend) interval in seconds; keep it well under the
    /// server's heartbeat timeout.
    #[arg(long, env = "TEST_LOOPER_HEARTBEAT_SECONDS", default_value_t = HEARTBEAT_INTERVAL_SECONDS,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    heartbeat_seconds: u64,
    /// Exit (removing this worker's containers first) when standard input closes: the local
    /// machine pool holds the other end, so a worker never outlives its server.
    #[arg(long)]
    exit_when_stdin_closes: bool,
    /// Sandbox (H5): `opt-in` gives the scoped Docker socket to jobs whose definition has
    /// `docker_socket: true`; `forbid` never gives it (such jobs fail as infrastructure errors).
    #[arg(long, env = "TEST_LOOPER_DOCKER_SOCKET", default_value = "opt-in")]
    docker_socket: test_looper_worker::executor::sandbox::DockerSocketPolicy,
    /// Sandbox: processes per container.
    #[arg(long, env = "TEST_LOOPER_PIDS_LIMIT", default_value_t = test_looper_worker::executor::sandbox::DEFAULT_PIDS_LIMIT)]
    pids_limit: i64,
}

/// Watches standard input on a plain thread (tokio's stdin reads on a blocking thread that
/// a runtime cannot shut down while the read waits, which kept an idle worker's process
/// alive after `idle: exiting`). Fires `closed` at end of file (or a read error).
fn watch_stdin(closed: tokio::sync::oneshot::Sender<()>) {
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin();
        let mut buffer = [0u8; 256];
        loop {
            match stdin.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let _ = closed.send(());
    });
}

fn machine_ram_gb() -> u32 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| (kb / 1024 / 1024).max(1) as u32)
        .unwrap_or(1)
}

/// How long the runtime may take to stop its remaining tasks once the daemon is done.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

fn main() {
    // Colour only on a terminal: redirected to a log file, the log stays plain text.
    tracing_subscriber::fmt()
        .with_ansi(std::io::stdout().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(serve(args));
    // Never wait for a task (or a blocking read) that does not end by itself: the pool
    // counts this process until it has exited.
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    match result {
        Ok(()) => std::process::exit(0),
        Err(error) => {
            tracing::error!("{error:#}");
            std::process::exit(1);
        }
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let store_config: StoreConfig = serde_json::from_str(&args.artifacts)?;
    let store = open_store(&store_config).await?;
    let docker = bollard::Docker::connect_with_local_defaults()?;
    let base_url = args.server_url.trim_end_matches('/').to_string();
    let socket_url = format!(
        "{}/api/worker/socket",
        base_url
            .replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1)
    );
    let cores = args.cores.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1)
    });
    let executor = Executor {
        docker,
        store,
        sources: Arc::new(HttpSources {
            client: reqwest::Client::new(),
            base_url,
            token: args.token.clone(),
        }),
        storage: args.storage,
        scope: args.scope,
        machine_id: args.machine_id.clone(),
        images: ImageCache::default(),
        vm_ami: args.vm_ami.clone(),
        sandbox: test_looper_worker::executor::sandbox::Sandbox {
            docker_socket: args.docker_socket,
            pids_limit: args.pids_limit.max(1),
        },
    };
    let settings = DaemonSettings {
        socket_url,
        token: args.token,
        machine: MachineInfo {
            machine_id: args.machine_id,
            cores,
            ram_gb: args.ram_gb.unwrap_or_else(machine_ram_gb),
            os: match &args.vm_ami {
                Some(ami) => OsConfig::LinuxVm { ami: ami.clone() },
                None => OsConfig::LinuxDocker,
            },
            shares_cores: args.shares_cores,
        },
        idle_exit: (args.idle_exit_seconds > 0)
            .then(|| Duration::from_secs(args.idle_exit_seconds)),
        heartbeat: Duration::from_secs(args.heartbeat_seconds),
    };
    let reaper = executor.clone();
    let stdin_closed = async {
        if !args.exit_when_stdin_closes {
            return std::future::pending().await;
        }
        let (closed, stdin_closed) = tokio::sync::oneshot::channel();
        watch_stdin(closed);
        let _ = stdin_closed.await;
    };
    let why = tokio::select! {
        result = run_daemon(settings, executor) => return result,
        _ = stdin_closed => "the machine pool went away",
        signal = stop_signal() => signal?,
    };
    // The job containers are not children of this process: remove them before exiting, or
    // they would run on until the worker next starts. A run in progress is lost and retried.
    tracing::info!("{why}: removing containers and exiting");
    if let Err(error) = reaper.reap_leftovers().await {
        tracing::warn!(%error, "could not remove this worker's containers");
    }
    Ok(())
}

/// Waits for `SIGTERM` (`systemctl stop`, `docker stop`, `kill`) or `SIGINT` (Ctrl-C).
async fn stop_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    })
}
