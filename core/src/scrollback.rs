//! A byte stream's bounded tail with absolute offsets: the last `capacity` bytes are kept,
//! numbered from the stream's start. Server and worker both keep one per terminal stream.
//! Pure data, no I/O.

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
}
