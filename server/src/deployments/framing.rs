//! The browser terminal's client→server byte stream (the original's, with the length fixed
//! to count UTF-8 bytes). Websocket frames are concatenated into one buffer, so frame
//! boundaries do not matter; the buffer is a sequence of records:
//!
//! - `int32be 0, int32be N, N bytes`: keyboard input, N = UTF-8 byte count;
//! - `int32be 1, int32be cols, int32be rows`: the terminal's new size;
//! - any other type code: a protocol error (the socket is closed).

use test_looper_core::protocol::TerminalInput;

/// Largest keyboard record accepted (a big paste).
pub const MAX_KEYS_BYTES: usize = 1024 * 1024;

const KEYS: i32 = 0;
const RESIZE: i32 = 1;

/// Why the stream is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("unknown message type {0}")]
    UnknownType(i32),
    #[error("keyboard input of {0} bytes is too long or negative")]
    BadLength(i32),
    #[error("keyboard input is not UTF-8")]
    NotUtf8,
    #[error("terminal size {cols}x{rows} is out of range")]
    BadSize { cols: i32, rows: i32 },
}

/// Decodes records as their bytes arrive.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buffer: Vec<u8>,
}

fn int_at(buffer: &[u8], at: usize) -> Option<i32> {
    let bytes = buffer.get(at..at + 4)?;
    Some(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

impl FrameDecoder {
    /// Appends the bytes of one frame.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete record, `None` when more bytes are needed. An error is reported
    /// as soon as the offending header is readable.
    pub fn next_input(&mut self) -> Result<Option<TerminalInput>, FramingError> {
        let Some(kind) = int_at(&self.buffer, 0) else {
            return Ok(None);
        };
        match kind {
            KEYS => {
                let Some(length) = int_at(&self.buffer, 4) else {
                    return Ok(None);
                };
                let size = usize::try_from(length)
                    .ok()
                    .filter(|size| *size <= MAX_KEYS_BYTES)
                    .ok_or(FramingError::BadLength(length))?;
                if self.buffer.len() < 8 + size {
                    return Ok(None);
                }
                let data = String::from_utf8(self.buffer[8..8 + size].to_vec())
                    .map_err(|_| FramingError::NotUtf8)?;
                self.buffer.drain(..8 + size);
                Ok(Some(TerminalInput::Keys { data }))
            }
            RESIZE => {
                let (Some(cols), Some(rows)) = (int_at(&self.buffer, 4), int_at(&self.buffer, 8))
                else {
                    return Ok(None);
                };
                let size = u16::try_from(cols)
                    .ok()
                    .zip(u16::try_from(rows).ok())
                    .filter(|(cols, rows)| *cols > 0 && *rows > 0);
                let Some((cols, rows)) = size else {
                    return Err(FramingError::BadSize { cols, rows });
                };
                self.buffer.drain(..12);
                Ok(Some(TerminalInput::Resize { cols, rows }))
            }
            other => Err(FramingError::UnknownType(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(decoder: &mut FrameDecoder) -> Result<Vec<TerminalInput>, FramingError> {
        let mut out = Vec::new();
        while let Some(input) = decoder.next_input()? {
            out.push(input);
        }
        Ok(out)
    }

    #[test]
    fn a_resize_split_across_three_frames_is_one_message() {
        let mut decoder = FrameDecoder::default();
        decoder.push(&1i32.to_be_bytes());
        assert_eq!(all(&mut decoder), Ok(vec![]));
        decoder.push(&80i32.to_be_bytes());
        assert_eq!(all(&mut decoder), Ok(vec![]));
        decoder.push(&24i32.to_be_bytes());
        assert_eq!(
            all(&mut decoder),
            Ok(vec![TerminalInput::Resize { cols: 80, rows: 24 }])
        );
    }

    #[test]
    fn keys_count_utf8_bytes_and_records_may_share_a_frame() {
        let text = "héllo ✓\r";
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0i32.to_be_bytes());
        bytes.extend_from_slice(&(text.len() as i32).to_be_bytes());
        bytes.extend_from_slice(text.as_bytes());
        bytes.extend_from_slice(&1i32.to_be_bytes());
        bytes.extend_from_slice(&100i32.to_be_bytes());
        let mut decoder = FrameDecoder::default();
        decoder.push(&bytes);
        assert_eq!(
            all(&mut decoder),
            Ok(vec![TerminalInput::Keys { data: text.into() }])
        );
        decoder.push(&30i32.to_be_bytes());
        assert_eq!(
            all(&mut decoder),
            Ok(vec![TerminalInput::Resize {
                cols: 100,
                rows: 30
            }])
        );
    }

    #[test]
    fn unknown_types_and_bad_records_are_errors() {
        let mut decoder = FrameDecoder::default();
        decoder.push(&7i32.to_be_bytes());
        assert_eq!(decoder.next_input(), Err(FramingError::UnknownType(7)));
        let mut decoder = FrameDecoder::default();
        decoder.push(&0i32.to_be_bytes());
        decoder.push(&(-1i32).to_be_bytes());
        assert_eq!(decoder.next_input(), Err(FramingError::BadLength(-1)));
        let mut decoder = FrameDecoder::default();
        decoder.push(&[0, 0, 0, 0, 0, 0, 0, 1, 0xff]);
        assert_eq!(decoder.next_input(), Err(FramingError::NotUtf8));
        let mut decoder = FrameDecoder::default();
        decoder.push(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 24]);
        assert!(matches!(
            decoder.next_input(),
            Err(FramingError::BadSize { .. })
        ));
    }
}
