//! Benchmark: server-side time to build and render the branch page for 1,000 commits × 100
//! tests (goal < 150 ms). Each round does what the handler does after its git reads: read
//! the 1,000 commits' states from a real scheduler engine through the UI adapter
//! ([`test_looper_server::reads::state::commit_states`]: 100,000 test views turned
//! into counters and wait reasons), build the grid and render the askama template. Prints
//! the median and p99 of the whole and of the state read alone.
//! Run: `cargo run --release -p test_looper_tests --bin bench_ui`.

use std::sync::Arc;
use std::time::{Duration, Instant};
use test_looper_core::definitions::memory::MemorySource;
use test_looper_core::definitions::{resolve_commit, CommitRef, ResolvedCommit};
use test_looper_core::protocol::{Completion, MachineInfo, OsConfig, RunOutcome, RunResult, Work};
use test_looper_core::scheduling::{CommitInfo, Engine, ParseOutcome, SchedulerConfig};
use test_looper_server::git::history::CommitMetadata;
use test_looper_server::reads::git::{CommitDefinitions, DefinitionSummary, HistoryPage};
use test_looper_server::reads::state::commit_states;
use test_looper_server::views::cells::ParseState;
use test_looper_server::views::{self, merge_graph};
use test_looper_server::web::pages;

const COMMITS: usize = 1000;
const TESTS: usize = 100;
const ROUNDS: usize = 30;
const REPO: &str = "group/app";
const CSRF: &str = "q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6j7k8l9z0x1c";
const BAR: &str = r#"<span class="session"><span class="who">Olga Operator</span> <span class="role">operator</span></span>"#;

fn hash(i: usize) -> String {
    format!("{i:040x}")
}

/// One commit's definitions: a build and `TESTS - 1` tests in 5 projects.
fn template() -> ResolvedCommit {
    let mut yaml = String::from(
        "looper_version: 4\nenvironments:\n  linux:\n    platform: linux\n    image:\n      dockerfile_contents: \"FROM x\"\nbuilds:\n  project0/build/linux:\n    command: \"make\"\ntests:\n",
    );
    for t in 1..TESTS {
        yaml.push_str(&format!(
            "  project{}/test{t}/linux:\n    command: \"run {t}\"\n",
            t % 5
        ));
    }
    let mut source = MemorySource::new()
        .accepting_any_ref()
        .assuming_paths_exist();
    source.add_file(REPO, "template", "testlooper.yml", &yaml);
    resolve_commit(&CommitRef::new(REPO, "template"), &source).expect("template resolves")
}

/// The template with hashes distinct per commit (as when tests depend on the commit's source).
fn commit_definitions(template: &ResolvedCommit, index: usize) -> ResolvedCommit {
    let mut resolved = template.clone();
    resolved.commit = CommitRef::new(REPO, hash(index));
    for definition in resolved.definitions.values_mut() {
        definition.hash = format!("{index:06}-{}", definition.hash);
    }
    resolved
}

fn summary(resolved: &ResolvedCommit) -> CommitDefinitions {
    CommitDefinitions {
        parse: ParseState::Ok,
        definitions: resolved
            .definitions
            .values()
            .map(|d| DefinitionSummary {
                name: d.name.clone(),
                kind: d.kind,
                hash: d.hash.clone(),
                project: d.project.clone(),
                configuration: d.configuration.clone(),
                disabled: d.disabled,
                build_dependencies: Vec::new(),
            })
            .collect(),
    }
}

/// An engine that knows the branch, with every commit enabled and some runs finished or in
/// flight (so cells show counts, rates and running badges).
fn engine(resolved: &[ResolvedCommit]) -> Engine {
    let mut engine = Engine::new(SchedulerConfig::default());
    let commits = resolved
        .iter()
        .enumerate()
        .map(|(i, r)| CommitInfo {
            hash: hash(i),
            parents: if i + 1 < COMMITS {
                vec![hash(i + 1)]
            } else {
                vec![]
            },
            author: format!("Author {}", i % 7),
            timestamp: 1_700_000_000 - i as i64 * 600,
            subject: format!("Commit number {i}"),
            parse: ParseOutcome::Ok(Box::new(r.clone())),
        })
        .collect();
    let now = 1_700_000_000_000;
    engine.ingest_branch_scan(REPO, "master", &hash(0), commits, now);
    engine
        .prioritize_branch_history(REPO, "master", 1, COMMITS, now)
        .expect("branch known");
    engine.register_machine(
        MachineInfo {
            machine_id: "bench".into(),
            cores: 64,
            ram_gb: 256,
            os: OsConfig::LinuxDocker,
            shares_cores: false,
        },
        now,
    );
    for n in 0..3000u64 {
        let Ok(Some(Work::Run(assignment))) = engine.next_work("bench", now) else {
            break;
        };
        let result = if n % 7 == 0 {
            RunResult::Failed {
                reason: test_looper_core::protocol::FailureReason::TestFailure,
                message: "exit 1".into(),
            }
        } else {
            RunResult::Passed
        };
        engine.record_completion(
            &Completion {
                run_id: assignment.run_id.clone(),
                outcome: RunOutcome {
                    result,
                    test_cases: Vec::new(),
                    artifacts: assignment.artifacts.clone(),
                },
            },
            now,
        );
    }
    engine
}

