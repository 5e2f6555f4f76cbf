//! A simulated EC2 cloud for the machine pool's tests: moto answers the EC2 and S3 API, and
//! this harness makes moto's instances real. Every 250 ms it lists moto's instances:
//!
//! - an instance moto reports pending or running gets a Docker container (from the "AMI"
//!   image [`SIM_AMI_IMAGE`]) on a private Docker network, with its own address, running the
//!   instance's user-data with `sh` — after a boot delay, as a real machine takes to boot;
//! - an instance moto reports shutting down or terminated loses its container;
//! - a container that stops by itself (or is killed by a test) makes its instance vanish:
//!   the harness terminates it in moto, as EC2 reports a machine that died.
//!
//! The containers get the host's Docker socket (the worker runs its jobs in the host's
//! engine, as on a real machine with Docker), AWS keys for moto in their environment (what an
//! instance role gives a real machine), and the shared machines directory mounted at the
//! same path (job containers bind-mount the worker's directories by host path).
//!
//! The harness also samples moto every tick for the tests' "limits hold at every second"
//! checks ([`CloudSim::samples`]).

use crate::docker_engine::{ensure_base_image, BASE_IMAGE};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use test_looper_aws::ec2::types::InstanceStateName;

/// The image simulated machines boot: the base image plus the C libraries the worker binary
/// links against (the binary itself comes from the bootstrap bucket, or is mounted).
pub const SIM_AMI_IMAGE: &str = "test-looper/sim-ami:1";

/// Label on every simulated machine's container.
pub const SIM_LABEL: &str = "test-looper.cloud-sim";

/// A private Docker network standing in for the VPC subnet; the host is its gateway.
pub struct SimNetwork {
    pub name: String,
    /// The host's address on the network (servers the machines reach bind here).
    pub gateway: String,
    pub subnet: String,
}

impl SimNetwork {
    /// Creates `tlsim-<pid>-<n>` on a free 10.232.X.0/24.
    pub fn create() -> SimNetwork {
        let used = Command::new("ip")
            .args(["-o", "-4", "addr", "show"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let pid = std::process::id();
        for step in 0..250 {
            let x = (pid + step) % 250 + 1;
            if used.contains(&format!(" 10.232.{x}.")) {
                continue;
            }
            let name = format!("tlsim-{pid}-{x}");
            let subnet = format!("10.232.{x}.0/24");
            let gateway = format!("10.232.{x}.1");
            let status = Command::new("docker")
                .args([
                    "network",
                    "create",
                    "--subnet",
                    &subnet,
                    "--gateway",
                    &gateway,
                ])
                .args(["--label", &format!("{SIM_LABEL}=network"), &name])
                .output()
                .expect("docker network create");
            if status.status.success() {
                return SimNetwork {
                    name,
                    gateway,
                    subnet,
                };
            }
        }
        panic!("no free 10.232.X.0/24 for the simulated subnet");
    }
}

impl Drop for SimNetwork {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["network", "rm", &self.name])
            .output();
    }
}

/// Builds [`SIM_AMI_IMAGE`] once per process: the base image plus the libraries `ldd` lists
/// for `binary` and the host's CA bundle.
pub fn ensure_sim_ami(binary: &Path) {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        ensure_base_image();
        let output = Command::new("ldd").arg(binary).output().expect("ldd");
        let listing = String::from_utf8_lossy(&output.stdout).into_owned();
        let context = tempfile::tempdir().expect("build context");
        let rootfs = context.path().join("rootfs");
        for line in listing.lines() {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
            let path = line
                .split("=>")
                .last()
                .and_then(|rest| rest.split_whitespace().next())
                .filter(|path| path.starts_with('/'));
            let Some(path) = path else { continue };
            let target = rootfs.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(target.parent().expect("a parent")).expect("mkdir");
            std::fs::copy(path, &target).unwrap_or_else(|e| panic!("copy {path}: {e}"));
        }
        std::fs::create_dir_all(rootfs.join("usr/local/bin")).expect("mkdir");
        // The CA bundle every real AMI has (the worker's AWS client insists on roots).
        let bundle = Path::new("/etc/ssl/certs/ca-certificates.crt");
        if bundle.exists() {
            std::fs::create_dir_all(rootfs.join("etc/ssl/certs")).expect("mkdir");
            std::fs::copy(bundle, rootfs.join("etc/ssl/certs/ca-certificates.crt"))
                .expect("copy CA bundle");
        }
        std::fs::write(
            context.path().join("Dockerfile"),
            format!("FROM {BASE_IMAGE}\nCOPY rootfs/ /\n"),
        )
        .expect("Dockerfile");
        let status = Command::new("docker")
            .args(["build", "-q", "-t", SIM_AMI_IMAGE])
            .arg(context.path())
            .output()
            .expect("docker build");
        assert!(
            status.status.success(),
            "building {SIM_AMI_IMAGE}: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    });
}

/// How simulated machines are made.
#[derive(Clone, Debug)]
pub struct SimOptions {
    pub network: String,
    /// Directory shared by every machine at the same path (their workers' storage).
    pub machines_dir: PathBuf,
    /// Time between an instance appearing and its user-data starting.
    pub boot_delay: Duration,
    /// Extra `docker run` arguments for every machine (e.g. a mounted binary).
    pub extra_args: Vec<String>,
}

/// What the harness saw of one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimMachine {
    pub instance_id: String,
    pub container: String,
    pub instance_type: String,
    /// The container stopped by itself or was killed: the harness terminated the instance.
    pub died: bool,
    /// moto terminated it (the pool did): the harness removed the container.
    pub terminated: bool,
}

