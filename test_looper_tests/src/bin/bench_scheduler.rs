//! Scheduler benchmarks against a real Redis on loopback (issue 5):
//!
//! - (a) enable a branch of 10,000 commits × 50 definitions (1 build + 49 tests per commit,
//!   every hash distinct) and compute every priority; ingestion is timed separately.
//! - (b) sustained assignment + completion throughput with instant stand-in workers.
//! - (c) p50/p99 latency of `next_work` and `record_completion`, with one worker (no
//!   contention) and under the concurrent load of (b).
//!
//! Run: `cargo run --release -p test_looper_tests --bin bench_scheduler [-- COMMITS TESTS]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use test_looper_core::definitions::memory::MemorySource;
use test_looper_core::definitions::{
    resolve_commit, CommitRef, ResolvedCommit, ResolvedDependency,
};
use test_looper_core::protocol::{
    Completion, MachineInfo, OsConfig, RunOutcome, RunResult, TestCaseResult, Work,
};
use test_looper_core::scheduling::{CommitInfo, ParseOutcome, SchedulerConfig};
use test_looper_server::scheduler::clock::SystemClock;
use test_looper_server::scheduler::results::ArtifactResultStore;
use test_looper_server::scheduler::timings::Phase;
use test_looper_server::scheduler::Scheduler;
use test_looper_tests::RedisServer;

/// One commit's definitions: build `build` and `tests - 1` tests depending on it.
fn template(tests: usize) -> ResolvedCommit {
    let mut yaml = String::from(
        "looper_version: 4\nenvironments:\n  linux:\n    platform: linux\n    image:\n      dockerfile_contents: \"FROM test-looper/base:1\"\nbuilds:\n  build:\n    environment: linux\n    command: \"make\"\ntests:\n",
    );
    for i in 1..tests {
        yaml.push_str(&format!(
            "  test_{i}:\n    environment: linux\n    command: \"run {i}\"\n    dependencies:\n      b: build\n"
        ));
    }
    let mut source = MemorySource::new()
        .accepting_any_ref()
        .assuming_paths_exist();
    source.add_file("bench", "template", "testDefinitions.yml", &yaml);
    resolve_commit(&CommitRef::new("bench", "template"), &source).expect("template resolves")
}

/// The template made distinct for commit `index` (as if every build depended on the
/// commit's own source): fresh hashes, tests pointing at this commit's build.
fn commit_definitions(template: &ResolvedCommit, repo: &str, index: usize) -> ResolvedCommit {
    let mut resolved = template.clone();
    resolved.commit = CommitRef::new(repo, format!("c{index}"));
    let build_hash = format!("{index:08}-build");
    for definition in resolved.definitions.values_mut() {
        if definition.name == "build" {
            definition.hash = build_hash.clone();
        } else {
            definition.hash = format!("{index:08}-{}", definition.name);
            for dependency in definition.dependencies.values_mut() {
                if let ResolvedDependency::Build { hash, .. } = dependency {
                    *hash = build_hash.clone();
                }
            }
        }
    }
    resolved
}

fn history(template: &ResolvedCommit, repo: &str, commits: usize) -> Vec<CommitInfo> {
    (0..commits)
        .map(|index| CommitInfo {
            hash: format!("c{index}"),
            parents: if index == 0 {
                vec![]
            } else {
                vec![format!("c{}", index - 1)]
            },
            author: "bench".into(),
            timestamp: 1_600_000_000 + index as i64,
            subject: format!("commit {index}"),
            parse: ParseOutcome::Ok(Box::new(commit_definitions(template, repo, index))),
        })
        .collect()
}

/// How result records reach the disk (`artifacts.local_disk.result_sync_interval_ms`).
#[derive(Clone, Copy, Debug)]
enum ResultSync {
    /// The default: synced every 100 ms, off the completion's path.
    Deferred,
    /// `0`: each record synced before its completion is acknowledged.
    EachWrite,
}

