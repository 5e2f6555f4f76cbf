//! The scheduler's side of a reconcile step: this pool's registered workers (with how long
//! each has been idle) and the queued items the pool can serve, with their minimums.

use crate::scheduler::Scheduler;
use std::collections::{HashMap, HashSet};
use test_looper_core::pool::{Demand, DemandKind, Occupancy, RegisteredWorker};
use test_looper_core::protocol::{Millis, OsConfig};
use test_looper_core::scheduling::{HardwareConfig, Held, MachineRecord};

/// The pool's workers and the demand it can serve, read at one instant.
pub struct PoolWorkers {
    pub workers: Vec<RegisteredWorker>,
    pub demand: Vec<Demand>,
}

/// Reads the registered machines whose id is one of `pool_ids` (instances the pool owns or
/// launched), and the queued items the pool can serve: Linux Docker items, and with
/// `naked_amis` (the worker binary comes from the bucket, so any Linux AMI can run it) the
/// builds and tests of naked-AMI Linux environments, one-shot. Other items (Windows, VM
/// deployments) are not the pool's: no worker it boots can run them, so they stay "no viable
/// hardware".
pub async fn pool_workers(
    scheduler: &Scheduler,
    pool_ids: &HashSet<String>,
    naked_amis: bool,
) -> PoolWorkers {
    let pool_ids = pool_ids.clone();
    scheduler
        .read(move |engine| {
            let workers = engine
                .machines()
                .into_iter()
                .filter(|machine| pool_ids.contains(&machine.info.machine_id))
                .map(|machine| {
                    let busy = occupancy(&machine);
                    RegisteredWorker {
                        hardware: HardwareConfig {
                            cores: machine.info.cores,
                            ram_gb: machine.info.ram_gb,
                        },
                        last_heartbeat: machine.last_heartbeat,
                        busy,
                        idle_since: machine.registered,
                        retired: machine.retired,
                        machine_id: machine.info.machine_id,
                    }
                })
                .collect();
            let demand = engine
                .pool_demand()
                .into_iter()
                .filter_map(|item| {
                    let one_shot_ami = match &item.os {
                        OsConfig::LinuxDocker => None,
                        OsConfig::LinuxVm { ami } if naked_amis && !item.deployment => {
                            Some(ami.clone())
                        }
                        _ => return None,
                    };
                    Some((item, one_shot_ami))
                })
                .map(|(item, one_shot_ami)| Demand {
                    min_cores: item.min_cores,
                    min_ram_gb: item.min_ram_gb,
                    min_disk_gb: item.min_disk_gb,
                    count: item.count,
                    kind: if item.deployment {
                        DemandKind::Deployment
                    } else {
                        DemandKind::Run
                    },
                    one_shot_ami,
                })
                .collect();
            PoolWorkers { workers, demand }
        })
        .await
}

/// What a machine holds, as the reconciler counts it: the shares granted on a machine that
/// shares its cores, the whole machine otherwise (it takes nothing more while busy).
fn occupancy(machine: &MachineRecord) -> Occupancy {
    if machine.is_idle() {
        return Occupancy::default();
    }
    let (cores, ram_gb) = if machine.info.shares_cores {
        Held::granted(&machine.holds)
    } else {
        (machine.info.cores, machine.info.ram_gb)
    };
    Occupancy {
        items: u32::try_from(machine.holds.len()).unwrap_or(u32::MAX),
        cores,
        ram_gb,
        disk_gb: 0,
    }
}

/// When each worker last became idle, as seen by the pool's steps (the scheduler keeps only
/// what a machine is busy with now).
#[derive(Default)]
pub struct IdleClock {
    idle_since: HashMap<String, Millis>,
}

impl IdleClock {
    /// Sets `idle_since` on each worker: the last step that saw it busy (or its registration,
    /// when the pool has never seen it busy). Busy workers get `now`.
    pub fn stamp(
        &mut self,
        mut workers: Vec<RegisteredWorker>,
        now: Millis,
    ) -> Vec<RegisteredWorker> {
        let mut seen = HashMap::with_capacity(workers.len());
        for worker in &mut workers {
            if worker.is_idle() {
                let since = *self
                    .idle_since
                    .get(&worker.machine_id)
                    .unwrap_or(&worker.idle_since.min(now));
                worker.idle_since = since;
                seen.insert(worker.machine_id.clone(), since);
            } else {
                worker.idle_since = now;
                seen.insert(worker.machine_id.clone(), now);
            }
        }
        self.idle_since = seen;
        workers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(id: &str, busy: bool, registered: Millis) -> RegisteredWorker {
        RegisteredWorker {
            machine_id: id.into(),
            hardware: HardwareConfig {
                cores: 2,
                ram_gb: 4,
            },
            last_heartbeat: 0,
            busy: Occupancy {
                items: u32::from(busy),
                ..Occupancy::default()
            },
            idle_since: registered,
            retired: false,
        }
    }

    #[test]
    fn idle_time_starts_when_a_worker_is_first_seen_idle_after_work() {
        let mut clock = IdleClock::default();
        let first = clock.stamp(vec![worker("a", false, 100), worker("b", true, 100)], 1_000);
        assert_eq!(first[0].idle_since, 100, "idle since its registration");
        let second = clock.stamp(
            vec![worker("a", false, 100), worker("b", false, 100)],
            2_000,
        );
        assert_eq!(second[0].idle_since, 100);
        assert_eq!(second[1].idle_since, 1_000, "b was last seen busy at 1000");
        let third = clock.stamp(vec![worker("a", true, 100), worker("b", false, 100)], 3_000);
        assert_eq!(third[1].idle_since, 1_000);
        let fourth = clock.stamp(vec![worker("a", false, 100)], 4_000);
        assert_eq!(fourth[0].idle_since, 3_000, "a was last seen busy at 3000");
    }
}
