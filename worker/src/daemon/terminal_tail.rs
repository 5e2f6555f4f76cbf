//! The bounded tail of a deployment's terminal stream, with absolute offsets: new output is
//! appended (and numbered from the stream's start), and after a reconnect the kept tail is
//! resent from its own offset (the server keeps only the suffix it has not seen).

use test_looper_core::scrollback::Scrollback;

/// Bytes of terminal output kept for a resend after a reconnect.
pub const TAIL_BYTES: usize = 256 * 1024;
/// Largest raw chunk sent in one `TerminalOutput` message.
pub const MAX_CHUNK_BYTES: usize = 64 * 1024;

/// The last [`TAIL_BYTES`] of a terminal stream.
#[derive(Debug)]
pub struct TerminalTail {
    kept: Scrollback,
}

impl Default for TerminalTail {
    fn default() -> Self {
        TerminalTail {
            kept: Scrollback::new(TAIL_BYTES),
        }
    }
}

impl TerminalTail {
    /// Offset of the next byte.
    pub fn end(&self) -> u64 {
        self.kept.end()
    }

    /// Appends `data`; returns its chunks (at most [`MAX_CHUNK_BYTES`] each) with their offsets.
    pub fn push(&mut self, data: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let chunks = chunks_from(self.end(), data);
        self.kept.push(data);
        chunks
    }

    /// The kept tail as chunks with their offsets, for a resend.
    pub fn resend(&self) -> Vec<(u64, Vec<u8>)> {
        let (start, kept) = self.kept.read_from(self.kept.start(), TAIL_BYTES);
        chunks_from(start, &kept)
    }
}

fn chunks_from(offset: u64, data: &[u8]) -> Vec<(u64, Vec<u8>)> {
    data.chunks(MAX_CHUNK_BYTES)
        .enumerate()
        .map(|(index, chunk)| (offset + (index * MAX_CHUNK_BYTES) as u64, chunk.to_vec()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_absolute_and_chunks_capped() {
        let mut tail = TerminalTail::default();
        assert_eq!(tail.push(b"hello"), vec![(0, b"hello".to_vec())]);
        let big = vec![7u8; MAX_CHUNK_BYTES + 10];
        let chunks = tail.push(&big);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].0, 5);
        assert_eq!(chunks[0].1.len(), MAX_CHUNK_BYTES);
        assert_eq!(chunks[1].0, 5 + MAX_CHUNK_BYTES as u64);
        assert_eq!(chunks[1].1.len(), 10);
        assert_eq!(tail.end(), 5 + big.len() as u64);
    }

    #[test]
    fn only_the_tail_is_kept_and_resent_from_its_offset() {
        let mut tail = TerminalTail::default();
        let mut written = Vec::new();
        for round in 0..10u8 {
            let data = vec![round; 50 * 1024];
            tail.push(&data);
            written.extend(data);
        }
        let resent = tail.resend();
        let first = resent[0].0;
        assert_eq!(first, (written.len() - TAIL_BYTES) as u64);
        let mut joined = Vec::new();
        let mut expected_offset = first;
        for (offset, chunk) in resent {
            assert_eq!(offset, expected_offset);
            expected_offset += chunk.len() as u64;
            joined.extend(chunk);
        }
        assert_eq!(joined, written[written.len() - TAIL_BYTES..]);
        assert_eq!(expected_offset, tail.end());
    }
}
