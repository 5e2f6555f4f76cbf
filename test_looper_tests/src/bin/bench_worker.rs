//! Worker latency and log throughput, end to end: real Redis, the server with all services, one
//! local pool worker process, the real Docker engine, an image already cached.
//!
//! - **dispatch**: from the moment work becomes available (runs-desired raised while the
//!   worker is idle) to the first instruction of the command inside its container;
//! - **record**: from the command's last instruction to the run being recorded by the
//!   scheduler (`ended` of the run record);
//! - **log throughput**: a test writes `--log-mb` MB as fast as it can; the time the test
//!   itself needed (it must not be slowed down) and the rate at which the whole log reached
//!   the server's live log in Redis.
//!
//! `cargo run --release -p test_looper_tests --bin bench_worker -- [--samples N] [--log-mb M]`

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use test_looper_server::logs::intake as logs;
use test_looper_tests::install::{make_repo, wait_until, Install, PoolOptions};
use test_looper_tests::DockerEngine;

const YML: &str = r#"
looper_version: 4
environments:
  linux:
    platform: linux
    image:
      dockerfile_contents: |
        FROM test-looper/base:1
tests:
  tick/linux:
    environment: linux
    command: echo "START=$EPOCHREALTIME"; echo "END=$EPOCHREALTIME"
"#;

/// On branch `flood` (enabled last).
const FLOOD_YML: &str = r#"
looper_version: 4
environments:
  linux:
    platform: linux
    image:
      dockerfile_contents: |
        FROM test-looper/base:1
tests:
  flood/linux:
    environment: linux
    command: |
      echo "START=$EPOCHREALTIME"
      yes 'a log line of the flood test, sixty-four bytes long, more or less..' | head -c ${LOG_BYTES}
      echo
      echo "END=$EPOCHREALTIME"
"#;

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

fn stamp(log: &str, key: &str) -> Option<f64> {
    log.lines()
        .rev()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|seconds| seconds * 1000.0)
}

fn summary(name: &str, mut samples: Vec<f64>, goal: &str) {
    samples.sort_by(|a, b| a.total_cmp(b));
    let median = samples[samples.len() / 2];
    let max = samples[samples.len() - 1];
    let min = samples[0];
    println!(
        "{name:<10} n={:<3} min {min:7.1} ms  median {median:7.1} ms  max {max:7.1} ms   (goal {goal})",
        samples.len()
    );
}

struct Args {
    samples: u32,
    log_mb: u64,
}

fn args() -> Args {
    let mut parsed = Args {
        samples: 10,
        log_mb: 50,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let value = it.next().and_then(|v| v.parse::<u64>().ok());
        match (arg.as_str(), value) {
            ("--samples", Some(v)) => parsed.samples = u32::try_from(v).unwrap_or(10).max(1),
            ("--log-mb", Some(v)) => parsed.log_mb = v.max(1),
            _ => {
                eprintln!("usage: bench_worker [--samples N] [--log-mb M]");
                std::process::exit(2);
            }
        }
    }
    parsed
}

async fn finished_runs(install: &Install, repo: &str, commit: &str, test: &str) -> u64 {
    install
        .scheduler()
        .read(|engine| {
            engine
                .commit_view(repo, commit)
                .and_then(|view| view.tests.into_iter().find(|t| t.name == test))
                .map(|t| t.counts.runs)
                .unwrap_or(0)
        })
        .await
}

async fn last_run(install: &Install, repo: &str, commit: &str, test: &str) -> (String, u64) {
    install
        .scheduler()
        .read(|engine| {
            let view = engine.commit_view(repo, commit).expect("commit");
            let hash = view
                .tests
                .iter()
                .find(|t| t.name == test)
                .expect("test")
                .hash
                .clone();
            let run = engine
                .runs_of(&hash)
                .into_iter()
                .max_by_key(|r| r.started)
                .expect("a run")
                .clone();
            (run.run_id, run.ended)
        })
        .await
}

/// Raises runs-desired of `test` to `runs` at once and waits for the run to finish.
async fn one_more_run(install: &Install, commit: &str, test: &str, runs: u32) -> (f64, String) {
    let available = now_ms();
    install
        .scheduler()
        .set_runs_desired("bench", commit, test, runs)
        .await
        .expect("runs desired");
    wait_until(Duration::from_secs(600), "the run to finish", || async {
        finished_runs(install, "bench", commit, test).await >= u64::from(runs)
    })
    .await;
    let (run_id, _) = last_run(install, "bench", commit, test).await;
    (available, run_id)
}

