//! Packing short records into shared tasks. A FASTA of a million 10-base records would otherwise
//! be a million tasks, past the cap on tasks per job. A chunk that ends its record and is
//! shorter than a chunk (a whole short record, or a long record's tail) owns all its bases and
//! carries no overlap, so several such chunks, consecutive in the input, can share one task: a
//! task then covers a list of pieces, each searched on its own, so a match never crosses from one
//! record into the next and each is reported by the piece owning its start.

use serde::{Deserialize, Serialize};

/// One record's range in a task that packs several.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    /// The record.
    pub record: u32,
    /// Position of the piece's first base in its record.
    pub record_offset: u64,
    /// Bases of the piece, all owned (a piece ends its record, so it has no overlap).
    pub len: u64,
}

/// A chunk as planned: the range of one record it owns, and how many bases its input holds
/// (owned bases, then overlap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// The record.
    pub record: u32,
    /// Position of the chunk's first base in its record.
    pub record_offset: u64,
    /// Bases the chunk owns.
    pub owned_len: u64,
    /// Bases of input: owned bases, then overlap.
    pub data_len: u64,
}

impl Span {
    fn piece(&self) -> Piece {
        Piece {
            record: self.record,
            record_offset: self.record_offset,
            len: self.owned_len,
        }
    }
}

/// The pieces of a group of several spans (none for a group of one, which is a plain chunk).
pub fn pieces<T>(group: &[(Span, T)]) -> Vec<Piece> {
    match group {
        [_] => Vec::new(),
        many => many.iter().map(|(span, _)| span.piece()).collect(),
    }
}

/// Groups consecutive chunks into tasks: a chunk that ends its record and is shorter than
/// `chunk_size` joins the open group while the group stays within `chunk_size` bases; any other
/// chunk is a group of its own (the open group is closed first, so tasks follow input order).
/// `T` is what travels with a chunk (its bytes, or where they are stored).
pub struct Packer<T> {
    chunk_size: u64,
    open: Vec<(Span, T)>,
    open_len: u64,
}

impl<T> Packer<T> {
    /// A packer for chunks of `chunk_size` bases.
    pub fn new(chunk_size: u64) -> Self {
        Self {
            chunk_size: chunk_size.max(1),
            open: Vec::new(),
            open_len: 0,
        }
    }

    /// Takes the next chunk; returns the groups it closes, in order.
    pub fn push(&mut self, span: Span, value: T) -> Vec<Vec<(Span, T)>> {
        let mut closed = Vec::new();
        let packable = span.data_len == span.owned_len && span.owned_len < self.chunk_size;
        if !packable {
            closed.extend(self.close());
            closed.push(vec![(span, value)]);
            return closed;
        }
        if self.open_len + span.owned_len > self.chunk_size {
            closed.extend(self.close());
        }
        self.open_len += span.owned_len;
        self.open.push((span, value));
        closed
    }

    /// The input ended: the open group, if any.
    pub fn close(&mut self) -> Option<Vec<(Span, T)>> {
        self.open_len = 0;
        match self.open.is_empty() {
            true => None,
            false => Some(std::mem::take(&mut self.open)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(record: u32, record_offset: u64, owned_len: u64, data_len: u64) -> Span {
        Span {
            record,
            record_offset,
            owned_len,
            data_len,
        }
    }

    #[test]
    fn short_record_ends_share_tasks_of_at_most_a_chunk_and_others_stay_alone() {
        let mut packer = Packer::new(10);
        let mut groups = Vec::new();
        let chunks = [
            span(0, 0, 4, 4),
            span(1, 0, 4, 4),
            span(2, 0, 4, 4), // would pass 10: closes [0, 1]
            span(3, 0, 10, 12),
            span(3, 10, 3, 3), // a long record's tail
            span(4, 0, 7, 7),
            span(5, 0, 1, 1), // would pass 10: closes [3 tail, 4]
        ];
        for (i, chunk) in chunks.into_iter().enumerate() {
            groups.extend(packer.push(chunk, i));
        }
        groups.extend(packer.close());
        let indices: Vec<Vec<usize>> = groups
            .iter()
            .map(|group| group.iter().map(|(_, i)| *i).collect())
            .collect();
        assert_eq!(
            indices,
            vec![vec![0, 1], vec![2], vec![3], vec![4, 5], vec![6]]
        );
        assert!(
            pieces(&groups[1]).is_empty(),
            "a group of one is a plain chunk"
        );
        assert_eq!(
            pieces(&groups[3]),
            vec![
                Piece {
                    record: 3,
                    record_offset: 10,
                    len: 3
                },
                Piece {
                    record: 4,
                    record_offset: 0,
                    len: 7
                }
            ]
        );
    }
}
