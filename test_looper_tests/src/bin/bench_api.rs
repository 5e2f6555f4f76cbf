//! Benchmark: latency of the JSON API under concurrent clients on loopback (goal: p99 < 50 ms
//! with 100 clients). Starts a real server in process with its services (scheduler over a
//! real Redis, git feed, disk artifact store) over a generated repo (by default 1,000 commits
//! × 100 definitions in 4 projects, a side branch merged every 100 commits, every commit's
//! tests distinct because they depend on the commit's source), the newest 50 commits enabled
//! with finished and in-flight runs. Then each client (its own keep-alive connection) sends a
//! bounded number of requests over a mix of endpoints: repos, repo, branch grid (pages 1 and
//! 2 of 50 commits), commit (any of the newest 50), test history (several tests), machines +
//! queue, run. Prints the first (cold) request per endpoint, p50/p90/p99/max per endpoint and
//! overall, and the throughput.
//!
//! Run: `cargo build --release -p test_looper_tests --bin bench_api`, then
//! `$CARGO_TARGET_DIR/release/bench_api [CLIENTS [REQUESTS_PER_CLIENT]] [--commits N] [--tests N]`
//! (defaults: 100 clients × 100 requests, 1,000 commits, 100 definitions).

use std::sync::Arc;
use std::time::{Duration, Instant};
use test_looper_core::protocol::{
    Completion, FailureReason, MachineInfo, OsConfig, RunOutcome, RunResult, Work,
};
use test_looper_server::services;
use test_looper_server::AppContext;
use test_looper_tests::{GitRepo, RedisServer};

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
}

fn options() -> anyhow::Result<Options> {
    let mut positional = Vec::new();
    let mut commits = 1_000;
    let mut tests = 100;
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
            other => positional.push(
                other
                    .parse::<usize>()
                    .map_err(|_| anyhow::anyhow!("unexpected argument {other}"))?,
            ),
        }
    }
    Ok(Options {
        clients: positional.first().copied().unwrap_or(100).max(1),
        per_client: positional.get(1).copied().unwrap_or(100).max(1),
        commits,
        tests,
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

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let Options {
        clients,
        per_client,
        commits,
        tests,
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
    let (server, addrs) =
        test_looper_server::http::start(context.clone(), ("127.0.0.1".into(), 0))?;
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
        let result = if n % 9 == 0 {
            RunResult::Failed {
                reason: FailureReason::TestFailure,
                message: "exit code 1".into(),
            }
        } else {
            RunResult::Passed
        };
        scheduler
            .record_completion(&Completion {
                run_id: assignment.run_id.clone(),
                outcome: RunOutcome {
                    result,
                    test_cases: Vec::new(),
                    artifacts: assignment.artifacts.clone(),
                },
            })
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
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for client_index in 0..clients {
        let endpoints = endpoints.clone();
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("client");
            let mut samples = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let endpoint = &endpoints[(client_index + i) % endpoints.len()];
                let path =
                    &endpoint.paths[(client_index / endpoints.len() + i) % endpoint.paths.len()];
                let sent = Instant::now();
                let ok = match client.get(format!("{base}{path}")).send().await {
                    Ok(response) => {
                        let ok = response.status().is_success();
                        ok && response.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                samples.push((endpoint.name, sent.elapsed(), ok));
            }
            samples
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await?);
    }
    let elapsed = start.elapsed();
    let failures = all.iter().filter(|(_, _, ok)| !ok).count();
    let mut overall: Vec<Duration> = all.iter().map(|(_, d, _)| *d).collect();
    overall.sort();
    for endpoint in endpoints.iter() {
        let mut times: Vec<Duration> = all
            .iter()
            .filter(|(n, _, _)| *n == endpoint.name)
            .map(|(_, d, _)| *d)
            .collect();
        times.sort();
        println!(
            "  {:<13} n={:<5} p50 {:>6.1} ms  p90 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms",
            endpoint.name,
            times.len(),
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.9)),
            ms(percentile(&times, 0.99)),
            ms(percentile(&times, 1.0)),
        );
    }
    println!(
        "overall: {} requests in {:.2} s ({:.0} req/s), {failures} failed; p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        all.len(),
        elapsed.as_secs_f64(),
        all.len() as f64 / elapsed.as_secs_f64(),
        ms(percentile(&overall, 0.5)),
        ms(percentile(&overall, 0.9)),
        ms(percentile(&overall, 0.99)),
        ms(percentile(&overall, 1.0)),
    );
    handle.stop(true).await;
    drop(services);
    Ok(())
}
