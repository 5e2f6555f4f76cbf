//! Hardware choice: which configured machine shape a definition should get (see
//! docs/definitions.md#builds-tests-and-deployments, and scheduler scenario 8), and whether
//! a given machine can run it at all.

use serde::{Deserialize, Serialize};

use crate::protocol::{MachineInfo, OsConfig};

/// A bootable machine shape.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HardwareConfig {
    pub cores: u32,
    pub ram_gb: u32,
}

/// What a definition asks for.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Requirements {
    pub os: OsConfig,
    pub min_cores: u32,
    /// 0 = no maximum.
    pub max_cores: u32,
    pub min_ram_gb: u32,
    /// Scratch disk the definition needs (only machine pools that choose instance types use it).
    #[serde(default)]
    pub min_disk_gb: u32,
}

impl Requirements {
    /// Whether `hardware` satisfies the minimums.
    pub fn viable(&self, hardware: HardwareConfig) -> bool {
        hardware.cores >= self.min_cores && hardware.ram_gb >= self.min_ram_gb
    }

    /// Whether an existing machine can run this definition.
    pub fn fits_machine(&self, machine: &MachineInfo) -> bool {
        machine.os == self.os
            && self.viable(HardwareConfig {
                cores: machine.cores,
                ram_gb: machine.ram_gb,
            })
    }

    /// What it gets on a machine that shares its cores, with `free_cores` and `free_ram_gb`
    /// not granted yet: its `min_cores` (at least one) and the larger of its `min_ram_gb`
    /// and the RAM that goes with those cores (capped by what is free). `None` when its
    /// minimums do not fit in what is free. The EC2 pool packs items by the same minimums.
    pub fn share(
        &self,
        machine: &MachineInfo,
        free_cores: u32,
        free_ram_gb: u32,
    ) -> Option<(u32, u32)> {
        let cores = self.min_cores.max(1);
        if cores > free_cores || self.min_ram_gb > free_ram_gb {
            return None;
        }
        let with_cores =
            u64::from(machine.ram_gb) * u64::from(cores) / u64::from(machine.cores.max(1));
        let ram_gb = u32::try_from(with_cores)
            .unwrap_or(u32::MAX)
            .max(self.min_ram_gb)
            .min(free_ram_gb);
        Some((cores, ram_gb))
    }

    /// What it gets on a machine it has to itself (one that does not share its cores, or a
    /// deployment): the cores of [`Requirements::cores_granted`] and all the RAM.
    pub fn whole_machine(&self, machine: &MachineInfo) -> (u32, u32) {
        (self.cores_granted(machine.cores), machine.ram_gb)
    }

    /// Cores to grant on a machine with `cores` cores: everything, capped by `max_cores`.
    pub fn cores_granted(&self, cores: u32) -> u32 {
        if self.max_cores > 0 {
            cores.min(self.max_cores).max(self.min_cores.min(cores))
        } else {
            cores
        }
    }
}

/// The shape to boot for `requirements` among `configs` (any order): `None` when no shape is
/// viable. With `max_cores > 0`, the largest viable shape with at most `max_cores` cores
/// (falling back to the smallest viable one); otherwise the smallest viable shape.
pub fn choose_hardware(
    configs: &[HardwareConfig],
    requirements: &Requirements,
) -> Option<HardwareConfig> {
    let mut viable: Vec<HardwareConfig> = configs
        .iter()
        .copied()
        .filter(|config| requirements.viable(*config))
        .collect();
    viable.sort();
    if requirements.max_cores > 0 {
        if let Some(best) = viable
            .iter()
            .rev()
            .find(|config| config.cores <= requirements.max_cores)
        {
            return Some(*best);
        }
    }
    viable.first().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(min_cores: u32, max_cores: u32, min_ram_gb: u32) -> Requirements {
        Requirements {
            min_disk_gb: 0,
            os: OsConfig::LinuxDocker,
            min_cores,
            max_cores,
            min_ram_gb,
        }
    }

    #[test]
    fn scenario_8_hardware_choice() {
        let configs = [
            HardwareConfig {
                cores: 2,
                ram_gb: 4,
            },
            HardwareConfig {
                cores: 4,
                ram_gb: 16,
            },
            HardwareConfig {
                cores: 32,
                ram_gb: 244,
            },
        ];
        let mid = HardwareConfig {
            cores: 4,
            ram_gb: 16,
        };
        assert_eq!(choose_hardware(&configs, &req(3, 0, 0)), Some(mid));
        assert_eq!(choose_hardware(&configs, &req(0, 8, 0)), Some(mid));
        assert_eq!(
            choose_hardware(&configs, &req(0, 0, 100)),
            Some(HardwareConfig {
                cores: 32,
                ram_gb: 244
            })
        );
        assert_eq!(choose_hardware(&configs, &req(64, 0, 0)), None);
    }
}