/// One sample of moto's instances (every tick).
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub at: Duration,
    /// Instances holding capacity (pending, running, shutting down, stopping, stopped).
    pub held: usize,
    pub held_types: Vec<String>,
}

#[derive(Default)]
struct SimState {
    machines: BTreeMap<String, SimMachine>,
    booting: BTreeMap<String, Instant>,
    samples: Vec<Sample>,
}

/// The running harness; dropping it removes every machine container it started (the moto
/// instances stay as they are).
pub struct CloudSim {
    options: SimOptions,
    state: Arc<Mutex<SimState>>,
    task: tokio::task::JoinHandle<()>,
}

impl CloudSim {
    pub fn start(ec2: test_looper_aws::ec2::Client, options: SimOptions) -> CloudSim {
        let state = Arc::new(Mutex::new(SimState::default()));
        let started = Instant::now();
        let task = tokio::spawn({
            let state = state.clone();
            let options = options.clone();
            async move {
                loop {
                    if let Err(error) = tick(&ec2, &options, &state, started).await {
                        tracing::warn!(%error, "cloud sim tick failed");
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        });
        CloudSim {
            options,
            state,
            task,
        }
    }

    /// Every machine the harness has made so far.
    pub fn machines(&self) -> Vec<SimMachine> {
        self.lock().machines.values().cloned().collect()
    }

    /// The samples of moto's instances taken so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.lock().samples.clone()
    }

    /// Kills an instance's machine as a hardware failure would (`docker kill`): the harness
    /// then terminates it in moto.
    pub fn kill_machine(&self, instance_id: &str) {
        let container = self
            .lock()
            .machines
            .get(instance_id)
            .map(|machine| machine.container.clone());
        if let Some(container) = container {
            let _ = Command::new("docker").args(["kill", &container]).output();
        }
    }

    /// The output of `command` run inside an instance's machine.
    pub fn exec(&self, instance_id: &str, command: &[&str]) -> Option<String> {
        let container = self.lock().machines.get(instance_id)?.container.clone();
        let output = Command::new("docker")
            .args(["exec", &container])
            .args(command)
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The last lines of an instance's console (its user-data's output and the worker's),
    /// also after the machine is gone.
    pub fn logs(&self, instance_id: &str) -> String {
        let Some(machine) = self.lock().machines.get(instance_id).cloned() else {
            return String::new();
        };
        let text = if machine.terminated {
            std::fs::read_to_string(console_log_path(&self.options, instance_id))
                .unwrap_or_default()
        } else {
            console_log(&machine.container)
        };
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for CloudSim {
    fn drop(&mut self) {
        self.task.abort();
        let machines: Vec<SimMachine> = self.lock().machines.values().cloned().collect();
        for machine in &machines {
            remove_machine(machine);
        }
    }
}

/// One pass: sample, boot new instances, remove the terminated ones, end the dead ones.
async fn tick(
    ec2: &test_looper_aws::ec2::Client,
    options: &SimOptions,
    state: &Mutex<SimState>,
    started: Instant,
) -> Result<(), String> {
    let listing = ec2
        .describe_instances()
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let instances: Vec<_> = listing
        .reservations()
        .iter()
        .flat_map(|r| r.instances().iter().cloned())
        .collect();
    let mut sample = Sample {
        at: started.elapsed(),
        ..Sample::default()
    };
    let running_containers = running_containers();
    for instance in &instances {
        let Some(id) = instance.instance_id().map(str::to_string) else {
            continue;
        };
        let state_name = instance.state().and_then(|s| s.name()).cloned();
        let instance_type = instance
            .instance_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default();
        let alive = matches!(
            state_name,
            Some(InstanceStateName::Pending | InstanceStateName::Running)
        );
        if state_name != Some(InstanceStateName::Terminated) {
            sample.held += 1;
            sample.held_types.push(instance_type.clone());
        }
        let known = lock(state).machines.get(&id).cloned();
        match known {
            None if alive => {
                let boot_at = *lock(state)
                    .booting
                    .entry(id.clone())
                    .or_insert_with(Instant::now);
                if boot_at.elapsed() >= options.boot_delay {
                    let user_data = user_data(ec2, &id).await?;
                    let container = boot(options, &id, &user_data)?;
                    let mut guard = lock(state);
                    guard.booting.remove(&id);
                    guard.machines.insert(
                        id.clone(),
                        SimMachine {
                            instance_id: id.clone(),
                            container,
                            instance_type,
                            died: false,
                            terminated: false,
                        },
                    );
                }
            }
            Some(machine) if !alive && !machine.terminated && !machine.died => {
                // The pool (or a test) terminated it: the machine goes away (its console log
                // is kept in the machines directory).
                keep_console_log(options, &machine);
                remove_machine(&machine);
                if let Some(m) = lock(state).machines.get_mut(&id) {
                    m.terminated = true;
                }
            }
            Some(machine)
                if alive
                    && !machine.terminated
                    && !machine.died
                    && !running_containers.contains(&machine.container) =>
            {
                // The machine died: EC2 reports the instance gone, and what ran on it is gone.
                let _ = ec2.terminate_instances().instance_ids(&id).send().await;
                remove_job_containers(&id);
                if let Some(m) = lock(state).machines.get_mut(&id) {
                    m.died = true;
                }
            }
            _ => {}
        }
    }
    lock(state).samples.push(sample);
    Ok(())
}

fn lock(state: &Mutex<SimState>) -> std::sync::MutexGuard<'_, SimState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

async fn user_data(ec2: &test_looper_aws::ec2::Client, id: &str) -> Result<String, String> {
    let answer = ec2
        .describe_instance_attribute()
        .instance_id(id)
        .attribute(test_looper_aws::ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let encoded = answer
        .user_data()
        .and_then(|value| value.value())
        .unwrap_or_default();
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded)
        .map_err(|e| format!("user data of {id}: {e}"))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Starts the machine's container; returns its name.
fn boot(options: &SimOptions, id: &str, user_data: &str) -> Result<String, String> {
    let name = format!("tlsim-{}-{id}", std::process::id());
    let machines = options.machines_dir.display().to_string();
    let output = Command::new("docker")
        .args(["run", "-d", "--name", &name, "--network", &options.network])
        .args(["--label", &format!("{SIM_LABEL}={id}")])
        .args(["-v", "/var/run/docker.sock:/var/run/docker.sock"])
        .args(["-v", &format!("{machines}:{machines}")])
        .args([
            "-e",
            "AWS_ACCESS_KEY_ID=testing",
            "-e",
            "AWS_SECRET_ACCESS_KEY=testing",
        ])
        .args([
            "-e",
            "AWS_EC2_METADATA_DISABLED=true",
            "-e",
            "RUST_LOG=info",
        ])
        .args(&options.extra_args)
        .arg(SIM_AMI_IMAGE)
        .args(["sh", "-c", user_data])
        .output()
        .map_err(|e| format!("docker run: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "docker run for {id}: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(name)
}

/// Removes a machine: its container and the job containers its worker started in the host's
/// engine (on a real machine they would end with it).
fn remove_machine(machine: &SimMachine) {
    let _ = Command::new("docker")
        .args(["rm", "-f", &machine.container])
        .output();
    remove_job_containers(&machine.instance_id);
}

/// Removes the containers labelled with the worker of instance `id`.
fn remove_job_containers(id: &str) {
    let listed = Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!(
            "label={}={id}",
            test_looper_containers::WORKER_LABEL
        ))
        .output();
    let ids: Vec<String> = listed
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if !ids.is_empty() {
        let _ = Command::new("docker")
            .args(["rm", "-f"])
            .args(&ids)
            .output();
    }
}

/// Everything a machine's container printed.
fn console_log(container: &str) -> String {
    Command::new("docker")
        .args(["logs", container])
        .output()
        .map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .unwrap_or_default()
}

fn console_log_path(options: &SimOptions, instance_id: &str) -> PathBuf {
    options
        .machines_dir
        .join(format!("{instance_id}.console.log"))
}

fn keep_console_log(options: &SimOptions, machine: &SimMachine) {
    let _ = std::fs::write(
        console_log_path(options, &machine.instance_id),
        console_log(&machine.container),
    );
}

/// Names of the running containers of simulated machines.
fn running_containers() -> HashSet<String> {
    Command::new("docker")
        .args([
            "ps",
            "--filter",
            &format!("label={SIM_LABEL}"),
            "--format",
            "{{.Names}}",
        ])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}
