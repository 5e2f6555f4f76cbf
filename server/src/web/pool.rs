//! The EC2 pool on `/machines` (a section filled into the shared page per request) and as
//! JSON on `/api/machines/pool`: instances with type, state, uptime and hourly cost, the
//! reconciler's last decision and why, and the spend so far.

use crate::views::format;
use crate::AppContext;
use actix_web::{web, HttpResponse};
use askama::Template;

/// Where `machines.html` takes the pool section.
pub const POOL_SLOT: &str = "<tl-pool/>";

/// One instance row, formatted.
struct Row {
    instance_id: String,
    instance_type: String,
    purchase: &'static str,
    state: &'static str,
    /// "3 jobs on 3 of 16 cores" while busy.
    load: String,
    uptime: String,
    hourly_cost: String,
    private_ip: String,
}

#[derive(Template)]
#[template(path = "machines_pool.html")]
struct PoolSection {
    worker_name: String,
    owner_id: String,
    rows: Vec<Row>,
    foreign_instances: usize,
    last_step: String,
    spend: String,
    hourly_spend: String,
    spend_cap: String,
    decision: String,
    errors: Vec<String>,
}

/// The pool section's HTML (empty without an EC2 pool).
pub fn section(context: &AppContext) -> String {
    let Some(board) = context.ec2_pool.get() else {
        return String::new();
    };
    let status = board.snapshot();
    let now = format::now_millis();
    let rows = status
        .instances
        .iter()
        .map(|row| Row {
            instance_id: row.instance_id.clone(),
            instance_type: row.instance_type.clone(),
            purchase: match row.purchase {
                test_looper_core::pool::Purchase::Spot => "spot",
                test_looper_core::pool::Purchase::OnDemand => "on demand",
            },
            state: row.state,
            load: if row.jobs == 0 {
                String::new()
            } else {
                let cores = if row.cores > 0 {
                    format!(" of {}", row.cores)
                } else {
                    String::new()
                };
                format!(
                    "{} {} on {}{cores} cores",
                    row.jobs,
                    if row.jobs == 1 { "job" } else { "jobs" },
                    row.cores_in_use
                )
            },
            uptime: format::duration(i64::try_from(row.uptime_ms / 1000).unwrap_or(i64::MAX)),
            hourly_cost: dollars(row.hourly_cost),
            private_ip: row.private_ip.clone().unwrap_or_default(),
        })
        .collect();
    let page = PoolSection {
        worker_name: status.worker_name.clone(),
        owner_id: status.owner_id.clone(),
        rows,
        foreign_instances: status.foreign_instances,
        last_step: status.last_step_at.map_or_else(
            || "not yet".to_string(),
            |at| {
                format!(
                    "{} ago",
                    format::duration(i64::try_from(now.saturating_sub(at) / 1000).unwrap_or(0))
                )
            },
        ),
        spend: dollars(status.spend_dollars),
        hourly_spend: dollars(status.hourly_spend),
        spend_cap: status
            .max_hourly_spend
            .map_or_else(|| "none".into(), dollars),
        decision: status
            .last_decision
            .as_ref()
            .map(|d| d.explanation.clone())
            .unwrap_or_default(),
        errors: status.last_errors.clone(),
    };
    page.render().unwrap_or_else(|error| {
        tracing::error!(%error, "pool section rendering failed");
        String::new()
    })
}

fn dollars(amount: f64) -> String {
    format!("${amount:.2}")
}

/// `GET /api/machines/pool`: the pool's status as JSON; 404 without an EC2 pool.
pub async fn api_pool(context: web::Data<AppContext>) -> HttpResponse {
    match context.ec2_pool.get() {
        Some(board) => HttpResponse::Ok().json(board.snapshot()),
        None => HttpResponse::NotFound().json(serde_json::json!({
            "error": "no EC2 machine pool is configured (machine_management.aws)"
        })),
    }
}