fn main() {
    let template = template();
    let resolved: Vec<ResolvedCommit> = (0..COMMITS)
        .map(|i| commit_definitions(&template, i))
        .collect();
    let commits: Vec<CommitMetadata> = (0..COMMITS)
        .map(|i| CommitMetadata {
            hash: hash(i),
            parents: if i + 1 < COMMITS {
                let mut p = vec![hash(i + 1)];
                if i % 17 == 0 && i + 3 < COMMITS {
                    p.push(hash(i + 3));
                }
                p
            } else {
                Vec::new()
            },
            author: format!("Author {}", i % 7),
            author_email: "a@example.com".into(),
            author_timestamp: 1_700_000_000 - i as i64 * 600,
            timestamp: 1_700_000_000 - i as i64 * 600,
            subject: format!("Commit number {i} <with markup> & more text to escape"),
            message: String::new(),
        })
        .collect();
    let defs: Vec<Arc<CommitDefinitions>> = resolved
        .iter()
        .enumerate()
        .map(|(i, r)| {
            Arc::new(if i % 50 == 49 {
                CommitDefinitions {
                    parse: ParseState::Untestable("testlooper.yml, line 3: broken".into()),
                    definitions: Vec::new(),
                }
            } else {
                summary(r)
            })
        })
        .collect();
    let engine = engine(&resolved);
    let hashes: Vec<String> = commits.iter().map(|c| c.hash.clone()).collect();
    let mut times = Vec::with_capacity(ROUNDS);
    let mut reads = Vec::with_capacity(ROUNDS);
    let mut personalizing = Vec::with_capacity(ROUNDS);
    let mut size = 0;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let states = commit_states(&engine, REPO, &hashes);
        reads.push(start.elapsed());
        assert_eq!(states.len(), COMMITS);
        let graph = merge_graph::layout(
            commits
                .iter()
                .map(|c| (c.hash.as_str(), c.parents.as_slice())),
        );
        let history = HistoryPage {
            commits: commits.clone(),
            graph,
            has_more: false,
        };
        let view = views::build_branch_view(
            views::BranchInputs {
                repo: REPO,
                branch: "master",
                under_test: true,
                state_wired: true,
                page: 0,
                per_page: COMMITS,
                now: 1_700_000_000,
            },
            history,
            &defs,
            &states,
        );
        let html = pages::render_branch(&view, test_looper_server::web::render::CSRF_SLOT)
            .expect("renders");
        size = html.len();
        times.push(start.elapsed());
        // What each request adds to a kept page: the caller's CSRF token and login bar.
        let start = Instant::now();
        let body = test_looper_server::web::render::personalize(html, CSRF, BAR);
        personalizing.push(start.elapsed());
        assert!(actix_web::body::MessageBody::size(&body) != actix_web::body::BodySize::None);
    }
    times.sort();
    reads.sort();
    personalizing.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p99 = (ROUNDS * 99 / 100).min(ROUNDS - 1);
    println!(
        "branch page {COMMITS} commits x {TESTS} tests: median {:.1} ms, p99 {:.1} ms, max {:.1} ms over {ROUNDS} renders ({} KiB of HTML); of which the scheduler state read: median {:.1} ms, p99 {:.1} ms",
        ms(times[ROUNDS / 2]),
        ms(times[p99]),
        ms(times[ROUNDS - 1]),
        size / 1024,
        ms(reads[ROUNDS / 2]),
        ms(reads[p99]),
    );
    println!(
        "filling in one caller's CSRF token and login bar (per request, kept pages included): median {:.2} ms, p99 {:.2} ms",
        ms(personalizing[ROUNDS / 2]),
        ms(personalizing[p99]),
    );
}
