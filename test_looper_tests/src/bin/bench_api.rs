//! Benchmark: latency of the JSON API under concurrent clients on loopback (goal: p99 < 50 ms
//! with 100 clients). Starts a real server in process with its services (scheduler over a
//! real Redis, git feed, disk artifact store) over a generated repo (by default 1,000 commits
//! × 100 definitions in 4 projects, a side branch merged every 100 commits, every commit's
//! tests distinct because they depend on the commit's source), the newest 50 commits enabled
//! with finished and in-flight runs. Then each client (its own keep-alive connection, see
//! [`test_looper_tests::load`]) sends a bounded number of requests over a mix of endpoints:
//! repos, repo, branch grid (pages 1 and 2 of 50 commits), commit (any of the newest 50),
//! test history (several tests), machines + queue, run.
//!
//! Two loads are measured: *quiet*, with nothing changing, and *live*, while runs start and
//! finish at `--live-rate` per second (each one a new version of the scheduler's state, so
//! every kept view is recomputed on its next request). Prints the first (cold) request per
//! endpoint, p50/p90/p99/max per endpoint and overall, and the throughput of each load.
//!
//! Run: `cargo build --release -p test_looper_tests --bin bench_api`, then
//! `$CARGO_TARGET_DIR/release/bench_api [CLIENTS [REQUESTS_PER_CLIENT]] [--commits N]
//! [--tests N] [--live-rate N]` (defaults: 100 clients × 1,000 requests, 1,000 commits, 100
//! definitions, 20 runs per second; `--live-rate 0` skips the live load).

use std::sync::Arc;
use std::time::{Duration, Instant};
use test_looper_core::protocol::{
    Completion, FailureReason, MachineInfo, OsConfig, RunOutcome, RunResult, Work,
};
use test_looper_server::scheduler::Scheduler;
use test_looper_server::services;
use test_looper_server::AppContext;
use test_looper_tests::{load, GitRepo, RedisServer};

/// Commits enabled (prioritized) from the head down.
const ENABLED: usize = 50;
/// Runs taken from the scheduler; the last few stay in flight.
const RUNS: u64 = 2_000;
const IN_FLIGHT: u64 = 4;

struct Options {
    clients: usize,
    per_client: usize,
    commits: usize,
    tests: usize,
    live_rate: u32,
}

fn options() -> anyhow::Result<Options> {
    let mut positional = Vec::new();
    let mut commits = 1_000;
    let mut tests = 100;
    let mut live_rate = 20;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> anyhow::Result<usize> {
            args.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("{name} needs a number"))
        };
        match arg.as_str() {
            "--commits" => commits = value("--commits")?.max(2),
            "--tests" => tests = value("--tests")?.max(2),
            "--live-rate" => live_rate = u32::try_from(value("--live-rate")?)?,
            other => positional.push(
                other
                    .parse::<usize>()
                    .map_err(|_| anyhow::anyhow!("unexpected argument {other}"))?,
            ),
        }
    }
    Ok(Options {
        clients: positional.first().copied().unwrap_or(100).max(1),
        per_client: positional.get(1).copied().unwrap_or(1000).max(1),
        commits,
        tests,
        live_rate,
    })
}

/// One build and `tests - 1` tests over 4 projects, all depending on the commit's source.
fn definitions(tests: usize) -> String {
    let mut yaml = String::from(
        "looper_version: 4\nenvironments: {linux: {platform: linux, image: {dockerfile_contents: \"FROM x\"}}}\nbuilds:\n  build/linux: {command: make, dependencies: {src: HEAD}}\ntests:\n",
    );
    for t in 1..tests {
        yaml.push_str(&format!(
            "  p{}/t{t}/linux: {{command: \"./t{t}\", dependencies: {{src: HEAD}}}}\n",
            t % 4
        ));
    }
    yaml
}

/// Builds the history of `master`: `commits` commits, of which every 100th is the merge of a
/// two-commit side branch. Returns the hashes on master's first-parent line, oldest first.
fn build_history(repo: &GitRepo, commits: usize, tests: usize) -> Vec<String> {
    let defs = definitions(tests);
    let mut hashes = vec![repo
        .commit("master", "commit 0", &[("testlooper.yml", defs.as_str())])
        .to_string()];
    let mut made = 1;
    while made < commits {
        if made % 100 == 99 && commits - made >= 3 {
            let side = format!("side-{made}");
            let base = repo.branch_head("master").expect("master exists");
            repo.set_branch(&side, base);
            for s in 0..2 {
                let text = format!("side {made} {s}");
                repo.commit(
                    &side,
                    &format!("side work {made}.{s}"),
                    &[("side.txt", &text)],
                );
            }
            let text = format!("{made}");
            repo.commit("master", &format!("commit {made}"), &[("src.txt", &text)]);
            hashes.push(
                repo.merge("master", &side, &format!("merge {side}"))
                    .to_string(),
            );
            repo.delete_branch(&side);
            made += 4;
            continue;
        }
        let text = format!("{made}");
        hashes.push(
            repo.commit(
                "master",
                &format!("commit {made} <escaped>"),
                &[("src.txt", text.as_str())],
            )
            .to_string(),
        );
        made += 1;
    }
    hashes
}

