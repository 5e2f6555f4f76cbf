//! The EC2 pool end to end, on the simulated cloud ([`test_looper_tests::cloud_sim`]): moto
//! serves EC2 and S3, every instance the pool launches becomes a Docker container on a private
//! network running the instance's user-data, and the real `test-looper-server` runs with the
//! `machine_management` section of `deploy/config.aws.example.yml` (the README's AWS example),
//! its `${VARS}` filled with moto's VPC, subnet, AMI and buckets and its endpoint pointed at
//! moto. The worker binary comes from the bootstrap bucket, as the example configures.
//!
//! - `the_aws_example_runs_tests_on_simulated_instances`: the tests pass on instance ids,
//!   packed (the example's `packing: shared_cores`): fewer instances than tests, and tests
//!   running at the same time on one instance; the machine got the example's `host_ips` in
//!   `/etc/hosts`, `/machines` shows the pool, the idle
//!   instances are drained and terminated, the bootstrap scripts are deleted, and the
//!   instance count held within `max_workers` at every sample (4 per second).
//! - `chaos_server_killed_and_machine_killed`: the server is killed with `kill -9` right after
//!   it launched instances and started again: nothing is orphaned, the launched instances are
//!   adopted. A machine is killed mid-run: its run is retried once elsewhere and the instance
//!   is replaced. No run is lost on a machine the pool itself terminated (scale-in never kills
//!   a busy machine).
//! - `a_spot_capacity_error_falls_back_to_on_demand`: EC2 (a fault proxy in front of moto)
//!   answers every spot launch with `InsufficientInstanceCapacity`; the pool launches
//!   on-demand in the next step and the test passes.
//! - `a_naked_ami_test_runs_on_a_one_shot_instance_of_that_ami`: a test whose environment is a
//!   `base_ami` (another AMI of the region) runs on an instance launched from that AMI,
//!   without Docker, after the environment's setup script (it installs the file the suite's
//!   Dockerfile would), at the runtime contract's paths; the instance ends after that one run. A Docker test of the same commit runs on a worker instance.
//! - `a_reclaimed_spot_instance_is_replaced_on_demand_and_its_run_retried`: EC2 reclaims the
//!   spot instance running the test (terminated, reported with `Server.SpotInstanceTermination`
//!   by the fault proxy); the replacement is on demand and the run is retried there once.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use test_looper_aws::ec2::types::{Filter, InstanceStateName};
use test_looper_tests::cloud_sim::{ensure_sim_ami, CloudSim, SimNetwork, SimOptions};
use test_looper_tests::install::{make_repo, suite_files, worker_binary};
use test_looper_tests::paths::workspace_root;
use test_looper_tests::server_process::ServerProcess;
use test_looper_tests::{DockerEngine, MotoServer, RedisServer};

const REPO: &str = "pooled";
const WORKER_NAME: &str = "my-company-ci";
const OPERATOR_TOKEN: &str = "tl_static-pool-operator-0123456789abcdef";
const WORKER_BINARY_KEY: &str = "test-looper/bin/test-looper-worker";
const BOOTSTRAP_BUCKET: &str = "sim-bootstrap";

/// A definitions file with one test per `(name, command)`, in the suite's image.
fn yml(tests: &[(&str, &str)]) -> String {
    let mut text = String::from(
        "looper_version: 4\nenvironments:\n  linux:\n    platform: linux\n    image:\n      dockerfile: docker/Dockerfile\n    variables:\n      GREETING: hello\ntests:\n",
    );
    for (name, command) in tests {
        text.push_str(&format!(
            "  {name}:\n    environment: linux\n    command: {command}\n    dependencies: {{src: HEAD}}\n"
        ));
    }
    text
}

/// The simulated cloud, the server on it and its repo.
struct Cloud {
    _engine: DockerEngine,
    sim: CloudSim,
    ec2: test_looper_aws::ec2::Client,
    s3: test_looper_aws::s3::Client,
    server: ServerProcess,
    commit: String,
    subnet: String,
    owner_tag_filter: Filter,
    http: reqwest::Client,
    _redis: RedisServer,
    _moto: MotoServer,
    fault_proxy: Option<fault_proxy::FaultProxy>,
    _network: SimNetwork,
    dir: tempfile::TempDir,
}

/// What the tests change in the example's pool settings.
struct PoolKnobs {
    max_workers: u32,
    idle_timeout_seconds: u64,
    spot: bool,
    /// EC2 is reached through the fault proxy, which answers every spot launch with a
    /// capacity error when this is set.
    spot_capacity_errors: Option<bool>,
}

