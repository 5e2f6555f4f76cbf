//! A computed view as it is kept and shared: the view, what of the scheduler's state it read
//! ([`Reads`]), how long its clock-dependent texts hold ([`Keep`]), and its JSON and HTML
//! page, each made once for every request it answers.
//!
//! A view is a function of versioned sources (parts of the scheduler's state, branch heads:
//! see [`crate::cache::coalesce::Version`]) and of the wall clock, through texts such as "42
//! seconds". [`Keep`] says until when those texts hold; facts that change without a version
//! (a parse waiting for another repo, machines' heartbeats) bound it to
//! [`UNVERSIONED_FOR_MS`].

use bytes::Bytes;
use serde::Serialize;
use std::sync::{Arc, OnceLock};
use test_looper_core::scheduling::StatePart;

/// How long a view that shows facts without a version is kept.
pub const UNVERSIONED_FOR_MS: u64 = 1_000;

/// How long a computed view may be served again while its sources' version holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Until the wall clock reaches this many milliseconds since the epoch (when a text such
    /// as "42 seconds" would change).
    Until(u64),
    /// For as long as the version holds.
    WhileUnchanged,
}

impl Keep {
    /// The shorter of the two.
    pub fn min(self, other: Keep) -> Keep {
        match (self, other) {
            (Keep::Until(a), Keep::Until(b)) => Keep::Until(a.min(b)),
            (Keep::Until(a), Keep::WhileUnchanged) | (Keep::WhileUnchanged, Keep::Until(a)) => {
                Keep::Until(a)
            }
            (Keep::WhileUnchanged, Keep::WhileUnchanged) => Keep::WhileUnchanged,
        }
    }

    /// Whether a view kept this way may still be served at `now_ms`.
    pub fn holds_at(self, now_ms: u64) -> bool {
        match self {
            Keep::Until(until) => now_ms < until,
            Keep::WhileUnchanged => true,
        }
    }

    /// Kept for facts without a version, read at `now_ms`.
    pub fn unversioned(now_ms: u64) -> Keep {
        Keep::Until(now_ms.saturating_add(UNVERSIONED_FOR_MS))
    }
}

/// What of the scheduler's state a view was computed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reads {
    /// These parts only: the view stays current while none of them changes.
    Parts(Vec<StatePart>),
    /// Anything (machines, the queue): every change of the state makes the view old.
    Everything,
}

/// See the module documentation.
pub struct Snapshot<V> {
    view: V,
    reads: Reads,
    keep: Keep,
    /// About the bytes of a view that is never serialised (see [`Snapshot::weight`]).
    size_hint: usize,
    json: OnceLock<Result<Bytes, String>>,
    page: OnceLock<Result<Bytes, String>>,
}

impl<V> Snapshot<V> {
    pub fn new(view: V, reads: Reads, keep: Keep) -> Arc<Snapshot<V>> {
        Snapshot::with_size_hint(view, reads, keep, 0)
    }

    /// A snapshot of a view that holds about `size_hint` bytes.
    pub fn with_size_hint(view: V, reads: Reads, keep: Keep, size_hint: usize) -> Arc<Snapshot<V>> {
        Arc::new(Snapshot {
            view,
            reads,
            keep,
            size_hint,
            json: OnceLock::new(),
            page: OnceLock::new(),
        })
    }

    /// About how many bytes the snapshot holds: its JSON and page once made, the view
    /// itself counted as much as its JSON (or as its size hint), and a floor for the rest.
    pub fn weight(&self) -> usize {
        let made = |slot: &OnceLock<Result<Bytes, String>>| {
            slot.get()
                .and_then(|made| made.as_ref().ok())
                .map_or(0, Bytes::len)
        };
        let json = made(&self.json);
        1024 + self.size_hint.max(json) + json + made(&self.page)
    }

    pub fn reads(&self) -> &Reads {
        &self.reads
    }

    pub fn view(&self) -> &V {
        &self.view
    }

