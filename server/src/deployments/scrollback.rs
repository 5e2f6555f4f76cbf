//! A deployment's terminal output as one byte stream with absolute offsets: the last
//! `capacity` bytes are kept ([`Scrollback`], shared with the worker), and a worker's resent
//! chunks are trimmed to the part not seen yet ([`WorkerCursor`]). Pure data, no I/O.

pub use test_looper_core::scrollback::Scrollback;

/// How much of a worker's own output stream the server has taken in. The worker numbers its
/// bytes itself (server banners are not part of its count), and after a reconnect it may
/// resend bytes the server already has.
#[derive(Debug, Default)]
pub struct WorkerCursor {
    received: u64,
}

impl WorkerCursor {
    /// The part of `data` (worker bytes from `offset`) not taken in yet. A chunk beyond what
    /// was received (bytes lost, e.g. across a server restart) is taken whole.
    pub fn unseen<'a>(&mut self, offset: u64, data: &'a [u8]) -> &'a [u8] {
        let end = offset + data.len() as u64;
        if end <= self.received {
            return &[];
        }
        let skip = self.received.saturating_sub(offset) as usize;
        self.received = end;
        &data[skip..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resent_chunk_contributes_only_its_unseen_suffix() {
        let mut cursor = WorkerCursor::default();
        assert_eq!(cursor.unseen(0, b"abc"), b"abc");
        assert_eq!(cursor.unseen(0, b"abc"), b"");
        assert_eq!(cursor.unseen(1, b"bcde"), b"de");
        assert_eq!(cursor.unseen(2, b"cd"), b"");
        // A gap: taken whole, counted from its end.
        assert_eq!(cursor.unseen(10, b"xy"), b"xy");
        assert_eq!(cursor.unseen(11, b"yz"), b"z");
    }
}
