//! Flake hunts driven through the engine: a branch whose test's failure rate changes at one
//! commit, workers that fail runs at each commit's true rate, and a hunt that must name that
//! commit while running only the hunted test, within its budget, across a restart.

use std::collections::HashMap;

use test_looper_core::definitions::memory::MemorySource;
use test_looper_core::definitions::{resolve_commit, CommitRef};
use test_looper_core::protocol::{
    Completion, CompletionAck, FailureReason, MachineInfo, OsConfig, RunOutcome, RunResult,
    TestCaseResult, Work,
};
use test_looper_core::scheduling::{
    CommitInfo, Engine, HuntSpec, HuntState, ParseOutcome, SchedulerConfig, Snapshot,
};

const REPO: &str = "app";
const TEST: &str = "flaky/linux";
const OTHER: &str = "other/linux";

fn hash(i: usize) -> String {
    format!("{i:040x}")
}

/// Commits `0..n` in a first-parent chain. The hunted test's command changes at every commit
/// in `changes_test` (so its identity hash changes there); `absent_before` commits do not
/// declare it; `untestable` commits have a broken file.
struct Branch {
    n: usize,
    absent_before: usize,
    untestable: Vec<usize>,
    /// Commits whose definitions keep the previous commit's test command.
    same_as_parent: Vec<usize>,
}

impl Branch {
    fn chain(n: usize) -> Branch {
        Branch {
            n,
            absent_before: 0,
            untestable: Vec::new(),
            same_as_parent: Vec::new(),
        }
    }

    fn infos(&self) -> Vec<CommitInfo> {
        let mut source = MemorySource::new();
        let mut version = 0;
        let mut infos = Vec::new();
        for i in 0..self.n {
            if !self.same_as_parent.contains(&i) {
                version = i;
            }
            let yaml = if self.untestable.contains(&i) {
                "looper_version: 4\ntests: [this is not a mapping\n".to_string()
            } else {
                let hunted = if i >= self.absent_before {
                    format!("  {TEST}: {{command: ./flaky {version}}}\n")
                } else {
                    String::new()
                };
                format!(
                    "looper_version: 4\nenvironments:\n  linux:\n    platform: linux\n    \
                     image: {{dockerfile_contents: \"FROM test-looper/base:1\"}}\ntests:\n\
                     {hunted}  {OTHER}: {{command: ./other {i}}}\n"
                )
            };
            source.add_file(REPO, &hash(i), ".testlooper.yml", &yaml);
            let parse = match resolve_commit(&CommitRef::new(REPO, hash(i)), &source) {
                Ok(resolved) => ParseOutcome::Ok(Box::new(resolved)),
                Err(err) => ParseOutcome::Untestable(err.to_string()),
            };
            infos.push(CommitInfo {
                hash: hash(i),
                parents: if i == 0 { vec![] } else { vec![hash(i - 1)] },
                author: "dev".into(),
                timestamp: 1_700_000_000 + i as i64,
                subject: format!("commit {i}"),
                parse,
            });
        }
        infos
    }

    fn engine(&self) -> Engine {
        let mut engine = Engine::new(SchedulerConfig::default());
        engine.ingest_branch_scan(REPO, "main", &hash(self.n - 1), self.infos(), 1_000);
        engine
    }
}

/// splitmix64: a small deterministic generator for the simulated failures.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as f64 / u64::MAX as f64
    }
}

/// Workers that fail each run of the hunted test with the rate of its commit.
struct Workers {
    machines: Vec<String>,
    rng: Rng,
    now: u64,
    /// Runs started, by definition name.
    started: HashMap<String, u64>,
}

impl Workers {
    fn new(engine: &mut Engine, count: usize, seed: u64) -> Workers {
        let machines: Vec<String> = (0..count).map(|i| format!("m{i}")).collect();
        for machine in &machines {
            engine.register_machine(
                MachineInfo {
                    machine_id: machine.clone(),
                    cores: 4,
                    ram_gb: 16,
                    os: OsConfig::LinuxDocker,
                    shares_cores: false,
                },
                1_000,
            );
        }
        Workers {
            machines,
            rng: Rng(seed),
            now: 2_000,
            started: HashMap::new(),
        }
    }

