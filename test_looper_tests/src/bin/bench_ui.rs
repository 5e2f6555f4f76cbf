//! Benchmark: server-side time to build and render the branch page for 1,000 commits × 100
//! tests (goal < 150 ms). Builds the grid from in-memory git facts and scheduler counters
//! (what the handler does after its reads) and renders the askama template; prints the
//! median and p99 over repeated renders. Run: `cargo run --release -p test_looper_tests --bin
//! bench_ui`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use test_looper_core::definitions::DefinitionKind;
use test_looper_server::git::history::CommitMetadata;
use test_looper_server::http::cells::ParseState;
use test_looper_server::http::git_reads::{CommitDefinitions, DefinitionSummary, HistoryPage};
use test_looper_server::http::read_model::{CommitState, TestStatus, WaitReason};
use test_looper_server::http::{merge_graph, pages, views};

const COMMITS: usize = 1000;
const TESTS: usize = 100;
const ROUNDS: usize = 30;

fn main() {
    let commits: Vec<CommitMetadata> = (0..COMMITS)
        .map(|i| {
            let parents = if i + 1 < COMMITS {
                let mut p = vec![format!("{:040x}", i + 1)];
                if i % 17 == 0 && i + 3 < COMMITS {
                    p.push(format!("{:040x}", i + 3));
                }
                p
            } else {
                Vec::new()
            };
            CommitMetadata {
                hash: format!("{i:040x}"),
                parents,
                author: format!("Author {}", i % 7),
                author_email: "a@example.com".into(),
                author_timestamp: 1_700_000_000 - i as i64 * 600,
                timestamp: 1_700_000_000 - i as i64 * 600,
                subject: format!("Commit number {i} <with markup> & more text to escape"),
                message: String::new(),
            }
        })
        .collect();
    let definitions: Vec<DefinitionSummary> = (0..TESTS)
        .map(|t| DefinitionSummary {
            name: format!("project{}/test{t}/linux", t % 5),
            kind: if t == 0 {
                DefinitionKind::Build
            } else {
                DefinitionKind::Test
            },
            hash: format!("hash{t}"),
            project: format!("project{}", t % 5),
            configuration: "linux".into(),
            disabled: false,
            build_dependencies: Vec::new(),
        })
        .collect();
    let defs: Vec<Arc<CommitDefinitions>> = (0..COMMITS)
        .map(|i| {
            Arc::new(CommitDefinitions {
                parse: if i % 50 == 49 {
                    ParseState::Untestable("testlooper.yml, line 3: broken".into())
                } else {
                    ParseState::Ok
                },
                definitions: definitions.clone(),
            })
        })
        .collect();
    let states: HashMap<String, CommitState> = commits
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let tests = (0..TESTS)
                .map(|t| {
                    (
                        format!("hash{t}"),
                        TestStatus {
                            runs: (i + t) as u64 % 12,
                            failures: ((i * t) % 5 == 0) as u64,
                            active: (t % 9 == 0) as u32,
                            runs_desired: 10,
                            wait: WaitReason::Queued { priority: 1 },
                        },
                    )
                })
                .collect();
            (
                c.hash.clone(),
                CommitState {
                    user_priority: (i % 3 != 0) as u32,
                    tests,
                },
            )
        })
        .collect();
    let mut times = Vec::with_capacity(ROUNDS);
    let mut size = 0;
    for _ in 0..ROUNDS {
        let start = Instant::now();
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
                repo: "group/app",
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
        let html = pages::render_branch(view, "token").expect("renders");
        size = html.len();
        times.push(start.elapsed());
    }
    times.sort();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    println!(
        "branch page {COMMITS} commits x {TESTS} tests: median {:.1} ms, p99 {:.1} ms, max {:.1} ms over {ROUNDS} renders ({} KiB of HTML)",
        ms(times[ROUNDS / 2]),
        ms(times[(ROUNDS * 99 / 100).min(ROUNDS - 1)]),
        ms(times[ROUNDS - 1]),
        size / 1024
    );
}
