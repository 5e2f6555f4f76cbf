//! INTERIM placeholder (replaced by the statistics branch): the planner interface the
//! scheduler's hunts use.
pub mod change_point;
pub mod hunt;
