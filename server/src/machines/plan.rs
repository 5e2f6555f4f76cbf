//! The pool's decision, as a pure function: given what the scheduler wants (runs needed per
//! machine shape), the workers that exist and the pool's capacity, which workers to boot and
//! which idle ones to stop to make room. Workers being stopped still hold their cores until
//! their process has exited, so the limits hold at every moment.

use super::shapes::Capacity;
use std::collections::BTreeMap;
use test_looper_core::scheduling::HardwareConfig;

/// A worker as the planner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerView {
    pub machine_id: String,
    pub shape: HardwareConfig,
    /// Running a run or a deployment.
    pub busy: bool,
    /// Asked to exit, not gone yet.
    pub stopping: bool,
}

/// One decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Boot(HardwareConfig),
    Stop(String),
}

/// The actions that bring the pool closer to `demand` (runs wanted per shape, in the order to
/// serve them) without exceeding `capacity`.
pub fn plan(
    demand: &[(HardwareConfig, u64)],
    workers: &[WorkerView],
    capacity: Capacity,
) -> Vec<Action> {
    let mut count = u32::try_from(workers.len()).unwrap_or(u32::MAX);
    let mut cores: u32 = workers.iter().map(|w| w.shape.cores).sum();
    let mut ram: u32 = workers.iter().map(|w| w.shape.ram_gb).sum();
    let mut idle: BTreeMap<HardwareConfig, Vec<&str>> = BTreeMap::new();
    for worker in workers.iter().filter(|w| !w.busy && !w.stopping) {
        idle.entry(worker.shape)
            .or_default()
            .push(&worker.machine_id);
    }
    let wanted: BTreeMap<HardwareConfig, u64> =
        demand
            .iter()
            .fold(BTreeMap::new(), |mut wanted, (shape, runs)| {
                *wanted.entry(*shape).or_default() += runs;
                wanted
            });
    // Idle workers nobody wants: the ones to stop when room is needed.
    let mut surplus: Vec<String> = idle
        .iter()
        .flat_map(|(shape, ids)| {
            let keep =
                usize::try_from(wanted.get(shape).copied().unwrap_or(0)).unwrap_or(usize::MAX);
            ids.iter().skip(keep).map(|id| id.to_string())
        })
        .collect();
    let mut actions = Vec::new();
    let mut freeing = false;
    for (shape, runs) in &wanted {
        let ready = u64::try_from(idle.get(shape).map_or(0, Vec::len)).unwrap_or(u64::MAX);
        for _ in ready..*runs {
            let fits = count < capacity.workers
                && cores + shape.cores <= capacity.cores
                && ram + shape.ram_gb <= capacity.ram_gb;
            if fits {
                actions.push(Action::Boot(*shape));
                count += 1;
                cores += shape.cores;
                ram += shape.ram_gb;
            } else if let Some(victim) = (!freeing).then(|| surplus.pop()).flatten() {
                // Its cores come back when it has exited; the next plan boots then.
                actions.push(Action::Stop(victim));
                freeing = true;
                break;
            } else {
                break;
            }
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(cores: u32, ram_gb: u32) -> HardwareConfig {
        HardwareConfig { cores, ram_gb }
    }

    fn worker(id: &str, s: HardwareConfig, busy: bool) -> WorkerView {
        WorkerView {
            machine_id: id.into(),
            shape: s,
            busy,
            stopping: false,
        }
    }

    const CAPACITY: Capacity = Capacity {
        workers: 2,
        cores: 2,
        ram_gb: 8,
    };

    #[test]
    fn boots_up_to_the_worker_and_core_limits() {
        let actions = plan(&[(shape(1, 4), 10)], &[], CAPACITY);
        assert_eq!(
            actions,
            vec![Action::Boot(shape(1, 4)), Action::Boot(shape(1, 4))]
        );
    }

    #[test]
    fn idle_workers_of_the_shape_are_used_first() {
        let workers = [worker("a", shape(1, 4), false)];
        assert_eq!(plan(&[(shape(1, 4), 1)], &workers, CAPACITY), vec![]);
        assert_eq!(
            plan(&[(shape(1, 4), 2)], &workers, CAPACITY),
            vec![Action::Boot(shape(1, 4))]
        );
    }

    #[test]
    fn a_big_build_takes_the_whole_box_after_idle_small_workers_leave() {
        let workers = [
            worker("a", shape(1, 4), false),
            worker("b", shape(1, 4), true),
        ];
        // No room: stop the idle small worker (one at a time), never exceed the limits.
        assert_eq!(
            plan(&[(shape(2, 8), 1)], &workers, CAPACITY),
            vec![Action::Stop("a".into())]
        );
        let stopping = [
            WorkerView {
                stopping: true,
                ..workers[0].clone()
            },
            workers[1].clone(),
        ];
        assert_eq!(plan(&[(shape(2, 8), 1)], &stopping, CAPACITY), vec![]);
        assert_eq!(
            plan(&[(shape(2, 8), 1)], &[], CAPACITY),
            vec![Action::Boot(shape(2, 8))]
        );
    }

    #[test]
    fn wanted_idle_workers_are_not_stopped() {
        let workers = [
            worker("a", shape(1, 4), false),
            worker("b", shape(1, 4), false),
        ];
        let demand = [(shape(1, 4), 2), (shape(2, 8), 1)];
        assert_eq!(plan(&demand, &workers, CAPACITY), vec![]);
    }

    #[test]
    fn nothing_wanted_nothing_done() {
        let workers = [worker("a", shape(1, 4), false)];
        assert_eq!(plan(&[], &workers, CAPACITY), vec![]);
    }
}