async fn open(redis: &RedisServer, dir: &std::path::Path, sync: ResultSync) -> Arc<Scheduler> {
    let interval = match sync {
        ResultSync::Deferred => Duration::from_millis(100),
        ResultSync::EachWrite => Duration::ZERO,
    };
    Scheduler::open(
        &redis.client(),
        Arc::new(ArtifactResultStore::local(dir).with_deferred_sync(interval)),
        SchedulerConfig {
            id_prefix: "bench".into(),
            ..SchedulerConfig::default()
        },
        Arc::new(SystemClock),
    )
    .await
    .expect("scheduler opens")
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

async fn bench_enable(commits: usize, tests: usize) {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let scheduler = open(&redis, dir.path(), ResultSync::Deferred).await;
    let template = template(tests);
    let infos = history(&template, "big", commits);
    // Ingested as a git scan delivers a long history: in chunks of 500 commits.
    let started = Instant::now();
    let mut infos = infos.into_iter().peekable();
    while infos.peek().is_some() {
        let chunk: Vec<CommitInfo> = infos.by_ref().take(500).collect();
        let head = chunk.last().expect("non-empty chunk").hash.clone();
        scheduler
            .ingest_branch_scan("big", "main", &head, chunk)
            .await
            .expect("ingest");
    }
    let ingest = started.elapsed();
    let started = Instant::now();
    scheduler
        .set_branch_under_test("big", "main", true)
        .await
        .expect("enable");
    let visited = scheduler
        .prioritize_branch_history("big", "main", 1, commits)
        .await
        .expect("prioritize");
    let enable = started.elapsed();
    let (queued, prioritized) = scheduler
        .read(|engine| {
            let view = engine.commit_view("big", "c0").expect("c0");
            (engine.queue_len(), view.priority)
        })
        .await;
    assert_eq!(visited, commits);
    assert_eq!(prioritized, 1);
    assert_eq!(
        queued, commits,
        "one runnable build per commit, tests wait on it"
    );
    println!(
        "(a) {commits} commits x {tests} definitions ({} hashes): ingest {:.0} ms; enable + prioritize all {:.0} ms (goal < 1000 ms); {queued} builds runnable",
        commits * tests,
        ms(ingest),
        ms(enable)
    );
}

fn outcome(artifacts: Vec<String>) -> RunOutcome {
    RunOutcome {
        result: RunResult::Passed,
        test_cases: vec![TestCaseResult {
            name: "case".into(),
            passed: true,
            has_logs: false,
        }],
        artifacts,
    }
}

/// `workers` stand-in workers each loop: next work → complete at once. Returns
/// (runs, elapsed, next_work latencies, completion latencies).
async fn drive(
    scheduler: &Arc<Scheduler>,
    workers: usize,
    runs_per_worker: usize,
) -> (usize, Duration, Vec<Duration>, Vec<Duration>) {
    for worker in 0..workers {
        scheduler
            .register_machine(MachineInfo {
                machine_id: format!("w{worker}"),
                cores: 4,
                ram_gb: 16,
                os: OsConfig::LinuxDocker,
                shares_cores: false,
            })
            .await
            .expect("register");
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let scheduler = Arc::clone(scheduler);
        tasks.push(tokio::spawn(async move {
            let machine = format!("w{worker}");
            let mut next_times = Vec::with_capacity(runs_per_worker);
            let mut completion_times = Vec::with_capacity(runs_per_worker);
            for _ in 0..runs_per_worker {
                let t = Instant::now();
                let work = scheduler.next_work(&machine).await.expect("next work");
                next_times.push(t.elapsed());
                let Some(Work::Run(assignment)) = work else {
                    break;
                };
                let t = Instant::now();
                scheduler
                    .record_completion(&Completion {
                        run_id: assignment.run_id.clone(),
                        outcome: outcome(assignment.artifacts.clone()),
                    })
                    .await
                    .expect("completion");
                completion_times.push(t.elapsed());
            }
            (next_times, completion_times)
        }));
    }
    let mut next_all = Vec::new();
    let mut completion_all = Vec::new();
    for task in tasks {
        let (next_times, completion_times) = task.await.expect("worker");
        next_all.extend(next_times);
        completion_all.extend(completion_times);
    }
    let elapsed = started.elapsed();
    (completion_all.len(), elapsed, next_all, completion_all)
}

async fn bench_throughput(sync: ResultSync) {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let scheduler = open(&redis, dir.path(), sync).await;
    println!("result records: {sync:?}");
    // 200 commits x 20 tests, no builds, each test wanting 10 runs: 40,000 runs available.
    let mut yaml = String::from(
        "looper_version: 4\nenvironments:\n  linux:\n    platform: linux\n    image:\n      dockerfile_contents: \"FROM test-looper/base:1\"\ntests:\n",
    );
    for i in 0..20 {
        yaml.push_str(&format!(
            "  test_{i}:\n    environment: linux\n    command: \"run {i}\"\n"
        ));
    }
    let mut source = MemorySource::new()
        .accepting_any_ref()
        .assuming_paths_exist();
    source.add_file("bench", "template", "testDefinitions.yml", &yaml);
    let template = resolve_commit(&CommitRef::new("bench", "template"), &source).expect("resolves");
    let infos: Vec<CommitInfo> = (0..200)
        .map(|index| {
            let mut resolved = template.clone();
            for definition in resolved.definitions.values_mut() {
                definition.hash = format!("{index:04}-{}", definition.name);
            }
            CommitInfo {
                hash: format!("c{index}"),
                parents: if index == 0 {
                    vec![]
                } else {
                    vec![format!("c{}", index - 1)]
                },
                author: "bench".into(),
                timestamp: 0,
                subject: String::new(),
                parse: ParseOutcome::Ok(Box::new(resolved)),
            }
        })
        .collect();
    scheduler
        .ingest_branch_scan("r", "main", "c199", infos)
        .await
        .expect("ingest");
    scheduler
        .set_branch_under_test("r", "main", true)
        .await
        .expect("enable");
    scheduler
        .set_branch_default_runs("r", "main", 10)
        .await
        .expect("runs");
    scheduler
        .prioritize_branch_history("r", "main", 1, 200)
        .await
        .expect("prioritize");

    // (c) without contention: one worker.
    scheduler.step_timings().clear();
    let (runs, elapsed, mut next_times, mut completion_times) = drive(&scheduler, 1, 2000).await;
    println!(
        "(c) 1 worker, {runs} runs: next_work p50 {:.3} ms p99 {:.3} ms; record_completion p50 {:.3} ms p99 {:.3} ms (goal p99 < 2 ms); {:.0} runs/s",
        ms(percentile(&mut next_times, 0.5)),
        ms(percentile(&mut next_times, 0.99)),
        ms(percentile(&mut completion_times, 0.5)),
        ms(percentile(&mut completion_times, 0.99)),
        runs as f64 / elapsed.as_secs_f64()
    );
    print_breakdown(&scheduler);
    // (b) sustained, 16 concurrent workers.
    scheduler.step_timings().clear();
    let (runs, elapsed, mut next_times, mut completion_times) = drive(&scheduler, 16, 1500).await;
    println!(
        "(b) 16 workers, {runs} runs in {:.2} s: {:.0} runs/s (goal >= 2000); under load next_work p99 {:.3} ms, record_completion p99 {:.3} ms",
        elapsed.as_secs_f64(),
        runs as f64 / elapsed.as_secs_f64(),
        ms(percentile(&mut next_times, 0.99)),
        ms(percentile(&mut completion_times, 0.99)),
    );
    print_breakdown(&scheduler);
}

/// Where the steps of the last round spent their time (see `scheduler::timings`).
fn print_breakdown(scheduler: &Scheduler) {
    let timings = scheduler.step_timings();
    let parts: Vec<String> = [
        ("engine step", Phase::EngineStep),
        ("queued for the writer", Phase::Queued),
        ("durable records (per batch)", Phase::DurableWrite),
        ("redis MULTI (per batch)", Phase::RedisWrite),
    ]
    .into_iter()
    .map(|(name, phase)| {
        let summary = timings.summary(phase);
        format!(
            "{name} p50 {:.3} ms p99 {:.3} ms",
            ms(summary.p50),
            ms(summary.p99)
        )
    })
    .collect();
    println!("    where the time goes: {}", parts.join("; "));
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let commits = args.first().copied().unwrap_or(10_000);
    let tests = args.get(1).copied().unwrap_or(50);
    bench_enable(commits, tests).await;
    bench_throughput(ResultSync::Deferred).await;
    bench_throughput(ResultSync::EachWrite).await;
}
