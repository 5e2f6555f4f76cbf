//! The machine shapes a local pool offers: with `worker_cores` configured, exactly that shape;
//! otherwise one shape per core count from 1 to the pool's core capacity, with RAM in
//! proportion (so many 1-core tests share the box, and a build asking for every core gets the
//! whole box).

use test_looper_core::scheduling::HardwareConfig;

/// Cores and RAM the pool may hand out in total.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub workers: u32,
    pub cores: u32,
    pub ram_gb: u32,
}

impl Capacity {
    /// The pool's capacity: the configured caps (0 = none), never more than the host has.
    pub fn new(max_workers: u32, max_cores: u32, max_ram_gb: u32, host: HardwareConfig) -> Self {
        let cap = |configured: u32, available: u32| {
            if configured == 0 {
                available
            } else {
                configured.min(available.max(1))
            }
        };
        Capacity {
            workers: if max_workers == 0 {
                u32::MAX
            } else {
                max_workers
            },
            cores: cap(max_cores, host.cores).max(1),
            ram_gb: cap(max_ram_gb, host.ram_gb).max(1),
        }
    }
}

/// The shapes workers of this pool can have, smallest first.
pub fn local_shapes(
    capacity: Capacity,
    worker_cores: Option<u32>,
    worker_ram_gb: Option<u32>,
) -> Vec<HardwareConfig> {
    let ram_for = |cores: u32| {
        let proportional =
            u64::from(capacity.ram_gb) * u64::from(cores) / u64::from(capacity.cores);
        u32::try_from(proportional).unwrap_or(u32::MAX).max(1)
    };
    if let Some(cores) = worker_cores {
        let cores = cores.clamp(1, capacity.cores);
        let ram_gb = worker_ram_gb.unwrap_or_else(|| ram_for(cores));
        return vec![HardwareConfig {
            cores,
            ram_gb: ram_gb.clamp(1, capacity.ram_gb),
        }];
    }
    (1..=capacity.cores)
        .map(|cores| HardwareConfig {
            cores,
            ram_gb: worker_ram_gb.map_or_else(|| ram_for(cores), |r| r.min(capacity.ram_gb)),
        })
        .collect()
}

/// The host's cores and RAM (GB, at least 1).
pub fn host_hardware() -> HardwareConfig {
    let cores = std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1);
    let ram_gb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("MemTotal:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| u32::try_from((kb / 1024 / 1024).max(1)).unwrap_or(u32::MAX))
        .unwrap_or(1);
    HardwareConfig { cores, ram_gb }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(cores: u32, ram_gb: u32) -> HardwareConfig {
        HardwareConfig { cores, ram_gb }
    }

    #[test]
    fn one_shape_per_core_count_with_proportional_ram() {
        let capacity = Capacity::new(2, 2, 8, host(16, 64));
        assert_eq!(capacity.cores, 2);
        assert_eq!(
            local_shapes(capacity, None, None),
            vec![host(1, 4), host(2, 8)]
        );
    }

    #[test]
    fn caps_never_exceed_the_host_and_zero_means_the_host() {
        let capacity = Capacity::new(0, 64, 0, host(4, 16));
        assert_eq!((capacity.cores, capacity.ram_gb), (4, 16));
        assert_eq!(capacity.workers, u32::MAX);
    }

    #[test]
    fn a_configured_worker_size_is_the_only_shape() {
        let capacity = Capacity::new(4, 8, 32, host(8, 32));
        assert_eq!(local_shapes(capacity, Some(2), None), vec![host(2, 8)]);
        assert_eq!(
            local_shapes(capacity, Some(99), Some(99)),
            vec![host(8, 32)]
        );
    }
}
