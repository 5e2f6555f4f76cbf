//! Instance choice and bin packing. Queued items are placed first-fit-decreasing: existing
//! capacity first, then instances planned in this step; an item that fits nowhere opens a new
//! instance of the type with the lowest price per core of demand it would serve, found by
//! filling an empty instance of each fitting type first-fit with this item and the items
//! after it. One item alone therefore gets the cheapest type that fits; many 1-core tests
//! get a big box when its price per core is lower or equal (ties: the box serving more
//! items, then the cheaper one, then the name).

use super::settings::{InstanceType, Purchase};
use serde::{Deserialize, Serialize};

/// Cores, RAM and disk: what an item needs or what an instance has free.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Room {
    pub cores: u32,
    pub ram_gb: u32,
    pub disk_gb: u32,
}

impl Room {
    /// The room of a whole instance of `instance_type`.
    pub fn of_type(instance_type: &InstanceType) -> Room {
        Room {
            cores: instance_type.cores,
            ram_gb: instance_type.ram_gb,
            disk_gb: instance_type.disk_gb,
        }
    }

    /// Whether `need` fits in this room.
    pub fn holds(&self, need: Room) -> bool {
        self.cores >= need.cores && self.ram_gb >= need.ram_gb && self.disk_gb >= need.disk_gb
    }

    /// This room less `need` (saturating).
    pub fn less(&self, need: Room) -> Room {
        Room {
            cores: self.cores.saturating_sub(need.cores),
            ram_gb: self.ram_gb.saturating_sub(need.ram_gb),
            disk_gb: self.disk_gb.saturating_sub(need.disk_gb),
        }
    }
}

/// What an item needs: its minimums, with at least one core (an item always occupies a core).
pub fn item_need(min_cores: u32, min_ram_gb: u32, min_disk_gb: u32) -> Room {
    Room {
        cores: min_cores.max(1),
        ram_gb: min_ram_gb,
        disk_gb: min_disk_gb,
    }
}

/// How many following items to look at when scoring a type (bounds a step's work).
pub const LOOKAHEAD_ITEMS: usize = 4096;

/// Cores of demand an empty instance with `room` would serve: `first`, then each of `rest`
/// that still fits, first-fit in order. `None` when `first` does not fit.
pub fn cores_served(room: Room, first: Room, rest: &[Room]) -> Option<(u64, u32)> {
    if !room.holds(first) {
        return None;
    }
    let mut free = room.less(first);
    let mut cores = u64::from(first.cores);
    let mut items = 1u32;
    for need in rest.iter().take(LOOKAHEAD_ITEMS) {
        if free.cores == 0 {
            break;
        }
        if free.holds(*need) {
            free = free.less(*need);
            cores += u64::from(need.cores);
            items += 1;
        }
    }
    Some((cores, items))
}

/// A type that could take a new item, with how it would be bought.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    pub instance_type: &'a InstanceType,
    pub purchase: Purchase,
}

/// A candidate scored for one new instance.
#[derive(Clone, Copy, Debug)]
pub struct ScoredCandidate<'a> {
    pub candidate: Candidate<'a>,
    pub price_per_hour: f64,
    /// Dollars per hour per core of demand served.
    pub price_per_served_core: f64,
    pub items_served: u32,
}

/// The candidates that fit `first`, best first (see the module documentation). With
/// `rest` empty (one-shot, deployment, one item per instance) this is cheapest first.
pub fn rank_candidates<'a>(
    candidates: &[Candidate<'a>],
    first: Room,
    rest: &[Room],
) -> Vec<ScoredCandidate<'a>> {
    let mut scored: Vec<ScoredCandidate<'a>> = candidates
        .iter()
        .filter_map(|candidate| {
            let (cores, items) = cores_served(Room::of_type(candidate.instance_type), first, rest)?;
            let price = candidate.instance_type.price_per_hour(candidate.purchase);
            Some(ScoredCandidate {
                candidate: *candidate,
                price_per_hour: price,
                price_per_served_core: price / cores.max(1) as f64,
                items_served: items,
            })
        })
        .collect();
    // Integer keys (nano-dollars) give a total order and treat prices equal to 1e-9 $/h as
    // ties, so that a linear price table prefers the box that serves more items.
    let nano = |dollars: f64| (dollars * 1e9).round() as u64;
    scored.sort_by(|a, b| {
        nano(a.price_per_served_core)
            .cmp(&nano(b.price_per_served_core))
            .then(b.items_served.cmp(&a.items_served))
            .then(nano(a.price_per_hour).cmp(&nano(b.price_per_hour)))
            .then(
                a.candidate
                    .instance_type
                    .name
                    .cmp(&b.candidate.instance_type.name),
            )
            .then(a.candidate.purchase.cmp(&b.candidate.purchase))
    });
    scored
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance_type(name: &str, cores: u32, ram_gb: u32, price: f64) -> InstanceType {
        InstanceType {
            name: name.into(),
            cores,
            ram_gb,
            disk_gb: 100,
            on_demand_price_per_hour: price,
            spot_price_per_hour: None,
        }
    }

    #[test]
    fn first_fit_serves_what_fits_in_order() {
        let room = Room {
            cores: 4,
            ram_gb: 8,
            disk_gb: 10,
        };
        let need = item_need(2, 2, 1);
        let small = item_need(1, 1, 1);
        assert_eq!(cores_served(room, need, &[need, small]), Some((4, 2)));
        assert_eq!(cores_served(room, item_need(5, 0, 0), &[]), None);
        assert_eq!(item_need(0, 0, 0).cores, 1);
    }

    #[test]
    fn one_item_gets_the_cheapest_fitting_type_many_get_the_cheaper_per_core_box() {
        let types = [
            instance_type("small", 2, 4, 0.10),
            instance_type("big", 8, 16, 0.36),
        ];
        let candidates: Vec<Candidate> = types
            .iter()
            .map(|instance_type| Candidate {
                instance_type,
                purchase: Purchase::OnDemand,
            })
            .collect();
        let one = item_need(1, 1, 1);
        assert_eq!(
            rank_candidates(&candidates, one, &[])[0]
                .candidate
                .instance_type
                .name,
            "small"
        );
        let rest = vec![one; 7];
        let ranked = rank_candidates(&candidates, one, &rest);
        assert_eq!(ranked[0].candidate.instance_type.name, "big");
        assert_eq!(ranked[0].items_served, 8);
    }
}