fn percentile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index.min(samples.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// An endpoint and the URLs requests to it rotate through.
struct Endpoint {
    name: &'static str,
    paths: Vec<String>,
}

/// Sends `per_client` requests from each of `clients` clients, rotating over the endpoints.
async fn measure(
    addr: std::net::SocketAddr,
    endpoints: &Arc<Vec<Endpoint>>,
    clients: usize,
    per_client: usize,
) -> anyhow::Result<load::Outcome> {
    let rotation = endpoints.clone();
    load::run(
        addr,
        load::Plan {
            clients,
            per_client,
            request: Box::new(move |client, i| {
                let index = (client + i) % rotation.len();
                let paths = &rotation[index].paths;
                (
                    index,
                    paths[(client / rotation.len() + i) % paths.len()].clone(),
                )
            }),
        },
    )
    .await
}

/// Prints the percentiles of one load, per endpoint and overall.
fn report(title: &str, endpoints: &[Endpoint], outcome: &load::Outcome) {
    println!("{title}");
    let samples = &outcome.samples;
    for (index, endpoint) in endpoints.iter().enumerate() {
        let mut times: Vec<Duration> = samples
            .iter()
            .filter(|s| s.endpoint == index)
            .map(|s| s.latency)
            .collect();
        times.sort();
        println!(
            "  {:<13} n={:<6} p50 {:>6.1} ms  p90 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms",
            endpoint.name,
            times.len(),
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.9)),
            ms(percentile(&times, 0.99)),
            ms(percentile(&times, 1.0)),
        );
    }
    let failures = samples.iter().filter(|s| !s.ok).count();
    let bytes: usize = samples.iter().map(|s| s.bytes).sum();
    let mut overall: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    overall.sort();
    let seconds = outcome.elapsed.as_secs_f64();
    println!(
        "  overall: {} requests in {seconds:.2} s ({:.0} req/s, {:.0} MB/s), {failures} failed; p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        samples.len(),
        samples.len() as f64 / seconds,
        bytes as f64 / seconds / 1e6,
        ms(percentile(&overall, 0.5)),
        ms(percentile(&overall, 0.9)),
        ms(percentile(&overall, 0.99)),
        ms(percentile(&overall, 1.0)),
    );
}

/// Starts and finishes `per_second` runs a second (every ninth fails) until aborted: each
/// step moves the scheduler's state, as a busy installation's workers do.
async fn start_and_finish_runs(scheduler: Arc<Scheduler>, per_second: u32) {
    let machine = "live".to_string();
    let registered = scheduler
        .register_machine(MachineInfo {
            machine_id: machine.clone(),
            cores: 8,
            ram_gb: 32,
            os: OsConfig::LinuxDocker,
            shares_cores: false,
        })
        .await;
    if let Err(err) = registered {
        eprintln!("cannot register the live machine: {err}");
        return;
    }
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / per_second);
    for n in 0u64.. {
        ticks.tick().await;
        let Ok(Some(Work::Run(assignment))) = scheduler.next_work(&machine).await else {
            continue;
        };
        let _ = scheduler
            .record_completion(&completion(&assignment, n))
            .await;
    }
}

