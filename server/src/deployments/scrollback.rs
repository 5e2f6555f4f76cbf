//! A deployment's terminal output as one byte stream with absolute offsets: the last
//! `capacity` bytes are kept ([`Scrollback`]), and a worker's resent chunks are trimmed to the
//! part not seen yet ([`WorkerCursor`]). Pure data, no I/O.

use std::collections::VecDeque;

/// The tail of an output stream. Offsets count every byte ever pushed; bytes before
/// [`Scrollback::start`] have been dropped.
#[derive(Debug)]
pub struct Scrollback {
    start: u64,
    bytes: VecDeque<u8>,
    capacity: usize,
}

impl Scrollback {
    pub fn new(capacity: usize) -> Self {
        Scrollback {
            start: 0,
            bytes: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Offset of the oldest byte kept.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Offset just past the newest byte (the stream's length).
    pub fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }

    /// Appends `data`, dropping the oldest bytes beyond the capacity.
    pub fn push(&mut self, data: &[u8]) {
        self.bytes.extend(data);
        let excess = self.bytes.len().saturating_sub(self.capacity);
        if excess > 0 {
            self.bytes.drain(..excess);
            self.start += excess as u64;
        }
    }

    /// Up to `max` bytes from `offset`, and the offset they really start at: an offset
    /// before the kept tail starts at [`Scrollback::start`], one past the end at the end.
    pub fn read_from(&self, offset: u64, max: usize) -> (u64, Vec<u8>) {
        let from = offset.clamp(self.start, self.end());
        let skip = (from - self.start) as usize;
        let bytes = self.bytes.range(skip..).take(max).copied().collect();
        (from, bytes)
    }
}

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
    fn keeps_the_last_capacity_bytes_with_absolute_offsets() {
        let mut scrollback = Scrollback::new(8);
        scrollback.push(b"hello ");
        scrollback.push(b"world");
        assert_eq!((scrollback.start(), scrollback.end()), (3, 11));
        assert_eq!(scrollback.read_from(0, 100), (3, b"lo world".to_vec()));
        assert_eq!(scrollback.read_from(6, 3), (6, b"wor".to_vec()));
        assert_eq!(scrollback.read_from(11, 100), (11, Vec::new()));
        assert_eq!(scrollback.read_from(50, 100), (11, Vec::new()));
    }

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