    /// One round: every machine takes work and finishes it. Returns whether any ran.
    fn round(&mut self, engine: &mut Engine, rate_of: &dyn Fn(&str) -> f64) -> bool {
        let mut assignments = Vec::new();
        for machine in &self.machines {
            if let Some(Work::Run(assignment)) = engine.next_work(machine, self.now).unwrap() {
                assignments.push(assignment);
            }
        }
        for assignment in &assignments {
            self.now += 10;
            *self
                .started
                .entry(assignment.definition.name.clone())
                .or_default() += 1;
            let rate = rate_of(&assignment.test_hash);
            let failed = self.rng.uniform() < rate;
            let outcome = RunOutcome {
                result: if failed {
                    RunResult::Failed {
                        reason: FailureReason::TestFailure,
                        message: "exit 1".into(),
                    }
                } else {
                    RunResult::Passed
                },
                test_cases: vec![TestCaseResult {
                    name: "case".into(),
                    passed: !failed,
                    has_logs: false,
                }],
                artifacts: assignment.artifacts.clone(),
            };
            let completion = Completion {
                run_id: assignment.run_id.clone(),
                outcome,
            };
            assert_eq!(
                engine.record_completion(&completion, self.now),
                CompletionAck::Recorded
            );
        }
        !assignments.is_empty()
    }
}

/// Failure rate of each hunted definition: `before` up to commit `change - 1`, `after` from
/// commit `change` (by the commit that introduced the definition's hash).
fn rates(
    engine: &Engine,
    n: usize,
    change: usize,
    before: f64,
    after: f64,
) -> HashMap<String, f64> {
    let mut rates = HashMap::new();
    for i in 0..n {
        if let Some(view) = engine.commit_view(REPO, &hash(i)) {
            for test in &view.tests {
                if test.name == TEST {
                    let rate = if i >= change { after } else { before };
                    rates.entry(test.hash.clone()).or_insert(rate);
                }
            }
        }
    }
    rates
}

fn spec(budget: u32) -> HuntSpec {
    HuntSpec {
        repo: REPO.into(),
        branch: "main".into(),
        test: TEST.into(),
        case: None,
        budget_runs: budget,
        from: None,
        to: None,
        priority: 1,
        batch_runs: 8,
        target_probability: 0.95,
    }
}

fn run_until_done(engine: &mut Engine, workers: &mut Workers, rates: &HashMap<String, f64>) {
    let rate_of = |hash: &str| rates.get(hash).copied().unwrap_or(0.0);
    for _ in 0..100_000 {
        if !workers.round(engine, &rate_of) {
            break;
        }
    }
}

#[test]
fn a_hunt_names_the_commit_where_the_rate_changed_and_runs_nothing_else() {
    let branch = Branch::chain(40);
    let mut engine = branch.engine();
    let rates = rates(&engine, 40, 23, 0.02, 0.4);
    let mut workers = Workers::new(&mut engine, 4, 7);
    let id = engine.start_hunt(spec(2_000), 3_000).unwrap();
    run_until_done(&mut engine, &mut workers, &rates);

    let hunt = engine.hunt(&id).unwrap();
    assert_eq!(hunt.state, HuntState::Found, "{hunt:?}");
    let culprit = hunt.culprit.as_ref().unwrap();
    assert_eq!(culprit.commit, hash(23));
    assert!(culprit.probability >= 0.95);
    assert!(hunt.runs_used <= 2_000);
    assert_eq!(
        workers.started.get(OTHER),
        None,
        "only the hunted test runs"
    );
    assert_eq!(u64::from(hunt.runs_used), workers.started[TEST]);
    // The hunt enables no commit: the branch's other tests stay unprioritized.
    let head = engine.commit_view(REPO, &hash(39)).unwrap();
    assert_eq!(head.priority, 0);
}

#[test]
fn a_hunt_without_a_change_names_no_confident_culprit() {
    let branch = Branch::chain(30);
    let mut engine = branch.engine();
    let rates = rates(&engine, 30, 0, 0.2, 0.2);
    let mut workers = Workers::new(&mut engine, 4, 11);
    let id = engine.start_hunt(spec(600), 3_000).unwrap();
    run_until_done(&mut engine, &mut workers, &rates);
    let hunt = engine.hunt(&id).unwrap();
    assert!(
        matches!(hunt.state, HuntState::NoChange | HuntState::BudgetSpent),
        "{hunt:?}"
    );
    assert_eq!(hunt.culprit, None);
    assert!(workers.started[TEST] <= 600);
}

#[test]
fn missing_positions_get_no_runs_and_shared_hashes_are_one_position() {
    let branch = Branch {
        n: 20,
        absent_before: 4,
        untestable: vec![9],
        same_as_parent: vec![12, 13, 14],
    };
    let mut engine = branch.engine();
    let id = engine.start_hunt(spec(400), 3_000).unwrap();
    let positions = engine.hunt_positions(&id).unwrap();
    // 0..4 absent (one position), 4..9 one each, 9 untestable, 10, 11 with 12..14, 15..19.
    assert_eq!(positions[0].commits.len(), 4);
    assert!(positions[0].test_hash.is_none());
    let shared = positions
        .iter()
        .find(|p| p.first_commit() == hash(11))
        .unwrap();
    assert_eq!(shared.commits, vec![hash(11), hash(12), hash(13), hash(14)]);
    let rates = rates(&engine, 20, 15, 0.0, 0.5);
    let mut workers = Workers::new(&mut engine, 2, 3);
    run_until_done(&mut engine, &mut workers, &rates);
    let hunt = engine.hunt(&id).unwrap();
    for commit in hunt.targets.keys() {
        let i = usize::from_str_radix(commit, 16).unwrap();
        assert!(i >= 4 && i != 9, "runs asked at a missing position {i}");
    }
}