/// The completion of the `n`-th run: every ninth fails.
fn completion(assignment: &test_looper_core::protocol::Assignment, n: u64) -> Completion {
    let result = if n.is_multiple_of(9) {
        RunResult::Failed {
            reason: FailureReason::TestFailure,
            message: "exit code 1".into(),
        }
    } else {
        RunResult::Passed
    };
    Completion {
        run_id: assignment.run_id.clone(),
        outcome: RunOutcome {
            result,
            test_cases: Vec::new(),
            artifacts: assignment.artifacts.clone(),
        },
    }
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let Options {
        clients,
        per_client,
        commits,
        tests,
        live_rate,
    } = options()?;

    let redis = RedisServer::start();
    let dir = tempfile::tempdir()?;
    let repo = GitRepo::init_bare(&dir.path().join("repos/app"));
    let built = Instant::now();
    let hashes = build_history(&repo, commits, tests);
    let head = hashes.last().cloned().unwrap_or_default();
    println!(
        "history: {commits} commits built in {:.1} s",
        built.elapsed().as_secs_f64()
    );

    let mut config = test_looper_tests::server::local_config(dir.path(), &redis.url());
    config.server.http_port = 0;
    config.server.bind = "127.0.0.1".into();
    let context = AppContext::new(config)?;
    let services = services::start(&context).await?;
    let scheduler = services.scheduler.clone();
    let (server, addrs) = test_looper_server::web::start(context.clone(), ("127.0.0.1".into(), 0))?;
    let handle = server.handle();
    actix_web::rt::spawn(server);
    let base = format!("http://{}", addrs[0]);

    // Wait for the scan, enable the newest commits, and run some work.
    let started = Instant::now();
    loop {
        let known = scheduler
            .read(|engine| engine.branch("app", "master").and_then(|b| b.head.clone()))
            .await;
        if known.as_deref() == Some(head.as_str()) {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "scan timed out"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "scan + scheduler ingest: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    scheduler
        .set_branch_under_test("app", "master", true)
        .await?;
    scheduler
        .prioritize_branch_history("app", "master", 1, ENABLED)
        .await?;
    for m in 0..4 {
        scheduler
            .register_machine(MachineInfo {
                machine_id: format!("m{m}"),
                cores: 8,
                ram_gb: 32,
                os: OsConfig::LinuxDocker,
                shares_cores: false,
            })
            .await?;
    }
    let mut run_ids = Vec::new();
    for n in 0..RUNS {
        let machine = format!("m{}", n % 4);
        let Some(Work::Run(assignment)) = scheduler.next_work(&machine).await? else {
            break;
        };
        run_ids.push(assignment.run_id.clone());
        if n >= RUNS - IN_FLIGHT {
            continue;
        }
        scheduler
            .record_completion(&completion(&assignment, n))
            .await?;
    }
    println!(
        "data: {commits} commits x {tests} definitions, {ENABLED} enabled, {} runs; load: {clients} clients x {per_client} requests",
        run_ids.len()
    );

    let newest: Vec<&String> = hashes.iter().rev().take(ENABLED).collect();
    let endpoints = vec![
        Endpoint {
            name: "repos",
            paths: vec!["/api/repos".into()],
        },
        Endpoint {
            name: "repo",
            paths: vec!["/api/repo?repo=app".into()],
        },
        Endpoint {
            name: "branch",
            paths: vec![
                "/api/branch?repo=app&branch=master".into(),
                "/api/branch?repo=app&branch=master".into(),
                "/api/branch?repo=app&branch=master&page=1".into(),
            ],
        },
        Endpoint {
            name: "commit",
            paths: newest
                .iter()
                .map(|hash| format!("/api/commit?repo=app&commit={hash}"))
                .collect(),
        },
        Endpoint {
            name: "test_history",
            paths: (1..tests.min(6))
                .map(|t| {
                    format!(
                        "/api/test_history?repo=app&branch=master&test=p{}/t{t}/linux",
                        t % 4
                    )
                })
                .collect(),
        },
        Endpoint {
            name: "machines",
            paths: vec!["/api/machines".into()],
        },
        Endpoint {
            name: "run",
            paths: run_ids
                .iter()
                .step_by((run_ids.len() / 20).max(1))
                .map(|id| format!("/api/runs/{id}"))
                .collect(),
        },
    ];
    anyhow::ensure!(
        endpoints.iter().all(|e| !e.paths.is_empty()),
        "an endpoint has nothing to ask for"
    );

    // The first request to each endpoint (cold caches), then every URL once.
    let warm = reqwest::Client::new();
    for endpoint in &endpoints {
        for (index, path) in endpoint.paths.iter().enumerate() {
            let sent = Instant::now();
            let response = warm.get(format!("{base}{path}")).send().await?;
            anyhow::ensure!(
                response.status().is_success(),
                "{}: {}",
                endpoint.name,
                response.status()
            );
            let bytes = response.bytes().await?;
            if index == 0 {
                println!(
                    "  first {:<13} {:>7.1} ms ({} bytes)",
                    endpoint.name,
                    ms(sent.elapsed()),
                    bytes.len()
                );
            }
        }
    }

    let endpoints = Arc::new(endpoints);
    let quiet = measure(addrs[0], &endpoints, clients, per_client).await?;
    report("quiet: nothing changes during the load", &endpoints, &quiet);
    if live_rate > 0 {
        let writer = tokio::spawn(start_and_finish_runs(scheduler.clone(), live_rate));
        let live = measure(addrs[0], &endpoints, clients, per_client).await?;
        writer.abort();
        report(
            &format!("live: {live_rate} runs start and finish per second during the load"),
            &endpoints,
            &live,
        );
    }
    handle.stop(true).await;
    drop(services);
    Ok(())
}
