//! A running command task's output on its way to `logs` while the task runs: the worker sends
//! each stream's new text with its lease extensions ([`OutputPiece`], at most
//! [`MAX_PIECE_BYTES`] per stream per message), and the backend keeps only the last
//! [`LIVE_TAIL_BYTES`] of each stream per running task ([`LiveOutput`]), dropped when the task
//! ends. Offsets count the bytes of the stream's text from its start, so a reader that printed
//! up to one offset asks for what follows it, and a piece sent twice is appended once.

use serde::{Deserialize, Serialize};

/// Most bytes of one stream one extension carries: a lease check every half second then moves
/// 128 KiB/s per stream, far more than a task's log, while a message stays small.
pub const MAX_PIECE_BYTES: usize = 64 * 1024;

/// Bytes of each stream kept per running task: enough for a screenful and more, small enough
/// that every running task of a busy grid fits in the master's memory.
pub const LIVE_TAIL_BYTES: usize = 64 * 1024;

/// Most running tasks whose output a backend keeps at once; past it a new task's output is not
/// kept (its output is stored when it ends, as always), so the memory held stays bounded.
pub const MAX_LIVE_TASKS: usize = 4096;

/// New text of a running task's stdout and stderr, sent with a lease extension.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputPiece {
    /// Where `stdout` starts in the task's stdout text.
    #[serde(default)]
    pub stdout_offset: u64,
    /// New stdout text.
    #[serde(default)]
    pub stdout: String,
    /// Where `stderr` starts in the task's stderr text.
    #[serde(default)]
    pub stderr_offset: u64,
    /// New stderr text.
    #[serde(default)]
    pub stderr: String,
}

impl OutputPiece {
    /// Why the piece is out of bounds, if it is.
    pub fn check(&self) -> Result<(), String> {
        if self.stdout.len() > MAX_PIECE_BYTES || self.stderr.len() > MAX_PIECE_BYTES {
            return Err(format!(
                "an output piece over {MAX_PIECE_BYTES} bytes per stream"
            ));
        }
        Ok(())
    }
}

/// The kept end of one stream of a running task.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveStream {
    /// Where `text` starts in the stream (bytes before it were dropped to bound the tail).
    pub offset: u64,
    /// The last bytes received, at most [`LIVE_TAIL_BYTES`].
    pub text: String,
}

impl LiveStream {
    /// The offset just past the text received.
    pub fn end(&self) -> u64 {
        self.offset + self.text.len() as u64
    }

    /// Adds `text`, which starts at `offset` in the stream, keeping the last `max` bytes. What
    /// was received already is skipped; a gap (a lost piece) restarts the tail at `offset`.
    pub fn append(&mut self, offset: u64, text: &str, max: usize) {
        let end = self.end();
        if offset > end {
            self.offset = offset;
            self.text.clear();
            self.text.push_str(text);
        } else {
            let skip = usize::try_from(end - offset).unwrap_or(usize::MAX);
            match text.get(skip..) {
                Some(new) => self.text.push_str(new),
                // Already received, or a skip inside a character: nothing new to add.
                None => return,
            }
        }
        if self.text.len() > max {
            let mut cut = self.text.len() - max;
            while !self.text.is_char_boundary(cut) {
                cut += 1;
            }
            self.text.drain(..cut);
            self.offset += cut as u64;
        }
    }

    /// The text from `from` on (all of it when `from` is before the tail: that part is gone).
    pub fn since(&self, from: u64) -> &str {
        let skip = usize::try_from(from.saturating_sub(self.offset)).unwrap_or(usize::MAX);
        self.text.get(skip..).unwrap_or("")
    }
}

/// A running task's output as the backend keeps it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveOutput {
    /// The task's chunk.
    pub chunk: u32,
    /// The worker running it.
    pub worker: String,
    /// When its first piece arrived (Unix seconds).
    pub started_at: f64,
    /// When its last piece arrived (Unix seconds).
    pub updated_at: f64,
    /// Its stdout's tail.
    pub stdout: LiveStream,
    /// Its stderr's tail.
    pub stderr: LiveStream,
}