    pub fn keep(&self) -> Keep {
        self.keep
    }

    /// The view's HTML page as `render` makes it (rendered by the first caller and shared:
    /// the page must depend on nothing but the view and what is fixed for the server's
    /// life).
    pub fn page(&self, render: impl FnOnce(&V) -> Result<String, String>) -> Result<Bytes, String> {
        self.page
            .get_or_init(|| render(&self.view).map(Bytes::from))
            .clone()
    }
}

impl<V: Serialize> Snapshot<V> {
    /// The view as JSON (serialised by the first caller, shared by the others).
    pub fn json(&self) -> Result<Bytes, String> {
        self.json
            .get_or_init(|| {
                serde_json::to_vec(&self.view)
                    .map(Bytes::from)
                    .map_err(|err| format!("cannot serialise the view: {err}"))
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::format;
    use crate::views::format::elapsed_texts_keep;

    #[test]
    fn the_shorter_keep_wins() {
        assert_eq!(Keep::WhileUnchanged.min(Keep::Until(5)), Keep::Until(5));
        assert_eq!(Keep::Until(7).min(Keep::Until(5)), Keep::Until(5));
        assert_eq!(
            Keep::WhileUnchanged.min(Keep::WhileUnchanged),
            Keep::WhileUnchanged
        );
        assert!(Keep::Until(5).holds_at(4));
        assert!(!Keep::Until(5).holds_at(5));
        assert!(Keep::WhileUnchanged.holds_at(u64::MAX));
    }

    #[test]
    fn elapsed_texts_are_kept_until_the_first_one_changes() {
        let text_at =
            |now_ms: u64, since: i64| format::duration((now_ms as i64 - since).div_euclid(1000));
        let now_ms = 1_700_000_000_500;
        let since = [
            1_700_000_000_000 - 42_000,         // "42 seconds": changes in 0.5 s
            1_700_000_000_000 - 3 * 86_400_000, // days
            1_700_000_000_000 + 5_000,          // in the future: "0 seconds"
        ];
        let Keep::Until(until) = elapsed_texts_keep(now_ms, since) else {
            panic!("clock texts are kept until they change")
        };
        assert_eq!(until, 1_700_000_001_000);
        for s in &since[1..] {
            assert_eq!(text_at(until, *s), text_at(now_ms, *s));
        }
        assert_ne!(text_at(until, since[0]), text_at(now_ms, since[0]));
        assert_eq!(text_at(until - 1, since[0]), text_at(now_ms, since[0]));
        assert_eq!(elapsed_texts_keep(now_ms, []), Keep::WhileUnchanged);
        // Days-old texts hold for a long time.
        let Keep::Until(until) = elapsed_texts_keep(now_ms, [since[1]]) else {
            panic!()
        };
        assert!(until - now_ms > 60_000);
        assert_eq!(text_at(until - 1, since[1]), text_at(now_ms, since[1]));
        assert_ne!(text_at(until, since[1]), text_at(now_ms, since[1]));
    }

    #[test]
    fn json_and_page_are_made_once_and_shared() {
        let snapshot = Snapshot::new(vec![1, 2, 3], Reads::Everything, Keep::WhileUnchanged);
        let first = snapshot.json().unwrap();
        let second = snapshot.json().unwrap();
        assert_eq!(&first[..], b"[1,2,3]");
        assert_eq!(
            first.as_ptr(),
            second.as_ptr(),
            "the same bytes, not a copy"
        );
        let page = snapshot
            .page(|view| Ok(format!("<p>{}</p>", view.len())))
            .unwrap();
        let again = snapshot.page(|_| panic!("rendered twice")).unwrap();
        assert_eq!(&page[..], b"<p>3</p>");
        assert_eq!(page.as_ptr(), again.as_ptr());
        assert_eq!(snapshot.weight(), 1024 + 7 + 7 + 8, "view, JSON and page");
    }
}
