//! The live log of the current run on the worker's side (M2): a bounded tail in memory and
//! a send cursor. The session sends frames from the cursor as the link accepts them: from
//! the tail, or from the run's on-disk log file for bytes the tail no longer holds, so memory
//! stays bounded however much a test prints and however slow the link is. After a
//! reconnect the cursor goes back to the last offset the server is known to have processed
//! (see [`RunLog::confirm`]); the server keeps only bytes it has not seen.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use test_looper_core::scrollback::Scrollback;

/// Bytes of the live log kept in memory.
pub const TAIL_BYTES: usize = 4 * 1024 * 1024;
/// Largest log text sent in one frame.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;

/// A run's live log: its tail, where its full text is on disk, and what was sent.
#[derive(Debug)]
pub struct RunLog {
    kept: Scrollback,
    /// The executor's copy of the whole log (gone once the run has finished).
    file: Option<PathBuf>,
    /// Offset of the next byte to send on this session.
    sent: u64,
    /// Offset up to which the server has processed the log.
    confirmed: u64,
}

impl RunLog {
    pub fn new(file: Option<PathBuf>) -> RunLog {
        RunLog::with_capacity(file, TAIL_BYTES)
    }

    pub fn with_capacity(file: Option<PathBuf>, capacity: usize) -> RunLog {
        RunLog {
            kept: Scrollback::new(capacity),
            file,
            sent: 0,
            confirmed: 0,
        }
    }

    /// Appends output of the run.
    pub fn push(&mut self, text: &str) {
        self.kept.push(text.as_bytes());
    }

    /// Length of the log so far.
    pub fn end(&self) -> u64 {
        self.kept.end()
    }

    /// Offset of the next byte to send.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Everything was sent on this session.
    pub fn drained(&self) -> bool {
        self.sent >= self.kept.end()
    }

    /// The server has processed the log up to `offset` (it answered a heartbeat sent after
    /// the frames that end there; frames are handled in order).
    pub fn confirm(&mut self, offset: u64) {
        self.confirmed = self.confirmed.max(offset.min(self.kept.end()));
    }

    /// A new session: send again from what the server is known to have.
    pub fn rewind(&mut self) {
        self.sent = self.confirmed;
    }

    /// The next frame to send (offset, text), advancing the cursor; `None` when all is sent.
    /// Bytes before the tail come from the file; if it is gone, they are skipped (the full
    /// log is in the run's artifact).
    pub fn next_frame(&mut self) -> Option<(u64, String)> {
        loop {
            if self.drained() {
                return None;
            }
            let bytes = if self.sent < self.kept.start() {
                let wanted = (self.kept.start() - self.sent).min(MAX_FRAME_BYTES as u64);
                match self.read_file(self.sent, wanted as usize) {
                    Some(bytes) if !bytes.is_empty() => bytes,
                    _ => {
                        tracing::warn!(
                            from = self.sent,
                            to = self.kept.start(),
                            "log bytes no longer held are not resent"
                        );
                        self.sent = self.kept.start();
                        continue;
                    }
                }
            } else {
                self.kept.read_from(self.sent, MAX_FRAME_BYTES).1
            };
            match std::str::from_utf8(&bytes) {
                Ok(text) => {
                    let offset = self.sent;
                    self.sent += bytes.len() as u64;
                    return Some((offset, text.to_string()));
                }
                Err(error) if error.valid_up_to() > 0 => {
                    let valid = error.valid_up_to();
                    let offset = self.sent;
                    self.sent += valid as u64;
                    let text = String::from_utf8_lossy(&bytes[..valid]).into_owned();
                    return Some((offset, text));
                }
                Err(error) => match error.error_len() {
                    // Starts inside a character (the tail was cut there): skip its rest.
                    Some(skip) => self.sent += skip as u64,
                    // A character cut by the frame size limit or the end of the file.
                    None if bytes.len() < 4 && self.sent >= self.kept.start() => return None,
                    None => self.sent += bytes.len() as u64,
                },
            }
        }
    }

    fn read_file(&self, offset: u64, len: usize) -> Option<Vec<u8>> {
        let mut file = std::fs::File::open(self.file.as_ref()?).ok()?;
        file.seek(SeekFrom::Start(offset)).ok()?;
        let mut bytes = Vec::with_capacity(len);
        file.take(len as u64).read_to_end(&mut bytes).ok()?;
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(log: &mut RunLog) -> (u64, String) {
        let mut text = String::new();
        let mut first = None;
        while let Some((offset, frame)) = log.next_frame() {
            first.get_or_insert(offset);
            assert_eq!(offset, first.unwrap() + text.len() as u64);
            text.push_str(&frame);
        }
        (first.unwrap_or(log.end()), text)
    }

    #[test]
    fn sends_from_the_tail_and_resends_from_the_confirmed_offset() {
        let mut log = RunLog::with_capacity(None, 64);
        log.push("hello ");
        assert_eq!(drain(&mut log), (0, "hello ".into()));
        log.confirm(6);
        log.push("world");
        assert_eq!(drain(&mut log), (6, "world".into()));
        log.rewind();
        assert_eq!(drain(&mut log), (6, "world".into()));
        assert!(log.drained());
    }

    #[test]
    fn older_bytes_come_from_the_file_by_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.txt");
        let mut log = RunLog::with_capacity(Some(path.clone()), 16);
        let mut written = String::new();
        for i in 0..200 {
            let line = format!("line {i} é\n");
            log.push(&line);
            written.push_str(&line);
        }
        std::fs::write(&path, &written).unwrap();
        assert_eq!(drain(&mut log), (0, written.clone()));
        // A reconnect before any confirmation resends everything, still from the file.
        log.rewind();
        assert_eq!(drain(&mut log), (0, written.clone()));
        log.confirm(100);
        log.rewind();
        assert_eq!(drain(&mut log), (100, written[100..].to_string()));
    }

    #[test]
    fn without_the_file_the_tail_is_sent_from_a_character_boundary() {
        let mut log = RunLog::with_capacity(None, 7);
        log.push("ééééé");
        // The tail holds the last 7 bytes: half a character, then three whole ones.
        let (offset, text) = drain(&mut log);
        assert_eq!(text, "ééé");
        assert_eq!(offset, 4);
    }
}
