//! Benchmark: latency of the JSON API under 100 concurrent clients on loopback (goal: p99
//! < 50 ms). Starts a real server in process with its services (scheduler over a real
//! Redis, git feed, disk artifact store) over a generated repo (200 commits × 20 tests in 4
//! projects, every commit's tests distinct because they depend on the commit's source), the
//! branch under test with finished and in-flight runs, then 100 clients (each with its own
//! keep-alive connection) send a bounded number of requests over a mix of endpoints: repos,
//! repo, branch grid (50 commits), commit, test history, machines + queue, run. Prints
//! p50/p90/p99/max per endpoint and overall, and the throughput.
//! Run: `cargo run --release -p test_looper_tests --bin bench_api [-- CLIENTS REQUESTS_PER_CLIENT]`.

use std::sync::Arc;
use std::time::{Duration, Instant};
use test_looper_core::protocol::{
    Completion, FailureReason, MachineInfo, OsConfig, RunOutcome, RunResult, Work,
};
use test_looper_server::services;
use test_looper_server::AppContext;
use test_looper_tests::{GitRepo, RedisServer};

const COMMITS: usize = 200;
const TESTS: usize = 20;

fn definitions() -> String {
    let mut yaml = String::from(
        "looper_version: 4\nenvironments: {linux: {platform: linux, image: {dockerfile_contents: \"FROM x\"}}}\nbuilds:\n  build/linux: {command: make, dependencies: {src: HEAD}}\ntests:\n",
    );
    for t in 1..TESTS {
        yaml.push_str(&format!(
            "  p{}/t{t}/linux: {{command: \"./t{t}\", dependencies: {{src: HEAD}}}}\n",
            t % 4
        ));
    }
    yaml
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

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let clients = args.first().copied().unwrap_or(100);
    let per_client = args.get(1).copied().unwrap_or(100);

    let redis = RedisServer::start();
    let dir = tempfile::tempdir()?;
    let repo = GitRepo::init_bare(&dir.path().join("repos/app"));
    let defs = definitions();
    let mut hashes = Vec::with_capacity(COMMITS);
    hashes.push(
        repo.commit("master", "commit 0", &[("testlooper.yml", defs.as_str())])
            .to_string(),
    );
    for i in 1..COMMITS {
        let text = format!("{i}");
        hashes.push(
            repo.commit(
                "master",
                &format!("commit {i} <escaped>"),
                &[("src.txt", text.as_str())],
            )
            .to_string(),
        );
    }
    let head = hashes.last().cloned().unwrap_or_default();

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

    // Wait for the scan, enable the newest 50 commits, and run some work.
    let started = Instant::now();
    loop {
        let known = scheduler
            .read(|engine| engine.branch("app", "master").and_then(|b| b.head.clone()))
            .await;
        if known.as_deref() == Some(head.as_str()) {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "scan timed out"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    scheduler
        .set_branch_under_test("app", "master", true)
        .await?;
    scheduler
        .prioritize_branch_history("app", "master", 1, 50)
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
    for n in 0..600u64 {
        let machine = format!("m{}", n % 4);
        let Some(Work::Run(assignment)) = scheduler.next_work(&machine).await? else {
            break;
        };
        run_ids.push(assignment.run_id.clone());
        // The last few stay in flight.
        if n >= 596 {
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
        "data: {COMMITS} commits x {TESTS} definitions, {} runs; load: {clients} clients x {per_client} requests",
        run_ids.len()
    );

    let endpoints: Vec<(&'static str, String)> = vec![
        ("repos", "/api/repos".to_string()),
        ("repo", "/api/repo?repo=app".to_string()),
        ("branch", "/api/branch?repo=app&branch=master".to_string()),
        ("commit", format!("/api/commit?repo=app&commit={head}")),
        (
            "test_history",
            "/api/test_history?repo=app&branch=master&test=p1/t1/linux".to_string(),
        ),
        ("machines", "/api/machines".to_string()),
        (
            "run",
            format!("/api/runs/{}", run_ids.first().cloned().unwrap_or_default()),
        ),
    ];
    // Warm up every endpoint once (caches of parsed definitions, connections).
    let warm = reqwest::Client::new();
    for (name, path) in &endpoints {
        let response = warm.get(format!("{base}{path}")).send().await?;
        anyhow::ensure!(
            response.status().is_success(),
            "{name}: {}",
            response.status()
        );
        response.bytes().await?;
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
                let (name, path) = &endpoints[(client_index + i) % endpoints.len()];
                let sent = Instant::now();
                let ok = match client.get(format!("{base}{path}")).send().await {
                    Ok(response) => {
                        let ok = response.status().is_success();
                        ok && response.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                samples.push((*name, sent.elapsed(), ok));
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
    for (name, _) in endpoints.iter() {
        let mut times: Vec<Duration> = all
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, d, _)| *d)
            .collect();
        times.sort();
        println!(
            "  {name:<13} n={:<5} p50 {:>6.1} ms  p90 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms",
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