#[test]
fn a_hunt_survives_a_restart_from_the_settings_document() {
    let branch = Branch::chain(30);
    let mut engine = branch.engine();
    let rates = rates(&engine, 30, 17, 0.0, 0.3);
    let mut workers = Workers::new(&mut engine, 2, 5);
    let id = engine.start_hunt(spec(1_500), 3_000).unwrap();
    let rate_of = |hash: &str| rates.get(hash).copied().unwrap_or(0.0);
    for _ in 0..5 {
        workers.round(&mut engine, &rate_of);
    }
    let used_before = engine.hunt(&id).unwrap().runs_used;
    assert!(used_before > 0);

    // An empty Redis: the engine comes back from the result records and the settings
    // document, and the commits from the next scan.
    let settings = engine.user_settings();
    let runs: Vec<_> = engine.all_runs().cloned().collect();
    let mut restarted = Engine::from_snapshot(
        SchedulerConfig::default(),
        Snapshot {
            runs,
            ..Snapshot::default()
        },
        10_000,
    );
    restarted.apply_user_settings(&settings, 10_000);
    restarted.ingest_branch_scan(REPO, "main", &hash(29), branch.infos(), 10_000);
    let mut workers = Workers::new(&mut restarted, 2, 6);
    run_until_done(&mut restarted, &mut workers, &rates);
    let hunt = restarted.hunt(&id).unwrap();
    assert_eq!(hunt.state, HuntState::Found, "{hunt:?}");
    assert_eq!(hunt.culprit.as_ref().unwrap().commit, hash(17));
    assert!(hunt.runs_used <= 1_500 && hunt.runs_used >= used_before);
}

#[test]
fn a_cancelled_hunt_asks_for_nothing_more() {
    let branch = Branch::chain(10);
    let mut engine = branch.engine();
    let mut workers = Workers::new(&mut engine, 1, 1);
    let id = engine.start_hunt(spec(100), 3_000).unwrap();
    engine.cancel_hunt(&id, 3_001).unwrap();
    assert_eq!(engine.hunt(&id).unwrap().state, HuntState::Cancelled);
    assert!(!workers.round(&mut engine, &|_| 0.0));
}

#[test]
fn bad_hunts_are_refused_with_a_reason() {
    let branch = Branch::chain(10);
    let mut engine = branch.engine();
    let mut bad = spec(0);
    assert!(engine.start_hunt(bad.clone(), 1).is_err());
    bad.budget_runs = 10;
    bad.test = "nope/linux".into();
    let err = engine.start_hunt(bad.clone(), 1).unwrap_err().to_string();
    assert!(err.contains("nope/linux"), "{err}");
    bad.test = TEST.into();
    bad.from = Some(hash(5));
    bad.to = Some(hash(3));
    let err = engine.start_hunt(bad, 1).unwrap_err().to_string();
    assert!(err.contains("not a first-parent ancestor"), "{err}");
}

#[test]
fn a_branch_repeat_runs_the_matching_tests_on_the_last_commits() {
    let branch = Branch::chain(12);
    let mut engine = branch.engine();
    let (commits, pairs) = engine
        .repeat_on_branch(REPO, "main", &["flaky/*".to_string()], 5, 4, 2_000)
        .unwrap();
    assert_eq!((commits, pairs), (4, 4));
    let mut workers = Workers::new(&mut engine, 2, 9);
    run_until_done(&mut engine, &mut workers, &HashMap::new());
    // 4 commits × 5 runs of the matching test; the other test of those commits runs once.
    assert_eq!(workers.started[TEST], 20);
    assert_eq!(workers.started[OTHER], 4);
    for i in 8..12 {
        let view = engine.commit_view(REPO, &hash(i)).unwrap();
        let flaky = view.tests.iter().find(|t| t.name == TEST).unwrap();
        assert_eq!(flaky.counts.runs, 5);
    }
    assert!(engine
        .commit_view(REPO, &hash(7))
        .unwrap()
        .tests
        .iter()
        .all(|t| t.counts.runs == 0));
    let err = engine
        .repeat_on_branch(REPO, "main", &["nothing*".to_string()], 5, 4, 2_000)
        .unwrap_err();
    assert!(err.to_string().contains("matches"), "{err}");
}

