//! Retention (M2, M6): on a schedule (`retention.interval_minutes`), the server removes what
//! the `retention` section says is old enough, and reports what it removed (a tracing line
//! and `GET /api/retention`, the last report as JSON, kept in Redis under
//! [`REPORT_KEY`]).
//!
//! What is removed, and what is kept:
//! - **Run artifacts and stored logs** (`runs/<test>/<run>/…` in the artifact store) last
//!   written more than `artifact_days` ago, whatever the run; only runs still active are
//!   spared. The run page then says the log has expired.
//! - **Build outputs** (`builds/<hash>/…`) older than `artifact_days`, unless a shown
//!   definition (or an active run or live deployment) may still need them.
//! - **Result records** (`scheduler/results/<test>/<run>.json`) of runs that ended more than
//!   `result_days` ago, only when no commit reachable from a branch uses their definition
//!   (the rule is in `test_looper_core::scheduling::retention`): the records behind a failure
//!   rate still shown are kept whatever their age. The scheduler forgets those runs in the
//!   same sweep (Redis shrinks too), and their artifacts go with them.
//! - **Ended deployments** booted more than `ended_deployment_days` ago.
//! - **Live logs** in Redis expire by themselves `live_log_days` after their last line
//!   (`crate::logs::intake`).

use crate::config::RetentionSection;
use crate::redis_connection::RedisHandle;
use crate::scheduler::Scheduler;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use test_looper_artifacts::{ArtifactKey, ArtifactPrefix, ArtifactStore, Removed};
use test_looper_core::protocol::Millis;

/// Redis key of the last report (JSON).
pub const REPORT_KEY: &str = "tl:retention:last_report";
/// Most runs forgotten in one sweep (the next sweep goes on), so one sweep stays bounded.
pub const MAX_RUNS_PER_SWEEP: usize = 20_000;
/// Runs forgotten per scheduler step.
const RUNS_PER_STEP: usize = 500;
const DAY_MS: u64 = 24 * 3600 * 1000;
/// The first sweep runs this long after the start (the git scan has run by then).
const FIRST_SWEEP_DELAY: Duration = Duration::from_secs(60);

/// What one sweep removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionReport {
    /// When the sweep finished (ms since the epoch, the scheduler's clock).
    pub finished_at: Millis,
    /// Result records deleted from the artifact store.
    pub result_records_removed: u64,
    /// Runs the scheduler forgot (their records were removed).
    pub runs_forgotten: u64,
    /// More runs were due than one sweep handles; the next sweep goes on.
    pub runs_pending: bool,
    /// Run artifacts and stored logs deleted, and their bytes.
    pub run_objects_removed: u64,
    pub run_bytes_removed: u64,
    /// Build outputs deleted, and their bytes.
    pub build_objects_removed: u64,
    pub build_bytes_removed: u64,
    /// Ended deployment records forgotten.
    pub deployments_forgotten: u64,
    /// What failed (the rest of the sweep went on).
    pub errors: Vec<String>,
}

/// One clean-up at `now` (ms since the epoch) under `policy`.
pub async fn sweep(
    scheduler: &Scheduler,
    store: &dyn ArtifactStore,
    policy: &RetentionSection,
    now: Millis,
) -> RetentionReport {
    let mut report = RetentionReport::default();
    if let Some(days) = policy.result_days {
        forget_results(scheduler, store, cutoff(now, days), &mut report).await;
    }
    if let Some(days) = policy.artifact_days {
        remove_artifacts(scheduler, store, cutoff(now, days), &mut report).await;
    }
    if let Some(days) = policy.ended_deployment_days {
        let limit = cutoff(now, days);
        let expired = scheduler
            .read(|engine| engine.expired_deployments(limit))
            .await;
        if !expired.is_empty() {
            match scheduler.forget_deployments(&expired).await {
                Ok(count) => report.deployments_forgotten = count as u64,
                Err(err) => report.errors.push(format!("forget deployments: {err}")),
            }
        }
    }
    report.finished_at = now;
    report
}

fn cutoff(now: Millis, days: u32) -> Millis {
    now.saturating_sub(u64::from(days) * DAY_MS)
}

fn system_time(millis: Millis) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(millis)
}

/// Removes the result records (and artifacts) of runs that back no shown failure rate and
/// ended before `limit`, then has the scheduler forget them.
async fn forget_results(
    scheduler: &Scheduler,
    store: &dyn ArtifactStore,
    limit: Millis,
    report: &mut RetentionReport,
) {
    let mut expired = scheduler.read(|engine| engine.expired_runs(limit)).await;
    if expired.len() > MAX_RUNS_PER_SWEEP {
        expired.truncate(MAX_RUNS_PER_SWEEP);
        report.runs_pending = true;
    }
    // Everything under a forgotten run's prefix goes, whatever its age.
    let everything = SystemTime::now().max(system_time(limit)) + Duration::from_secs(86_400);
    for batch in expired.chunks(RUNS_PER_STEP) {
        let mut removed_ids = Vec::with_capacity(batch.len());
        for run in batch {
            let record =
                ArtifactKey::scheduler(&format!("results/{}/{}.json", run.test_hash, run.run_id));
            let deleted = match record {
                Ok(key) => store.delete(&key).await,
                Err(err) => Err(err),
            };
            match deleted {
                Ok(found) => {
                    report.result_records_removed += u64::from(found);
                    removed_ids.push(run.run_id.clone());
                }
                Err(err) => {
                    report
                        .errors
                        .push(format!("delete the record of {}: {err}", run.run_id));
                    continue;
                }
            }
            if let Ok(prefix) = ArtifactPrefix::run(&run.test_hash, &run.run_id) {
                match store
                    .remove_older_than(&prefix, everything, &|_: &str| false)
                    .await
                {
                    Ok(removed) => add_run_objects(report, removed),
                    Err(err) => report
                        .errors
                        .push(format!("delete the artifacts of {}: {err}", run.run_id)),
                }
            }
        }
        match scheduler.forget_runs(&removed_ids).await {
            Ok(count) => report.runs_forgotten += count as u64,
            Err(err) => {
                report.errors.push(format!("forget runs: {err}"));
                return;
            }
        }
    }
}

