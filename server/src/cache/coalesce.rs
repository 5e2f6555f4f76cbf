//! Coalesced reads: concurrent requests for the same view share one computation, and each
//! request still gets a view read *after* it arrived (nothing is served from before it).
//!
//! Per key, at most one computation runs. Requests that arrive meanwhile join one pending
//! batch; when the running computation ends, the batch's first request computes once for all
//! of them. A request therefore waits for at most the computation before it and its own, and
//! under load one computation answers many requests instead of each repeating the same reads
//! of the scheduler's state and git. If the request computing for a batch goes away (client
//! disconnected), the others compute themselves.
//!
//! [`Coalescer::read_unless_changed`] also keeps the last value per key with the [`Version`]
//! of its sources read *before* it was computed (the scheduler's state version, the branch
//! head), and serves it again for as long as the caller finds it current given the version
//! of the sources now.

use lru::LruCache;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{watch, Mutex as Gate};

/// Values kept per coalescer at most, least recently used dropped first, and their weight
/// at most (about their bytes: see [`Weigh`]); the newest value is kept whatever it weighs.
const KEPT_VALUES: usize = 256;
const KEPT_WEIGHT: usize = 32 << 20;

/// About how many bytes a kept value holds (read again at every eviction, so a value may
/// grow after it was kept, as a view does when its JSON or page is made).
pub trait Weigh {
    fn weight(&self) -> usize;
}

/// What a view was computed from: the scheduler's state version and, for views of git refs,
/// the branch head (or every head of the repos shown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub state: u64,
    pub head: Option<String>,
}

/// A value kept with the version of the sources it was computed from (read before).
pub struct Kept<V> {
    pub version: Version,
    pub value: V,
}

struct Entry<V> {
    /// Held while a computation for the key runs.
    gate: Arc<Gate<()>>,
    /// The batch that has not started computing yet, if any.
    pending: Option<watch::Receiver<Option<V>>>,
    /// Requests for the key in flight (the entry goes when none is left).
    requests: usize,
}

/// See the module documentation.
pub struct Coalescer<K, V> {
    entries: Mutex<HashMap<K, Entry<V>>>,
    kept: Mutex<LruCache<K, Kept<V>>>,
}

impl<K: Hash + Eq, V> Default for Coalescer<K, V> {
    fn default() -> Self {
        Coalescer {
            entries: Mutex::new(HashMap::new()),
            kept: Mutex::new(LruCache::new(
                NonZeroUsize::new(KEPT_VALUES).expect("nonzero"),
            )),
        }
    }
}

impl<K, V> Coalescer<K, V> {
    /// Keys with requests in flight.
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, Entry<V>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

enum Role<V> {
    /// Computes for the batch.
    Leader(watch::Sender<Option<V>>),
    /// Waits for the batch's result.
    Follower(watch::Receiver<Option<V>>),
}

/// Counts a request in flight; when dropped (answered or abandoned) tidies the entry.
struct InFlight<'a, K: Hash + Eq, V> {
    coalescer: &'a Coalescer<K, V>,
    key: K,
}

