//! A bounded, thread-safe least-recently-used cache of values computed once per key.
//!
//! Each entry has a weight (commits in a walk, bytes of a file, ...) and the cache evicts the
//! least recently used entries once the total weight passes its budget, so memory stays
//! bounded whatever the keys. Callers that ask for the same missing key at the same time wait
//! for one computation instead of each repeating it. Values that fail to compute, or that the
//! computation marks as not cacheable, are not kept.

use lru::LruCache;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

/// What a computation returns: the value, and whether it may be kept.
pub struct Computed<V> {
    pub value: V,
    pub keep: bool,
}

impl<V> Computed<V> {
    /// A value that may be kept.
    pub fn keep(value: V) -> Self {
        Computed { value, keep: true }
    }
}

/// One key's value, filled by the first caller that computes it.
struct Slot<V> {
    value: Mutex<Option<V>>,
}

struct Entries<K: Hash + Eq, V> {
    map: LruCache<K, (Arc<Slot<V>>, usize)>,
    weight: usize,
}

/// See the module documentation.
pub struct BoundedCache<K: Hash + Eq, V> {
    entries: Mutex<Entries<K, V>>,
    budget: usize,
    weigh: fn(&V) -> usize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl<K: Hash + Eq + Clone, V: Clone> BoundedCache<K, V> {
    /// A cache holding values of total weight at most `budget` (at least one value is kept
    /// whatever its weight); `weigh` gives a value's weight.
    pub fn new(budget: usize, weigh: fn(&V) -> usize) -> Self {
        BoundedCache {
            entries: Mutex::new(Entries {
                map: LruCache::unbounded(),
                weight: 0,
            }),
            budget,
            weigh,
        }
    }

    /// The value of `key`, computed by `compute` when it is not cached. Concurrent callers of
    /// the same key wait for one computation.
    pub fn get_or_compute<E>(
        &self,
        key: &K,
        compute: impl FnOnce() -> Result<Computed<V>, E>,
    ) -> Result<V, E> {
        let slot = {
            let mut entries = lock(&self.entries);
            match entries.map.get(key) {
                Some((slot, _)) => slot.clone(),
                None => {
                    let slot = Arc::new(Slot {
                        value: Mutex::new(None),
                    });
                    entries.map.put(key.clone(), (slot.clone(), 0));
                    slot
                }
            }
        };
        let mut value = lock(&slot.value);
        if let Some(known) = value.as_ref() {
            return Ok(known.clone());
        }
        let computed = match compute() {
            Ok(computed) => computed,
            Err(error) => {
                drop(value);
                self.forget(key, &slot);
                return Err(error);
            }
        };
        if !computed.keep {
            drop(value);
            self.forget(key, &slot);
            return Ok(computed.value);
        }
        let weight = (self.weigh)(&computed.value);
        *value = Some(computed.value.clone());
        drop(value);
        self.account(key, &slot, weight);
        Ok(computed.value)
    }

    /// Removes `key` if it still holds `slot` (a failed or uncacheable computation).
    fn forget(&self, key: &K, slot: &Arc<Slot<V>>) {
        let mut entries = lock(&self.entries);
        if entries
            .map
            .peek(key)
            .is_some_and(|(held, _)| Arc::ptr_eq(held, slot))
        {
            if let Some((_, weight)) = entries.map.pop(key) {
                entries.weight -= weight;
            }
        }
    }

    /// Records the weight of a filled slot and evicts the least recently used values while
    /// the budget is exceeded.
    fn account(&self, key: &K, slot: &Arc<Slot<V>>, weight: usize) {
        let mut entries = lock(&self.entries);
        let Some((held, recorded)) = entries.map.peek_mut(key) else {
            return;
        };
        if !Arc::ptr_eq(held, slot) {
            return;
        }
        *recorded = weight;
        entries.weight += weight;
        while entries.weight > self.budget && entries.map.len() > 1 {
            match entries.map.pop_lru() {
                Some((_, (_, evicted))) => entries.weight -= evicted,
                None => break,
            }
        }
    }
}

#[cfg(test)]
impl<K: Hash + Eq + Clone, V: Clone> BoundedCache<K, V> {
    /// The value of `key`, if it is cached (marks it recently used).
    pub fn get(&self, key: &K) -> Option<V> {
        let slot = lock(&self.entries)
            .map
            .get(key)
            .map(|(slot, _)| slot.clone())?;
        let value = lock(&slot.value).clone();
        value
    }

    /// Number of cached values (including ones being computed).
    pub fn len(&self) -> usize {
        lock(&self.entries).map.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total weight of the cached values.
    pub fn weight(&self) -> usize {
        lock(&self.entries).weight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computes_once_and_evicts_least_recently_used_past_the_budget() {
        let cache: BoundedCache<u32, String> = BoundedCache::new(10, String::len);
        let mut calls = 0;
        for _ in 0..3 {
            let value = cache.get_or_compute(&1, || {
                calls += 1;
                Ok::<_, ()>(Computed::keep("aaaa".to_string()))
            });
            assert_eq!(value, Ok("aaaa".to_string()));
        }
        assert_eq!(calls, 1);
        cache
            .get_or_compute(&2, || Ok::<_, ()>(Computed::keep("bbbb".into())))
            .unwrap();
        // 1 was used after 2 was inserted: 2 is the least recently used one.
        assert!(cache.get(&1).is_some());
        cache
            .get_or_compute(&3, || Ok::<_, ()>(Computed::keep("cccc".into())))
            .unwrap();
        assert_eq!(cache.weight(), 8);
        assert!(cache.get(&2).is_none());
        assert!(cache.get(&1).is_some() && cache.get(&3).is_some());
    }

    #[test]
    fn failures_and_unkept_values_are_not_cached() {
        let cache: BoundedCache<u32, String> = BoundedCache::new(100, String::len);
        assert_eq!(
            cache.get_or_compute(&1, || Err::<Computed<String>, _>("no")),
            Err("no")
        );
        assert!(cache.is_empty());
        let value = cache.get_or_compute(&1, || {
            Ok::<_, ()>(Computed {
                value: "pending".to_string(),
                keep: false,
            })
        });
        assert_eq!(value, Ok("pending".to_string()));
        assert!(cache.is_empty() && cache.get(&1).is_none());
    }

    #[test]
    fn a_value_heavier_than_the_budget_is_still_kept_alone() {
        let cache: BoundedCache<u32, String> = BoundedCache::new(2, String::len);
        cache
            .get_or_compute(&1, || Ok::<_, ()>(Computed::keep("abc".into())))
            .unwrap();
        cache
            .get_or_compute(&2, || Ok::<_, ()>(Computed::keep("defg".into())))
            .unwrap();
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(&2), Some("defg".to_string()));
    }
}
