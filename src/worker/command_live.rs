//! A running command task's output on its way out: each lease check takes the bytes captured
//! since the last one (at most [`MAX_PIECE_BYTES`] per stream, so a chatty task's backlog goes
//! out over several checks) as text for the extension to carry. Only the captured bytes are ever
//! sent, which the stored output's cap bounds. A piece never ends inside a character (those
//! bytes wait for the next), so the pieces put together read as the stored output does.

use crate::backend::live_output::{OutputPiece, MAX_PIECE_BYTES};

use super::command_run::{Captures, SharedCapture};

/// How far each stream has been sent.
#[derive(Debug, Default)]
pub(super) struct LiveCursor {
    stdout: StreamCursor,
    stderr: StreamCursor,
}

#[derive(Debug, Default)]
struct StreamCursor {
    /// Captured bytes sent.
    bytes: usize,
    /// Text bytes sent: where the next piece starts in the stream's text.
    text: u64,
}

impl LiveCursor {
    /// The text captured since the last piece.
    pub(super) fn next_piece(&mut self, captures: &Captures) -> OutputPiece {
        let (stdout_offset, stdout) = self.stdout.take(&captures.stdout);
        let (stderr_offset, stderr) = self.stderr.take(&captures.stderr);
        OutputPiece {
            stdout_offset,
            stdout,
            stderr_offset,
            stderr,
        }
    }
}

impl StreamCursor {
    fn take(&mut self, capture: &SharedCapture) -> (u64, String) {
        let captured = capture.lock().unwrap_or_else(|p| p.into_inner());
        let new = captured.bytes.get(self.bytes..).unwrap_or_default();
        let piece = whole_characters(&new[..new.len().min(MAX_PIECE_BYTES)]);
        let text = String::from_utf8_lossy(piece).into_owned();
        let offset = self.text;
        self.bytes += piece.len();
        self.text += text.len() as u64;
        (offset, text)
    }
}

/// `bytes` without a UTF-8 character begun at its end but not finished (at most three bytes).
fn whole_characters(bytes: &[u8]) -> &[u8] {
    for back in 1..=bytes.len().min(3) {
        let byte = bytes[bytes.len() - back];
        if byte & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back for its leading byte
        }
        let width = match byte {
            b if b & 0xE0 == 0xC0 => 2,
            b if b & 0xF0 == 0xE0 => 3,
            b if b & 0xF8 == 0xF0 => 4,
            _ => 1,
        };
        return if width > back {
            &bytes[..bytes.len() - back]
        } else {
            bytes
        };
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_follow_the_capture_and_never_split_a_character() {
        let captures = Captures::default();
        let mut cursor = LiveCursor::default();
        let push = |bytes: &[u8]| {
            captures
                .stdout
                .lock()
                .unwrap()
                .bytes
                .extend_from_slice(bytes)
        };
        push(b"line 1\n\xC3");
        let piece = cursor.next_piece(&captures);
        assert_eq!(
            (piece.stdout_offset, piece.stdout.as_str()),
            (0, "line 1\n")
        );
        assert_eq!(piece.stderr, "");
        // The rest of "é" arrives: it goes out whole, at the offset where the last piece ended.
        push(b"\xA9!");
        let piece = cursor.next_piece(&captures);
        assert_eq!((piece.stdout_offset, piece.stdout.as_str()), (7, "é!"));
        let piece = cursor.next_piece(&captures);
        assert_eq!((piece.stdout_offset, piece.stdout.as_str()), (10, ""));
    }

    #[test]
    fn a_backlog_goes_out_a_bounded_piece_at_a_time() {
        let captures = Captures::default();
        let total = MAX_PIECE_BYTES * 2 + 5;
        captures.stderr.lock().unwrap().bytes = vec![b'x'; total];
        let mut cursor = LiveCursor::default();
        let sizes: Vec<usize> = (0..4)
            .map(|_| cursor.next_piece(&captures).stderr.len())
            .collect();
        assert_eq!(sizes, [MAX_PIECE_BYTES, MAX_PIECE_BYTES, 5, 0]);
    }
}
