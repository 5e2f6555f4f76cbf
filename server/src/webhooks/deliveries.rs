//! Replay refusal (L11): the ids of recently handled deliveries (`X-GitHub-Delivery`,
//! GitLab's `X-Gitlab-Event-UUID`), so a captured signed request sent again is refused. The
//! memory is bounded: the oldest ids are forgotten first. A delivery is remembered only once
//! it was handled, so a redelivery of one that failed still goes through.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// Delivery ids remembered.
pub const REMEMBERED: usize = 4096;
/// Longest delivery id accepted (GitHub and GitLab send 36-character UUIDs).
pub const MAX_ID_CHARS: usize = 128;

/// Recently handled delivery ids, oldest first.
#[derive(Default)]
pub struct RecentDeliveries {
    inner: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl RecentDeliveries {
    /// Whether `id` was handled recently.
    pub fn seen(&self, id: &str) -> bool {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.0.contains(id)
    }

    /// Remembers a handled delivery, forgetting the oldest beyond [`REMEMBERED`].
    pub fn remember(&self, id: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (set, order) = &mut *inner;
        if set.insert(id.to_string()) {
            order.push_back(id.to_string());
        }
        while order.len() > REMEMBERED {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_a_bounded_number_of_ids() {
        let recent = RecentDeliveries::default();
        recent.remember("a");
        recent.remember("a");
        assert!(recent.seen("a"));
        assert!(!recent.seen("b"));
        for i in 0..REMEMBERED {
            recent.remember(&i.to_string());
        }
        assert!(!recent.seen("a"), "the oldest id is forgotten");
        assert!(recent.seen(&(REMEMBERED - 1).to_string()));
    }
}