impl PoolKnobs {
    /// Two spot machines, ended 10 s after their work, no faults.
    fn small() -> PoolKnobs {
        PoolKnobs {
            max_workers: 2,
            idle_timeout_seconds: 10,
            spot: true,
            spot_capacity_errors: None,
        }
    }
}

impl Cloud {
    async fn start(tests: &[(&str, &str)], knobs: PoolKnobs) -> Cloud {
        Cloud::start_with(|_| yml(tests), knobs).await
    }

    /// The cloud with the definitions file `definitions(naked_ami)`: `naked_ami` is an AMI of
    /// the region other than the pool's worker AMI.
    async fn start_with(definitions: impl FnOnce(&str) -> String, knobs: PoolKnobs) -> Cloud {
        let engine = DockerEngine::connect().await;
        ensure_sim_ami(&worker_binary());
        let network = SimNetwork::create();
        let moto = MotoServer::start_on(&network.gateway);
        let redis = RedisServer::start();
        let sdk = test_looper_aws::sdk_config(&moto.aws_settings()).await;
        let ec2 = test_looper_aws::ec2_client(&sdk);
        let s3 = test_looper_aws::s3_client(&sdk, true);

        // The VPC, subnet, security group, key pair and AMI the example names.
        let vpc = ec2
            .create_vpc()
            .cidr_block("10.0.0.0/16")
            .send()
            .await
            .unwrap();
        let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block("10.0.1.0/24")
            .send()
            .await
            .unwrap();
        let subnet_id = subnet.subnet().unwrap().subnet_id().unwrap().to_string();
        let group = ec2
            .create_security_group()
            .group_name("ci-workers")
            .description("test-looper workers")
            .vpc_id(&vpc_id)
            .send()
            .await
            .unwrap();
        let group_id = group.group_id().unwrap().to_string();
        ec2.create_key_pair().key_name("ci").send().await.unwrap();
        create_instance_profile(&moto.endpoint_url(), "ci-worker").await;
        let images = ec2.describe_images().send().await.unwrap();
        let mut amis = images.images().iter().filter_map(|image| image.image_id());
        let ami = amis.next().expect("moto lists AMIs").to_string();
        let naked_ami = amis.next().expect("moto lists two AMIs").to_string();
        for bucket in [BOOTSTRAP_BUCKET, "sim-artifacts"] {
            s3.create_bucket().bucket(bucket).send().await.unwrap();
        }
        s3.put_object()
            .bucket(BOOTSTRAP_BUCKET)
            .key(WORKER_BINARY_KEY)
            .body(std::fs::read(worker_binary()).unwrap().into())
            .send()
            .await
            .unwrap();

        let dir = tempfile::tempdir().unwrap();
        let mut files = suite_files();
        files.push(("testlooper.yml".into(), definitions(&naked_ami)));
        let (_repo, commit) = make_repo(dir.path(), REPO, &files);

        let fault_proxy = knobs.spot_capacity_errors.map(|capacity_errors| {
            fault_proxy::FaultProxy::start(&network.gateway, &moto.endpoint_url(), capacity_errors)
        });
        let ec2_endpoint = fault_proxy
            .as_ref()
            .map_or_else(|| moto.endpoint_url(), |proxy| proxy.url());
        let server_port = test_looper_tests::ports::free_loopback_port();
        // Simulated machines share the host's Docker engine, which bind-mounts the workers'
        // directories by host path: their storage is a host directory at the same path.
        let machines_dir = dir.path().join("machines");
        std::fs::create_dir_all(&machines_dir).unwrap();
        let pool = example_pool_section(&[
            ("AWS_REGION", "us-east-1".into()),
            ("TEST_LOOPER_VPC", vpc_id),
            ("TEST_LOOPER_SUBNET", subnet_id.clone()),
            ("TEST_LOOPER_SECURITY_GROUP", group_id),
            ("TEST_LOOPER_KEYPAIR", "ci".into()),
            ("TEST_LOOPER_WORKER_PROFILE", "ci-worker".into()),
            ("TEST_LOOPER_WORKER_AMI", ami),
            ("TEST_LOOPER_BOOTSTRAP_BUCKET", BOOTSTRAP_BUCKET.into()),
            ("TEST_LOOPER_GIT_ADDRESS", network.gateway.clone()),
        ])
        .replace(
            "http://${TEST_LOOPER_PRIVATE_ADDRESS}:9081",
            &format!("http://{}:{server_port}", network.gateway),
        )
        .replace(
            "limits: {max_workers: 8,",
            &format!("limits: {{max_workers: {},", knobs.max_workers),
        )
        .replace(
            "idle_timeout_seconds: 600",
            &format!("idle_timeout_seconds: {}", knobs.idle_timeout_seconds),
        )
        .replace("boot_timeout_seconds: 600", "boot_timeout_seconds: 90")
        .replace("spot: true", &format!("spot: {}", knobs.spot))
        .replace("heartbeat_timeout_seconds: 60", "heartbeat_timeout_seconds: 20")
        .replace(
            "  aws:\n",
            &format!(
                "  aws:\n    endpoint_url: {ec2_endpoint}\n    credentials: {{access_key_id: testing, secret_access_key: testing}}\n    reconcile_interval_seconds: 2\n    worker_storage_path: {}\n",
                machines_dir.display()
            ),
        );
        assert!(!pool.contains("${"), "unfilled variables:\n{pool}");
        let operator_sha256 = test_looper_auth::tokens::token_sha256(OPERATOR_TOKEN);
        let config = format!(
            r#"redis:
  url: {redis}
source_control:
  local:
    path_to_repos: {dir}/repos
    poll_interval_ms: 100
artifacts:
  s3:
    bucket: sim-artifacts
    region: us-east-1
    endpoint_url: {moto}
    credentials: {{access_key_id: testing, secret_access_key: testing}}
{pool}auth:
  mode: write
  static_tokens:
    - {{name: pool-operator, role: operator, sha256: {operator_sha256}}}
"#,
            redis = redis.url(),
            dir = dir.path().display(),
            moto = moto.endpoint_url(),
        );
        let sim = CloudSim::start(
            ec2.clone(),
            SimOptions {
                network: network.name.clone(),
                machines_dir,
                // A real Linux instance takes 30 to 90 s to boot; 3 s keeps the test short.
                boot_delay: Duration::from_secs(3),
                extra_args: Vec::new(),
            },
        );
        let server =
            ServerProcess::start_on_port(dir.path(), &network.gateway, server_port, "", &config);
        let owner_tag_filter = Filter::builder()
            .name(format!("tag:{}", test_looper_core::pool::WORKER_NAME_TAG))
            .values(WORKER_NAME)
            .build();
        Cloud {
            _engine: engine,
            sim,
            ec2,
            s3,
            server,
            commit,
            subnet: subnet_id,
            owner_tag_filter,
            http: reqwest::Client::new(),
            _redis: redis,
            _moto: moto,
            fault_proxy,
            _network: network,
            dir,
        }
    }