impl LiveOutput {
    /// Adds a piece's text to the tails.
    pub fn append(&mut self, piece: &OutputPiece, now: f64) {
        self.stdout
            .append(piece.stdout_offset, &piece.stdout, LIVE_TAIL_BYTES);
        self.stderr
            .append(piece.stderr_offset, &piece.stderr, LIVE_TAIL_BYTES);
        self.updated_at = now;
    }
}

/// Most bytes of text one [`TaskOutputView`] carries: a reader asks again from where it ended.
pub const MAX_VIEW_TEXT_BYTES: usize = 1 << 20;

/// Where a task stands, as its output shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskOutputState {
    /// Queued, or running without having sent output yet.
    Waiting,
    /// Running: the text is from its live tail.
    Running,
    /// Finished: the text is from its stored result.
    Finished,
    /// Its job ended (cancelled, failed elsewhere) without a result for it.
    Ended,
}

/// A piece of one stream of a task's output, running or finished, from an offset on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskOutputView {
    /// Where the task stands.
    pub state: TaskOutputState,
    /// The job's status word.
    pub job_status: String,
    /// Where `text` starts in the stream: past the offset asked for when the live tail no
    /// longer holds what lay between.
    pub offset: u64,
    /// The stream's text from `offset`, at most [`MAX_VIEW_TEXT_BYTES`].
    pub text: String,
    /// The stream's end as known now; past `offset + text` when more is to be asked for.
    pub end: u64,
    /// The worker running or that ran it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// A finished task's exit code, when it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// A finished task's ending in a word or two (`0`, `3`, `signal 9`, `killed (timeout)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ending: Option<String>,
    /// A finished task's signal, when one ended it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// A finished task's stream was cut at its cap.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// `text` from `from` on, at most `max` bytes, cut at character boundaries; and the offset it
/// starts at (`from`, moved forward to a character boundary if it fell inside one).
pub fn text_window(text: &str, from: u64, max: usize) -> (u64, &str) {
    let mut start = usize::try_from(from).unwrap_or(usize::MAX).min(text.len());
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let mut end = start.saturating_add(max).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (start as u64, &text[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_append_once_and_the_tail_keeps_the_last_bytes() {
        // A naive reference: the whole stream, cut to its last `max` bytes by hand.
        let mut stream = LiveStream::default();
        stream.append(0, "hello ", 8);
        stream.append(0, "hello ", 8);
        stream.append(6, "world", 8);
        assert_eq!(stream.text, "lo world");
        assert_eq!(stream.offset, 3);
        assert_eq!(stream.end(), 11);
        // A piece overlapping what was received adds only its new part.
        stream.append(9, "ld!", 8);
        assert_eq!((stream.offset, stream.text.as_str()), (4, "o world!"));
        assert_eq!(stream.since(10), "d!");
        assert_eq!(stream.since(0), "o world!");
        // A gap restarts the tail where the piece starts.
        stream.append(20, "later", 8);
        assert_eq!((stream.offset, stream.text.as_str()), (20, "later"));
    }

    #[test]
    fn the_tail_is_cut_at_a_character_boundary() {
        let mut stream = LiveStream::default();
        stream.append(0, "ééé", 3);
        // Six bytes; the last three would start inside a character: two bytes are kept.
        assert_eq!(stream.text, "é");
        assert_eq!(stream.offset, 4);
    }

    #[test]
    fn a_window_of_text_never_splits_a_character() {
        assert_eq!(text_window("abcdef", 2, 3), (2, "cde"));
        assert_eq!(text_window("abc", 9, 3), (3, ""));
        // "é" is two bytes: a start inside it moves past it, an end inside it moves before it.
        assert_eq!(text_window("aéb", 2, 9), (3, "b"));
        assert_eq!(text_window("aéb", 0, 2), (0, "a"));
    }
}