impl<K: Hash + Eq, V> Drop for InFlight<'_, K, V> {
    fn drop(&mut self) {
        let mut entries = self.coalescer.lock();
        let Some(entry) = entries.get_mut(&self.key) else {
            return;
        };
        entry.requests -= 1;
        // A batch whose leader went away before computing cannot be joined any more.
        if entry
            .pending
            .as_ref()
            .is_some_and(|batch| batch.has_changed().is_err())
        {
            entry.pending = None;
        }
        if entry.requests == 0 {
            entries.remove(&self.key);
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone + Weigh> Coalescer<K, V> {
    /// The kept value of `key` if `is_current` says it still is, else [`Coalescer::read`],
    /// kept with `version` (the version of its sources, read before this call) for the
    /// next requests.
    pub async fn read_unless_changed<F, Fut>(
        &self,
        key: K,
        version: Version,
        is_current: impl FnOnce(&Kept<V>) -> bool,
        compute: F,
    ) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let kept = {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            kept.get(&key).map(|kept| Kept {
                version: kept.version.clone(),
                value: kept.value.clone(),
            })
        };
        // Checked outside the lock: the check may read other state.
        if let Some(kept) = kept.filter(|kept| is_current(kept)) {
            return kept.value;
        }
        let value = self.read(key.clone(), compute).await;
        let kept = Kept {
            version,
            value: value.clone(),
        };
        let mut all = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        all.put(key, kept);
        let mut weight: usize = all.iter().map(|(_, kept)| kept.value.weight()).sum();
        while weight > KEPT_WEIGHT && all.len() > 1 {
            if let Some((_, dropped)) = all.pop_lru() {
                weight = weight.saturating_sub(dropped.value.weight());
            }
        }
        value
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Coalescer<K, V> {
    /// The value of `compute`, run by this request or by the one computing for its batch.
    pub async fn read<F, Fut>(&self, key: K, compute: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let (role, gate) = {
            let mut entries = self.lock();
            let entry = entries.entry(key.clone()).or_insert_with(|| Entry {
                gate: Arc::new(Gate::new(())),
                pending: None,
                requests: 0,
            });
            entry.requests += 1;
            let role = match &entry.pending {
                Some(batch) if batch.has_changed().is_ok() => Role::Follower(batch.clone()),
                _ => {
                    let (sender, batch) = watch::channel(None);
                    entry.pending = Some(batch);
                    Role::Leader(sender)
                }
            };
            (role, entry.gate.clone())
        };
        let _in_flight = InFlight {
            coalescer: self,
            key: key.clone(),
        };
        match role {
            Role::Leader(sender) => {
                let _running = gate.lock().await;
                // Close the batch before computing: later requests form the next one.
                if let Some(entry) = self.lock().get_mut(&key) {
                    if entry
                        .pending
                        .as_ref()
                        .is_some_and(|batch| batch.same_channel(&sender.subscribe()))
                    {
                        entry.pending = None;
                    }
                }
                let value = compute().await;
                let _ = sender.send(Some(value.clone()));
                value
            }
            Role::Follower(mut batch) => {
                let shared = match batch.wait_for(Option::is_some).await {
                    Ok(value) => value.clone(),
                    Err(_) => None,
                };
                match shared {
                    Some(value) => value,
                    None => compute().await,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    impl Weigh for usize {
        fn weight(&self) -> usize {
            *self
        }
    }

    /// Keeps a value of `weight` under `key`.
    async fn keep(coalescer: &Coalescer<usize, usize>, key: usize, weight: usize) {
        let version = Version {
            state: 0,
            head: None,
        };
        coalescer
            .read_unless_changed(key, version, |_| true, || async move { weight })
            .await;
    }

    #[tokio::test]
    async fn kept_values_are_dropped_oldest_first_past_their_weight() {
        let coalescer: Coalescer<usize, usize> = Coalescer::default();
        let kept = |coalescer: &Coalescer<usize, usize>| {
            let mut keys: Vec<usize> = coalescer
                .kept
                .lock()
                .unwrap()
                .iter()
                .map(|(k, _)| *k)
                .collect();
            keys.sort();
            keys
        };
        keep(&coalescer, 1, KEPT_WEIGHT / 2).await;
        keep(&coalescer, 2, KEPT_WEIGHT / 4).await;
        assert_eq!(kept(&coalescer), [1, 2]);
        keep(&coalescer, 3, KEPT_WEIGHT / 2).await;
        assert_eq!(kept(&coalescer), [2, 3], "the oldest went");
        keep(&coalescer, 4, 2 * KEPT_WEIGHT).await;
        assert_eq!(kept(&coalescer), [4], "the newest stays whatever it weighs");
        for key in 10..(10 + KEPT_VALUES + 5) {
            keep(&coalescer, key, 1).await;
        }
        assert_eq!(kept(&coalescer).len(), KEPT_VALUES);
    }

    #[tokio::test]
    async fn a_kept_value_is_served_while_the_caller_finds_it_current() {
        let coalescer: Coalescer<&str, usize> = Coalescer::default();
        let computations = AtomicUsize::new(0);
        let read = |state: u64, head: &str| {
            let version = Version {
                state,
                head: Some(head.to_owned()),
            };
            let computations = &computations;
            let coalescer = &coalescer;
            async move {
                let now = version.clone();
                coalescer
                    .read_unless_changed(
                        "view",
                        version,
                        |kept| kept.version == now,
                        || async { computations.fetch_add(1, Ordering::SeqCst) + 1 },
                    )
                    .await
            }
        };
        assert_eq!(read(1, "a").await, 1);
        assert_eq!(read(1, "a").await, 1, "same version: the kept value");
        assert_eq!(read(2, "a").await, 2, "the state moved");
        assert_eq!(read(2, "b").await, 3, "the head moved");
        assert_eq!(read(2, "b").await, 3);
        assert_eq!(
            read(1, "a").await,
            4,
            "an older version is never kept over a newer one's key"
        );
        assert_eq!(read(1, "a").await, 4, "the newest computation is kept");
        assert_eq!(computations.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn requests_arriving_during_a_computation_share_the_next_one() {
        let coalescer: Arc<Coalescer<&str, usize>> = Arc::default();
        let computations = Arc::new(AtomicUsize::new(0));
        let (release_first, first_released) = tokio::sync::oneshot::channel::<()>();
        let first = {
            let (coalescer, computations) = (coalescer.clone(), computations.clone());
            tokio::spawn(async move {
                coalescer
                    .read("k", || async move {
                        first_released.await.ok();
                        computations.fetch_add(1, Ordering::SeqCst)
                    })
                    .await
            })
        };
        while coalescer
            .lock()
            .get("k")
            .is_none_or(|e| e.pending.is_some())
        {
            tokio::task::yield_now().await;
        }
        // The first computation runs: these arrive after it started, so they must not get
        // its value, and they share one computation of their own.
        let later: Vec<_> = (0..5)
            .map(|_| {
                let (coalescer, computations) = (coalescer.clone(), computations.clone());
                tokio::spawn(async move {
                    coalescer
                        .read("k", || async move {
                            computations.fetch_add(1, Ordering::SeqCst)
                        })
                        .await
                })
            })
            .collect();
        while coalescer.lock().get("k").map_or(0, |e| e.requests) < 6 {
            tokio::task::yield_now().await;
        }
        release_first.send(()).unwrap();
        assert_eq!(first.await.unwrap(), 0);
        for request in later {
            assert_eq!(request.await.unwrap(), 1);
        }
        assert_eq!(computations.load(Ordering::SeqCst), 2);
        assert_eq!(coalescer.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_batch_whose_leader_goes_away_computes_for_itself() {
        let coalescer: Arc<Coalescer<&str, u32>> = Arc::default();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let blocker = {
            let coalescer = coalescer.clone();
            tokio::spawn(async move {
                coalescer
                    .read(
                        "k",
                        || async move { released.await.map(|_| 1).unwrap_or(1) },
                    )
                    .await
            })
        };
        while coalescer
            .lock()
            .get("k")
            .is_none_or(|e| e.pending.is_some())
        {
            tokio::task::yield_now().await;
        }
        // A leader waiting behind the running computation, then dropped.
        let leader = {
            let coalescer = coalescer.clone();
            tokio::spawn(async move { coalescer.read("k", || async { 2 }).await })
        };
        while coalescer.lock().get("k").map_or(0, |e| e.requests) < 2 {
            tokio::task::yield_now().await;
        }
        let follower = {
            let coalescer = coalescer.clone();
            tokio::spawn(async move { coalescer.read("k", || async { 3 }).await })
        };
        while coalescer.lock().get("k").map_or(0, |e| e.requests) < 3 {
            tokio::task::yield_now().await;
        }
        leader.abort();
        release.send(()).unwrap();
        assert_eq!(blocker.await.unwrap(), 1);
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(10), follower)
                .await
                .expect("the follower is not left waiting")
                .unwrap(),
            3
        );
        assert_eq!(coalescer.in_flight(), 0);
    }
}
