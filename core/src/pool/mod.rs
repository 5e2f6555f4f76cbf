//! The EC2 machine pool's decision core: which instances to launch, drain and terminate,
//! as a pure, deterministic function of what EC2 reports, what the scheduler has registered
//! and what is queued. No AWS calls here: the server wires [`reconcile()`](crate::pool::reconcile()) to `aws-sdk-ec2`
//! and runs it every few seconds. Rules and configuration: `docs/ec2_pool.md`.
//!
//! - [`settings`](crate::pool::settings): instance types with prices, limits, timeouts, ownership tags.
//! - [`inputs`](crate::pool::inputs): one step's [`Observation`](crate::pool::Observation): instances, workers, demand, launch failures.
//! - [`decision`](crate::pool::decision): the step's [`Decision`](crate::pool::Decision) and its explanation.
//! - [`packing`](crate::pool::packing): instance choice and bin packing.
//! - [`reconcile`](mod@crate::pool::reconcile): the step itself.
//! - [`sim`](crate::pool::sim): a deterministic simulated EC2, scheduler and workers for tests and benchmarks.

pub mod decision;
pub mod inputs;
pub mod packing;
pub mod reconcile;
pub mod settings;
pub mod sim;

pub use decision::{
    Decision, HeldCapacity, IgnoredInstance, Launch, Limit, PoolCensus, TerminateReason,
    Termination,
};
pub use inputs::{
    Demand, DemandKind, InstanceState, InstanceTags, LaunchErrorKind, LaunchFailure, Observation,
    ObservedInstance, Occupancy, RegisteredWorker,
};
pub use reconcile::{is_owned, reconcile, spot_avoided};
pub use settings::{
    InstanceType, Packing, PoolLimits, PoolSettings, Purchase, SettingsError, OWNER_TAG,
    WORKER_NAME_TAG,
};