    async fn enable_branch(&self) {
        self.wait_for(
            "the branch to be scanned",
            Duration::from_secs(60),
            || async {
                self.server
                    .get_json(&format!("/api/branch?repo={REPO}&branch=master"))
                    .await
                    .is_some()
            },
        )
        .await;
        // The scheduler starts once Redis and the stores answer; 503 until then.
        self.wait_for(
            "the branch to be enabled",
            Duration::from_secs(120),
            || async {
                let enabled = self
                    .http
                    .post(self.server.url("/api/actions/branch"))
                    .bearer_auth(OPERATOR_TOKEN)
                    .json(&json!({"repo": REPO, "branch": "master", "under_test": "true"}))
                    .send()
                    .await
                    .unwrap();
                let status = enabled.status();
                assert!(
                    status.is_success() || status == 503,
                    "{status}: {}",
                    enabled.text().await.unwrap_or_default()
                );
                status.is_success()
            },
        )
        .await;
    }

    /// The runs of `test` on the commit.
    async fn runs(&self, test: &str) -> Vec<Value> {
        self.server.runs_of(REPO, &self.commit, test).await
    }

    /// Waits until one of `tests` has a running run: (that test, the machine running it).
    async fn first_running(&self, tests: &[(&str, &str)]) -> (String, String) {
        loop {
            for (test, _) in tests {
                let runs = self.runs(test).await;
                if let Some(run) = runs.iter().find(|r| r["state"] == "running") {
                    let machine = run["machine_id"].as_str().unwrap().to_string();
                    return (test.to_string(), machine);
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until every one of `tests` has a passed run.
    async fn wait_all_passed(&self, tests: &[(&str, &str)], limit: Duration) {
        self.wait_for("every test to pass", limit, || async {
            for (test, _) in tests {
                if !self.passed(test).await {
                    return false;
                }
            }
            true
        })
        .await;
    }

    async fn passed(&self, test: &str) -> bool {
        self.runs(test)
            .await
            .iter()
            .any(|run| run["state"] == "passed")
    }

    /// The pool's instances in moto: (id, state name, instance lifecycle).
    async fn pool_instances(&self) -> Vec<(String, InstanceStateName, Option<String>)> {
        let listing = self
            .ec2
            .describe_instances()
            .filters(self.owner_tag_filter.clone())
            .filters(
                Filter::builder()
                    .name("subnet-id")
                    .values(&self.subnet)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        listing
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(|i| {
                (
                    i.instance_id().unwrap().to_string(),
                    i.state().and_then(|s| s.name()).cloned().unwrap(),
                    i.instance_lifecycle().map(|l| l.as_str().to_string()),
                )
            })
            .collect()
    }

    /// The AMI an instance was launched from.
    async fn image_of(&self, instance_id: &str) -> String {
        let listing = self
            .ec2
            .describe_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .unwrap();
        listing
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find_map(|i| i.image_id().map(str::to_string))
            .unwrap()
    }

    async fn live_instances(&self) -> Vec<String> {
        self.pool_instances()
            .await
            .into_iter()
            .filter(|(_, state, _)| *state != InstanceStateName::Terminated)
            .map(|(id, _, _)| id)
            .collect()
    }

    async fn bootstrap_scripts(&self) -> Vec<String> {
        let listing = self
            .s3
            .list_objects_v2()
            .bucket(BOOTSTRAP_BUCKET)
            .prefix("test-looper/bootstrap/")
            .send()
            .await
            .unwrap();
        listing
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    }

    /// Polls `check` every 500 ms; after `limit`, panics with the server's log and the
    /// machines' logs.
    async fn wait_for<F, Fut>(&self, what: &str, limit: Duration, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + limit;
        while !check().await {
            if Instant::now() > deadline {
                let machines: String = self
                    .sim
                    .machines()
                    .iter()
                    .map(|m| format!("--- {m:?}\n{}\n", self.sim.logs(&m.instance_id)))
                    .collect();
                let commit = self
                    .server
                    .get_json(&format!("/api/commit?repo={REPO}&commit={}", self.commit))
                    .await;
                let mut run_logs = String::new();
                for row in commit
                    .iter()
                    .flat_map(|c| c["definitions"].as_array().cloned().unwrap_or_default())
                {
                    for run in row["runs"].as_array().cloned().unwrap_or_default() {
                        if run["state"] == "failed" {
                            let id = run["run_id"].as_str().unwrap_or_default();
                            let log = self
                                .http
                                .get(self.server.url(&format!("/api/runs/{id}/log")))
                                .send()
                                .await;
                            let text = match log {
                                Ok(answer) => answer.text().await.unwrap_or_default(),
                                Err(error) => error.to_string(),
                            };
                            run_logs
                                .push_str(&format!("--- failed run {id}:\n{}\n", tail(&text, 30)));
                        }
                    }
                }
                panic!(
                    "timed out after {limit:?} waiting for {what}\n--- server log:\n{}\n{machines}\n{run_logs}--- commit: {commit:#?}",
                    tail(&self.server.log_text(), 80),
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Every sample of held instances is within `max_workers`.
    fn assert_limits_held(&self, max_workers: usize) {
        let samples = self.sim.samples();
        assert!(samples.len() > 20, "too few samples: {}", samples.len());
        let worst = samples.iter().map(|s| s.held).max().unwrap_or(0);
        assert!(
            worst <= max_workers,
            "{worst} instances held at once, limit {max_workers}: {:?}",
            samples.iter().find(|s| s.held > max_workers)
        );
    }
}

/// Creates an IAM instance profile in moto (IAM's query API; moto routes by the signing scope
/// and does not check the signature).
async fn create_instance_profile(endpoint: &str, name: &str) {
    let answer = reqwest::Client::new()
        .post(endpoint)
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20261204/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0",
        )
        .form(&[
            ("Action", "CreateInstanceProfile"),
            ("InstanceProfileName", name),
            ("Version", "2010-05-08"),
        ])
        .send()
        .await
        .unwrap();
    let status = answer.status();
    assert!(
        status.is_success(),
        "{status}: {}",
        answer.text().await.unwrap()
    );
}

/// The `machine_management:` section of the README's AWS example, `${VARS}` filled.
fn example_pool_section(vars: &[(&str, String)]) -> String {
    let text =
        std::fs::read_to_string(workspace_root().join("deploy/config.aws.example.yml")).unwrap();
    let start = text
        .find("\nmachine_management:\n")
        .expect("a machine_management section")
        + 1;
    let end = start + text[start..].find("\nauth:").expect("auth after it") + 1;
    let mut section = text[start..end].to_string();
    for (name, value) in vars {
        section = section.replace(&format!("${{{name}}}"), value);
    }
    section
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[tokio::test]
async fn the_aws_example_runs_tests_on_simulated_instances() {
    let tests = [
        ("pass/a", "sleep 3 && bash src/tests/pass.sh"),
        ("pass/b", "sleep 3 && bash src/tests/pass.sh"),
        ("pass/c", "sleep 3 && bash src/tests/pass.sh"),
        ("pass/d", "sleep 3 && bash src/tests/pass.sh"),
    ];
    let cloud = Cloud::start(&tests, PoolKnobs::small()).await;
    cloud.enable_branch().await;

    // While the first machine is up: the example's host_ips are in its /etc/hosts.
    cloud
        .wait_for(
            "a machine to register",
            Duration::from_secs(120),
            || async {
                cloud
                    .server
                    .get_json("/api/machines")
                    .await
                    .is_some_and(|v| v["machines"].as_array().is_some_and(|m| !m.is_empty()))
            },
        )
        .await;
    let first = cloud.live_instances().await;
    let hosts = cloud
        .sim
        .exec(&first[0], &["cat", "/etc/hosts"])
        .unwrap_or_default();
    assert!(hosts.contains(" git.internal"), "{hosts}");

    cloud
        .wait_all_passed(&tests, Duration::from_secs(300))
        .await;
    let mut passed_runs = Vec::new();
    for (test, _) in &tests {
        let runs = cloud.runs(test).await;
        let passed = runs.iter().find(|r| r["state"] == "passed").unwrap();
        assert!(
            passed["machine_id"].as_str().unwrap().starts_with("i-"),
            "{passed:#}"
        );
        let run_id = passed["run_id"].as_str().unwrap();
        let page = cloud
            .server
            .get_json(&format!("/api/runs/{run_id}"))
            .await
            .expect("the run's page");
        passed_runs.push(page["run"].clone());
    }
    // Packed: the four 1-core tests shared instances, two of them at the same time on one.
    let machines: std::collections::BTreeSet<&str> = passed_runs
        .iter()
        .filter_map(|run| run["machine_id"].as_str())
        .collect();
    assert!(machines.len() < tests.len(), "{passed_runs:#?}");
    let overlapping = passed_runs.iter().enumerate().any(|(i, a)| {
        passed_runs[i + 1..].iter().any(|b| {
            a["machine_id"] == b["machine_id"]
                && a["started"].as_u64() < b["ended"].as_u64()
                && b["started"].as_u64() < a["ended"].as_u64()
        })
    });
    assert!(
        overlapping,
        "no two tests ran at once on one instance: {passed_runs:#?}"
    );

    // The example asks for spot: moto reports the instances as spot instances.
    let instances = cloud.pool_instances().await;
    assert!(
        instances
            .iter()
            .all(|(_, _, lifecycle)| lifecycle.as_deref() == Some("spot")),
        "{instances:?}"
    );

    // /machines and its API show the pool, with a decision and costs.
    let status = cloud
        .server
        .get_json("/api/machines/pool")
        .await
        .expect("pool status");
    assert_eq!(status["worker_name"], WORKER_NAME, "{status:#}");
    assert!(status["steps"].as_u64().unwrap() > 0, "{status:#}");
    assert!(
        status["last_decision"]["explanation"].as_str().is_some(),
        "{status:#}"
    );
    assert!(
        status["spend_dollars"].as_f64().unwrap() > 0.0,
        "{status:#}"
    );
    let page = cloud
        .http
        .get(cloud.server.url("/machines"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"ec2-pool\""), "{page}");
    assert!(page.contains("Last decision"), "{page}");

    // Scale-in: idle machines are drained and terminated; their scripts are gone.
    cloud
        .wait_for(
            "the idle instances to be terminated",
            Duration::from_secs(120),
            || async { cloud.live_instances().await.is_empty() },
        )
        .await;
    cloud
        .wait_for(
            "the bootstrap scripts to be deleted",
            Duration::from_secs(30),
            || async { cloud.bootstrap_scripts().await.is_empty() },
        )
        .await;
    assert!(
        cloud.sim.machines().iter().all(|m| !m.died),
        "{:?}",
        cloud.sim.machines()
    );
    let log = cloud.server.log_text();
    assert!(!log.contains("NeverRegistered"), "{}", tail(&log, 80));
    cloud.assert_limits_held(2);
    drop(cloud.dir);
}

#[tokio::test]
async fn chaos_server_killed_and_machine_killed() {
    let tests = [
        ("slow/a", "sleep 20 && bash src/tests/pass.sh"),
        ("slow/b", "sleep 20 && bash src/tests/pass.sh"),
    ];
    let mut cloud = Cloud::start(
        &tests,
        PoolKnobs {
            max_workers: 3,
            spot: false,
            ..PoolKnobs::small()
        },
    )
    .await;
    cloud.enable_branch().await;

    // Kill the server as soon as it has launched, before any machine registered; start it
    // again: the launched instances are adopted, nothing is launched twice for one item.
    cloud
        .wait_for("the first launch", Duration::from_secs(60), || async {
            !cloud.live_instances().await.is_empty()
        })
        .await;
    cloud.server.kill();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let launched_before_restart = cloud.pool_instances().await.len();
    cloud.server.restart();

    // A machine dies mid-run: its run is retried once on another machine.
    let (victim_test, victim) = cloud.first_running(&tests).await;
    let before_kill: Vec<String> = cloud
        .pool_instances()
        .await
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    cloud.sim.kill_machine(&victim);
    // The dead machine's instance vanishes and a new one is launched for the lost run.
    cloud
        .wait_for(
            "a replacement instance",
            Duration::from_secs(60),
            || async {
                cloud
                    .pool_instances()
                    .await
                    .iter()
                    .any(|(id, _, _)| !before_kill.contains(id))
            },
        )
        .await;

    cloud
        .wait_all_passed(&tests, Duration::from_secs(300))
        .await;
    let runs = cloud.runs(&victim_test).await;
    let states: Vec<&str> = runs.iter().filter_map(|r| r["state"].as_str()).collect();
    assert_eq!(
        states.iter().filter(|s| **s == "passed").count(),
        1,
        "{runs:#?}"
    );
    assert_eq!(runs.len(), 2, "the lost run is retried once: {runs:#?}");
    let retried = runs.iter().find(|r| r["state"] == "passed").unwrap();
    assert_ne!(retried["machine_id"], victim.as_str(), "{runs:#?}");

    // Only the killed machine lost a run: scale-in never ended a busy machine.
    for (test, _) in &tests {
        for run in cloud.runs(test).await {
            if run["state"] != "passed" {
                assert_eq!(run["machine_id"], victim.as_str(), "{run:#}");
            }
        }
    }
    let died: Vec<String> = cloud
        .sim
        .machines()
        .into_iter()
        .filter(|m| m.died)
        .map(|m| m.instance_id)
        .collect();
    assert_eq!(died, vec![victim.clone()]);

    // Nothing orphaned: after the idle timeout every instance is terminated.
    cloud
        .wait_for(
            "every instance to be terminated",
            Duration::from_secs(150),
            || async { cloud.live_instances().await.is_empty() },
        )
        .await;
    let total = cloud.pool_instances().await.len();
    assert!(
        total <= launched_before_restart + 3,
        "{total} instances for 2 items, {launched_before_restart} launched before the restart"
    );
    cloud.assert_limits_held(3);
}

#[tokio::test]
async fn a_spot_capacity_error_falls_back_to_on_demand() {
    let tests = [("pass/a", "bash src/tests/pass.sh")];
    let cloud = Cloud::start(
        &tests,
        PoolKnobs {
            spot_capacity_errors: Some(true),
            ..PoolKnobs::small()
        },
    )
    .await;
    cloud.enable_branch().await;
    cloud
        .wait_for("the test to pass", Duration::from_secs(240), || async {
            cloud.passed("pass/a").await
        })
        .await;
    let instances = cloud.pool_instances().await;
    assert!(!instances.is_empty());
    assert!(
        instances
            .iter()
            .all(|(_, _, lifecycle)| lifecycle.as_deref() != Some("spot")),
        "{instances:?}"
    );
    let log = cloud.server.log_text();
    assert!(
        log.contains("InsufficientInstanceCapacity"),
        "{}",
        tail(&log, 60)
    );
}

#[tokio::test]
async fn a_naked_ami_test_runs_on_a_one_shot_instance_of_that_ami() {
    let mut naked = String::new();
    let cloud = Cloud::start_with(
        |ami| {
            naked = ami.to_string();
            let docker = yml(&[("pass/a", "bash src/tests/pass.sh")]);
            let vm = format!(
                "  vm:\n    platform: linux\n    image:\n      base_ami: {ami}\n      \
                 setup_script_contents: mkdir -p /opt/suite && echo set up by the AMI script > /opt/suite/README\n    \
                 variables:\n      GREETING: hello\n"
            );
            docker.replacen("environments:\n", &format!("environments:\n{vm}"), 1)
                + "  vm/check:\n    environment: vm\n    command: bash src/tests/pass.sh\n    dependencies: {src: HEAD}\n"
        },
        PoolKnobs::small(),
    )
    .await;
    cloud.enable_branch().await;
    let tests = [("pass/a", ""), ("vm/check", "")];
    cloud
        .wait_all_passed(&tests, Duration::from_secs(300))
        .await;
    let machine_of = |runs: Vec<Value>| {
        runs.into_iter()
            .find(|run| run["state"] == "passed")
            .and_then(|run| run["machine_id"].as_str().map(str::to_string))
            .unwrap()
    };
    let vm_machine = machine_of(cloud.runs("vm/check").await);
    let docker_machine = machine_of(cloud.runs("pass/a").await);
    assert_ne!(vm_machine, docker_machine);
    assert_eq!(cloud.image_of(&vm_machine).await, naked);
    assert_ne!(cloud.image_of(&docker_machine).await, naked);

    // One-shot: the naked-AMI instance ends after its run, long before an idle timeout would
    // end a worker machine.
    cloud
        .wait_for(
            "the one-shot instance to be terminated",
            Duration::from_secs(60),
            || async { !cloud.live_instances().await.contains(&vm_machine) },
        )
        .await;
    cloud.assert_limits_held(2);
}

#[tokio::test]
async fn a_reclaimed_spot_instance_is_replaced_on_demand_and_its_run_retried() {
    let tests = [("slow/a", "sleep 15 && bash src/tests/pass.sh")];
    let cloud = Cloud::start(
        &tests,
        PoolKnobs {
            spot_capacity_errors: Some(false),
            ..PoolKnobs::small()
        },
    )
    .await;
    cloud.enable_branch().await;
    let (_, victim) = cloud.first_running(&tests).await;
    let before = cloud.pool_instances().await;
    assert!(
        before
            .iter()
            .any(|(id, _, lifecycle)| *id == victim && lifecycle.as_deref() == Some("spot")),
        "{before:?}"
    );

    // EC2 reclaims the instance mid-run: it is terminated (its container goes with it) and
    // reported with the spot reason.
    cloud.fault_proxy.as_ref().unwrap().reclaim(&victim);
    cloud
        .ec2
        .terminate_instances()
        .instance_ids(&victim)
        .send()
        .await
        .unwrap();

    // The replacement is bought on demand, and the run is retried there once.
    cloud
        .wait_all_passed(&tests, Duration::from_secs(300))
        .await;
    let runs = cloud.runs("slow/a").await;
    assert_eq!(runs.len(), 2, "the lost run is retried once: {runs:#?}");
    let passed = runs.iter().find(|run| run["state"] == "passed").unwrap();
    let replacement = passed["machine_id"].as_str().unwrap();
    assert_ne!(replacement, victim);
    let after = cloud.pool_instances().await;
    let launched_after: Vec<_> = after
        .iter()
        .filter(|(id, _, _)| before.iter().all(|(old, _, _)| old != id))
        .collect();
    assert!(!launched_after.is_empty(), "{after:?}");
    assert!(
        launched_after
            .iter()
            .all(|(_, _, lifecycle)| lifecycle.as_deref() != Some("spot")),
        "spot was bought again after a reclaim: {after:?}"
    );
    assert!(
        launched_after.iter().any(|(id, _, _)| id == replacement),
        "{after:?}"
    );
    let log = cloud.server.log_text();
    assert!(
        log.contains("spot instance reclaimed"),
        "{}",
        tail(&log, 60)
    );
}

/// A small HTTP proxy in front of moto with two faults moto cannot produce itself: it answers
/// every spot `RunInstances` with EC2's capacity error (as EC2 does when the spot market has
/// no capacity), and it reports the instances it is told EC2 reclaimed with the state reason
/// `Server.SpotInstanceTermination` (moto says `Client.UserInitiatedShutdown`).
mod fault_proxy {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    use std::collections::HashSet;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    pub struct FaultProxy {
        addr: SocketAddr,
        handle: actix_web::dev::ServerHandle,
        reclaimed: Arc<Mutex<HashSet<String>>>,
    }

    /// What `forward` needs.
    struct Upstream {
        url: String,
        client: reqwest::Client,
        spot_capacity_errors: bool,
        reclaimed: Arc<Mutex<HashSet<String>>>,
    }

    const USER_SHUTDOWN: &str = "<stateReason><code>Client.UserInitiatedShutdown</code>";
    const SPOT_RECLAIM: &str = "<stateReason><code>Server.SpotInstanceTermination</code>";

    const CAPACITY_ERROR: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>InsufficientInstanceCapacity</Code><Message>There is no Spot capacity available that matches your request.</Message></Error></Errors><RequestID>fault-proxy</RequestID></Response>"#;

    impl FaultProxy {
        /// Listens on `host` (a free port) and forwards to `upstream`.
        pub fn start(host: &str, upstream: &str, spot_capacity_errors: bool) -> FaultProxy {
            let reclaimed = Arc::new(Mutex::new(HashSet::new()));
            let target = web::Data::new(Upstream {
                url: upstream.to_string(),
                client: reqwest::Client::new(),
                spot_capacity_errors,
                reclaimed: reclaimed.clone(),
            });
            let listener = std::net::TcpListener::bind(format!("{host}:0")).unwrap();
            let addr = listener.local_addr().unwrap();
            let (sender, receiver) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    let server = HttpServer::new(move || {
                        App::new()
                            .app_data(target.clone())
                            .default_service(web::to(forward))
                    })
                    .workers(1)
                    .listen(listener)
                    .unwrap()
                    .run();
                    sender.send(server.handle()).unwrap();
                    let _ = server.await;
                });
            });
            FaultProxy {
                addr,
                handle: receiver.recv().unwrap(),
                reclaimed,
            }
        }

        /// From now on EC2 reports `instance_id`, once terminated, as reclaimed.
        pub fn reclaim(&self, instance_id: &str) {
            self.reclaimed
                .lock()
                .unwrap()
                .insert(instance_id.to_string());
        }

        pub fn url(&self) -> String {
            format!("http://{}", self.addr)
        }
    }

    impl Drop for FaultProxy {
        fn drop(&mut self) {
            drop(self.handle.stop(false));
        }
    }

    /// `xml` (a `DescribeInstances` answer) with the state reason of each reclaimed
    /// instance replaced. moto writes an instance's `stateReason` before its `instanceId`,
    /// so the id after a reason is its instance's.
    fn mark_reclaimed(xml: &str, reclaimed: &HashSet<String>) -> String {
        let mut out = String::with_capacity(xml.len());
        let mut rest = xml;
        while let Some(at) = rest.find(USER_SHUTDOWN) {
            out.push_str(&rest[..at]);
            let after = &rest[at + USER_SHUTDOWN.len()..];
            let instance_id = after
                .find("<instanceId>")
                .map(|start| &after[start + "<instanceId>".len()..])
                .and_then(|id| id.split('<').next())
                .unwrap_or_default();
            out.push_str(if reclaimed.contains(instance_id) {
                SPOT_RECLAIM
            } else {
                USER_SHUTDOWN
            });
            rest = after;
        }
        out.push_str(rest);
        out
    }

    async fn forward(
        request: HttpRequest,
        body: web::Bytes,
        target: web::Data<Upstream>,
    ) -> HttpResponse {
        let upstream = &target.url;
        let client = &target.client;
        let text = String::from_utf8_lossy(&body);
        let describe = text.contains("Action=DescribeInstances");
        if target.spot_capacity_errors
            && text.contains("Action=RunInstances")
            && text.contains("MarketType=spot")
        {
            return HttpResponse::InternalServerError()
                .content_type("text/xml")
                .body(CAPACITY_ERROR);
        }
        let method = reqwest::Method::from_bytes(request.method().as_str().as_bytes()).unwrap();
        let mut forwarded = client.request(method, format!("{upstream}{}", request.uri()));
        for (name, value) in request.headers() {
            if name != "host" && name != "content-length" {
                forwarded = forwarded.header(name.as_str(), value.as_bytes());
            }
        }
        match forwarded.body(body.to_vec()).send().await {
            Ok(answer) => {
                let mut response = HttpResponse::build(
                    actix_web::http::StatusCode::from_u16(answer.status().as_u16()).unwrap(),
                );
                for (name, value) in answer.headers() {
                    if name != "content-length" && name != "transfer-encoding" {
                        response.insert_header((name.as_str(), value.as_bytes()));
                    }
                }
                let bytes = answer.bytes().await.unwrap_or_default();
                let reclaimed = target.reclaimed.lock().unwrap().clone();
                if describe && !reclaimed.is_empty() {
                    response.body(mark_reclaimed(&String::from_utf8_lossy(&bytes), &reclaimed))
                } else {
                    response.body(bytes)
                }
            }
            Err(error) => HttpResponse::BadGateway().body(error.to_string()),
        }
    }
}