#[test]
fn quarantine_enters_and_leaves_by_the_posterior_with_its_evidence() {
    let branch = Branch::chain(3);
    let mut engine = Engine::new(SchedulerConfig {
        quarantine: test_looper_core::scheduling::QuarantinePolicy {
            automatic: true,
            threshold: 0.05,
            probability: 0.95,
        },
        ..SchedulerConfig::default()
    });
    engine.ingest_branch_scan(REPO, "main", &hash(2), branch.infos(), 1_000);
    engine
        .set_branch_default_runs(REPO, "main", 40, 1_000)
        .unwrap();
    engine
        .set_branch_under_test(REPO, "main", true, 1_000)
        .unwrap();
    let mut workers = Workers::new(&mut engine, 2, 21);
    let head_rates = rates(&engine, 3, 0, 0.5, 0.5);
    run_until_done(&mut engine, &mut workers, &head_rates);
    assert!(engine.is_quarantined(REPO, TEST));
    assert!(
        !engine.is_quarantined(REPO, OTHER),
        "a test that never fails"
    );
    let entered = engine.quarantine_log().next().unwrap().clone();
    assert!(entered.entered && entered.by == "automatic");
    let evidence = entered.evidence.unwrap();
    assert!(
        evidence.probability >= 0.95 && evidence.failures > 0,
        "{evidence:?}"
    );
    // Its failures no longer count against the commit's status.
    let head = engine.commit_view(REPO, &hash(2)).unwrap();
    assert!(
        head.tests
            .iter()
            .find(|t| t.name == TEST)
            .unwrap()
            .quarantined
    );

    // A fix lands: the new definition passes often enough to leave by the mirror rule.
    let mut fixed = branch.infos();
    let mut source = MemorySource::new();
    let yaml = format!(
        "looper_version: 4\nenvironments:\n  linux:\n    platform: linux\n    \
         image: {{dockerfile_contents: \"FROM test-looper/base:1\"}}\ntests:\n  \
         {TEST}: {{command: ./fixed}}\n  {OTHER}: {{command: ./other 3}}\n"
    );
    source.add_file(REPO, &hash(3), ".testlooper.yml", &yaml);
    let resolved = resolve_commit(&CommitRef::new(REPO, hash(3)), &source).unwrap();
    fixed.push(CommitInfo {
        hash: hash(3),
        parents: vec![hash(2)],
        author: "dev".into(),
        timestamp: 1_700_000_100,
        subject: "fix".into(),
        parse: ParseOutcome::Ok(Box::new(resolved)),
    });
    engine.ingest_branch_scan(REPO, "main", &hash(3), fixed, 5_000);
    engine
        .set_runs_desired(REPO, &hash(3), TEST, 100, 5_000)
        .unwrap();
    run_until_done(&mut engine, &mut workers, &HashMap::new());
    assert!(!engine.is_quarantined(REPO, TEST));
    let left = engine.quarantine_log().next().unwrap();
    assert!(!left.entered);
    let evidence = left.evidence.as_ref().unwrap();
    assert!(evidence.runs >= 30 && evidence.failures == 0, "{left:?}");

    // By hand, and refused for an unknown test.
    engine
        .set_quarantine(REPO, OTHER, true, "alice", 6_000)
        .unwrap();
    assert!(engine.is_quarantined(REPO, OTHER));
    assert!(engine
        .set_quarantine(REPO, "nope", true, "alice", 6_000)
        .is_err());
}

#[test]
fn a_hunt_on_one_test_case_counts_that_case_only() {
    let branch = Branch::chain(30);
    let mut engine = branch.engine();
    let rates = rates(&engine, 30, 12, 0.0, 0.5);
    let mut workers = Workers::new(&mut engine, 3, 13);
    let id = engine
        .start_hunt(
            HuntSpec {
                case: Some("case".into()),
                ..spec(1_500)
            },
            3_000,
        )
        .unwrap();
    run_until_done(&mut engine, &mut workers, &rates);
    let hunt = engine.hunt(&id).unwrap();
    assert_eq!(hunt.state, HuntState::Found, "{hunt:?}");
    assert_eq!(hunt.culprit.as_ref().unwrap().commit, hash(12));
    // A case no run reports is absent everywhere: no change can be located.
    let id = engine
        .start_hunt(
            HuntSpec {
                case: Some("never reported".into()),
                ..spec(100)
            },
            9_000_000,
        )
        .unwrap();
    run_until_done(&mut engine, &mut workers, &rates);
    let hunt = engine.hunt(&id).unwrap();
    assert_ne!(hunt.state, HuntState::Found, "{hunt:?}");
    assert!(hunt.culprit.is_none());
}