fn add_run_objects(report: &mut RetentionReport, removed: Removed) {
    report.run_objects_removed += removed.objects;
    report.run_bytes_removed += removed.bytes;
}

/// Removes run artifacts older than `limit` (except active runs') and build outputs older
/// than `limit` that nothing shown or running needs.
async fn remove_artifacts(
    scheduler: &Scheduler,
    store: &dyn ArtifactStore,
    limit: Millis,
    report: &mut RetentionReport,
) {
    let (active_runs, needed_builds) = scheduler
        .read(|engine| {
            let active: HashSet<String> =
                engine.active_runs().map(|run| run.run_id.clone()).collect();
            let mut needed = engine.shown_tests();
            needed.extend(engine.active_runs().map(|run| run.test_hash.clone()));
            needed.extend(
                engine
                    .deployments()
                    .into_iter()
                    .filter(|deployment| deployment.alive)
                    .map(|deployment| deployment.test_hash),
            );
            (active, needed)
        })
        .await;
    let before = system_time(limit);
    // Names are `<test hash>/<run id>/<file>`.
    let keep_run = |name: &str| {
        name.split('/')
            .nth(1)
            .is_some_and(|run_id| active_runs.contains(run_id))
    };
    match store
        .remove_older_than(&ArtifactPrefix::all_runs(), before, &keep_run)
        .await
    {
        Ok(removed) => add_run_objects(report, removed),
        Err(err) => report.errors.push(format!("remove run artifacts: {err}")),
    }
    // Names are `<build hash>/<file>`.
    let keep_build = |name: &str| {
        name.split('/')
            .next()
            .is_some_and(|hash| needed_builds.contains(hash))
    };
    match store
        .remove_older_than(&ArtifactPrefix::all_builds(), before, &keep_build)
        .await
    {
        Ok(removed) => {
            report.build_objects_removed += removed.objects;
            report.build_bytes_removed += removed.bytes;
        }
        Err(err) => report.errors.push(format!("remove build outputs: {err}")),
    }
}

/// Sweeps every `interval_minutes` (the first a minute after the start), logs each report and
/// keeps the last one in Redis.
pub fn spawn(
    context: Arc<crate::AppContext>,
    scheduler: Arc<Scheduler>,
    store: Arc<dyn ArtifactStore>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let policy = context.config.retention.clone();
        let redis = &context.redis;
        let interval = Duration::from_secs(policy.interval_minutes.max(1) * 60);
        tokio::time::sleep(FIRST_SWEEP_DELAY.min(interval)).await;
        loop {
            let report = sweep(&scheduler, store.as_ref(), &policy, scheduler.now()).await;
            tracing::info!(
                runs_forgotten = report.runs_forgotten,
                result_records_removed = report.result_records_removed,
                run_objects_removed = report.run_objects_removed,
                run_bytes_removed = report.run_bytes_removed,
                build_objects_removed = report.build_objects_removed,
                build_bytes_removed = report.build_bytes_removed,
                deployments_forgotten = report.deployments_forgotten,
                runs_pending = report.runs_pending,
                errors = report.errors.len(),
                "retention sweep"
            );
            for error in &report.errors {
                tracing::warn!(%error, "retention sweep");
            }
            if let Err(err) = store_report(redis, &report).await {
                tracing::warn!(%err, "cannot keep the retention report");
            }
            tokio::time::sleep(interval).await;
        }
    })
}

async fn store_report(redis: &RedisHandle, report: &RetentionReport) -> anyhow::Result<()> {
    let mut connection = redis.connection().await?;
    redis::cmd("SET")
        .arg(REPORT_KEY)
        .arg(serde_json::to_string(report)?)
        .query_async::<()>(&mut connection)
        .await?;
    Ok(())
}

/// `GET /api/retention`: the policy in force and the last sweep's report (`null` before the
/// first sweep).
pub async fn report_handler(context: web::Data<crate::AppContext>) -> HttpResponse {
    let last: Result<Option<String>, _> = async {
        let mut connection = context.redis.connection().await?;
        redis::cmd("GET")
            .arg(REPORT_KEY)
            .query_async(&mut connection)
            .await
    }
    .await;
    let policy = &context.config.retention;
    let policy = serde_json::json!({
        "interval_minutes": policy.interval_minutes,
        "live_log_days": policy.live_log_days,
        "artifact_days": policy.artifact_days,
        "result_days": policy.result_days,
        "ended_deployment_days": policy.ended_deployment_days,
        "tarball_cache_max_bytes": policy.tarball_cache_max_bytes,
    });
    match last {
        Ok(text) => {
            let report: Option<RetentionReport> =
                text.and_then(|text| serde_json::from_str(&text).ok());
            HttpResponse::Ok().json(serde_json::json!({"policy": policy, "last_report": report}))
        }
        Err(err) => HttpResponse::ServiceUnavailable().json(serde_json::json!({
            "error": {"status": 503, "code": "unavailable", "message": format!("redis: {err}")}
        })),
    }
}