async fn bench(args: Args) {
    let _engine = DockerEngine::connect().await;
    let (redis, dir) = Install::prepare();
    let flood_yml = FLOOD_YML.replace("${LOG_BYTES}", &(args.log_mb * 1_000_000).to_string());
    let (repo, commit) = make_repo(
        dir.path(),
        "bench",
        &[("testlooper.yml".into(), YML.into())],
    );
    let flood_commit = repo
        .commit("flood", "flood", &[("testlooper.yml", flood_yml.as_str())])
        .to_string();
    let install = Install::start(
        redis,
        dir,
        "bench_worker",
        PoolOptions {
            max_workers: 1,
            max_cores: 1,
            max_ram_gb: 2,
            idle_timeout_seconds: 600,
            ..PoolOptions::default()
        },
    )
    .await;
    install.wait_for_branch("bench", "master").await;
    install.wait_for_branch("bench", "flood").await;
    let scheduler = install.scheduler().clone();
    // One warm-up run of `tick` boots the worker and caches the image.
    scheduler
        .set_branch_under_test("bench", "master", true)
        .await
        .unwrap();
    wait_until(Duration::from_secs(600), "the warm-up run", || async {
        finished_runs(&install, "bench", &commit, "tick/linux").await >= 1
    })
    .await;

    let mut dispatch = Vec::new();
    let mut record = Vec::new();
    for sample in 0..args.samples {
        // Let the worker settle into idle.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (available, run_id) = one_more_run(&install, &commit, "tick/linux", sample + 2).await;
        let log = logs::read_from(&install.context.redis, &run_id, 0)
            .await
            .unwrap();
        let (start, end) = (stamp(&log, "START="), stamp(&log, "END="));
        let (_, ended) = last_run(&install, "bench", &commit, "tick/linux").await;
        if let (Some(start), Some(end)) = (start, end) {
            dispatch.push(start - available);
            record.push(ended as f64 - end);
        }
    }
    println!(
        "worker bench: 1 idle local worker, cached image, {} samples",
        args.samples
    );
    summary("dispatch", dispatch, "< 1500 ms");
    summary("record", record, "< 200 ms");

    // Log throughput.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bytes = args.log_mb * 1_000_000;
    let started = Instant::now();
    let available = now_ms();
    scheduler
        .set_branch_under_test("bench", "flood", true)
        .await
        .unwrap();
    let run_id = loop {
        let found = install
            .scheduler()
            .read(|engine| {
                let view = engine.commit_view("bench", &flood_commit)?;
                let hash = view
                    .tests
                    .iter()
                    .find(|t| t.name == "flood/linux")?
                    .hash
                    .clone();
                engine.runs_of(&hash).first().map(|r| r.run_id.clone())
            })
            .await;
        if let Some(run_id) = found {
            break run_id;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the flood run never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let key = logs::log_key(&run_id);
    let mut connection = install
        .redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    loop {
        let length: u64 = redis::cmd("STRLEN")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .unwrap();
        if length >= bytes {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "flood log never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let arrived = now_ms();
    wait_until(
        Duration::from_secs(600),
        "the flood run to finish",
        || async { finished_runs(&install, "bench", &flood_commit, "flood/linux").await >= 1 },
    )
    .await;
    let log = logs::read_from(&install.context.redis, &run_id, 0)
        .await
        .unwrap();
    let (start, end) = (
        stamp(&log, "START=").expect("start stamp"),
        stamp(&log, "END=").expect("end stamp"),
    );
    let mb = bytes as f64 / 1e6;
    println!(
        "log        {mb:.0} MB: the test wrote it in {:.0} ms ({:.1} MB/s in the container); \
         all of it in the server's live log {:.0} ms after the command started: {:.1} MB/s \
         through the worker to the server (dispatch {:.0} ms)",
        end - start,
        mb / ((end - start) / 1000.0),
        arrived - start,
        mb / ((arrived - start) / 1000.0),
        start - available,
    );
    install.shutdown().await;
}

fn main() {
    let args = args();
    actix_web::rt::System::new().block_on(bench(args));
}
