//! Versions of the scheduler's state: one number that moves with every step that changed the
//! engine, and for each part of the state ([`StatePart`]: a commit, a repo's branches) the
//! version that last touched it. Readers that computed something from a few parts at version
//! `v` ask [`StateVersions::changed_since`] whether any of them moved after `v`, and keep
//! what they computed when none did, however busy the rest of the state is.
//!
//! Every change is recorded while the engine is locked, before the version that includes it
//! is published, so a reader that saw version `v` and then read the engine has every change
//! up to `v`, and a part touched after `v` always reads as changed.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use test_looper_core::scheduling::{PartsTouched, StatePart};

#[derive(Default)]
struct Index {
    version: u64,
    parts: HashMap<StatePart, u64>,
    /// The last version that touched everything (a reload, or a step too big to list).
    everything: u64,
}

/// See the module documentation.
#[derive(Default)]
pub struct StateVersions {
    index: Mutex<Index>,
}

impl StateVersions {
    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current version.
    pub fn current(&self) -> u64 {
        self.lock().version
    }

    /// Records a step that touched `touched`; returns its version.
    pub fn step(&self, touched: PartsTouched) -> u64 {
        let mut index = self.lock();
        index.version += 1;
        let version = index.version;
        match touched {
            PartsTouched::Everything => index.everything = version,
            PartsTouched::Parts(parts) => {
                for part in parts {
                    index.parts.insert(part, version);
                }
            }
        }
        version
    }

    /// Records that everything changed (the engine was reloaded); returns the version.
    pub fn everything_changed(&self) -> u64 {
        self.step(PartsTouched::Everything)
    }

    /// Whether any of `parts` was touched after version `since` (a version from the
    /// future, which cannot be told apart from a reset, counts as changed).
    pub fn changed_since(&self, parts: &[StatePart], since: u64) -> bool {
        let index = self.lock();
        since > index.version
            || index.everything > since
            || parts
                .iter()
                .any(|part| index.parts.get(part).is_some_and(|&at| at > since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(hash: &str) -> StatePart {
        StatePart::Commit {
            repo: "r".into(),
            hash: hash.into(),
        }
    }

    fn parts(list: &[StatePart]) -> PartsTouched {
        PartsTouched::Parts(list.iter().cloned().collect())
    }

    #[test]
    fn only_touched_parts_read_as_changed() {
        let versions = StateVersions::default();
        assert_eq!(versions.current(), 0);
        let v1 = versions.step(parts(&[commit("a")]));
        assert_eq!(v1, 1);
        assert!(versions.changed_since(&[commit("a")], 0));
        assert!(!versions.changed_since(&[commit("a")], v1));
        let v2 = versions.step(parts(&[commit("b")]));
        assert!(
            !versions.changed_since(&[commit("a")], v1),
            "b moved, not a"
        );
        assert!(versions.changed_since(&[commit("a"), commit("b")], v1));
        assert!(!versions.changed_since(&[], v1));
        assert!(!versions.changed_since(&[commit("b")], v2));
        assert!(
            versions.changed_since(&[commit("b")], v2 + 1),
            "from the future"
        );

        let v3 = versions.everything_changed();
        assert!(versions.changed_since(&[], v2));
        assert!(versions.changed_since(&[commit("a")], v2));
        assert!(!versions.changed_since(&[commit("a")], v3));
    }
}
