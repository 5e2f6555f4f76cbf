//! Machine pools: where workers come from.
//!
//! - [`shapes`]: the machine shapes (cores, RAM) a pool can provide, told to the scheduler so
//!   that work no shape can run is reported as "no viable hardware" instead of waiting forever.
//! - [`plan`]: the pure boot/stop decision from the scheduler's demand, the pool's workers
//!   and its limits.
//! - [`ec2`]: the EC2 pool: a reconcile loop that launches, drains and terminates tagged
//!   instances, each bootstrapped into a worker that connects back with a machine token.
//! - [`local`]: the local Docker pool. Each worker is a `test-looper-worker` child process of
//!   the server (same process group) that connects to the server's own worker socket like a
//!   remote worker would; it runs its jobs in the local Docker engine under the install's
//!   `docker_scope` label. Child processes (not in-process tasks) so that a worker can crash
//!   or be killed without taking the server with it, and so that what a killed worker leaves
//!   behind is cleaned up by someone who outlives it.

pub mod ec2;
pub mod local;
pub mod plan;
pub mod shapes;

/// The install scope (container label and name prefix) of workers on pool machines.
pub const POOL_DOCKER_SCOPE: &str = "test_looper_pool";

pub use local::{LocalPool, LocalPoolSettings, PoolError};

/// Whether a change-feed event can change what a pool should do (demand or occupancy).
pub(crate) fn changes_pool_demand(event: &crate::scheduler::feed::FeedEvent) -> bool {
    use crate::scheduler::feed::FeedEvent;
    matches!(
        event,
        FeedEvent::WorkAvailable
            | FeedEvent::TestsChanged { .. }
            | FeedEvent::RunChanged { .. }
            | FeedEvent::MachinesChanged { .. }
            | FeedEvent::DeploymentsChanged { .. }
    )
}
