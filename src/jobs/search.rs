//! The `search` job kind: what a job and each of its chunk tasks carry (JSON specs), what a
//! worker stores per chunk (`ChunkPayload`), and how stored chunk results become the same
//! `SearchReport` that local `gridwatch search` prints.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::backend::ChunkResult;
use crate::client::format::{ReportHit, SearchReport, StrandCounts};
use crate::search::{
    search_chunk, Chunk, Hit, Pattern, PatternError, PatternSet, RecordInfo, SearchOptions,
    SequenceChunk, Strand,
};

/// The job kind name stored with each search job.
pub const SEARCH_KIND: &str = "search";

/// A search job's spec, stored with the job. `records` is filled in when the upload ends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchJobSpec {
    /// The input's file name, for display.
    pub filename: String,
    /// Patterns to find.
    pub patterns: Vec<Pattern>,
    /// Strand and case options.
    pub options: SearchOptions,
    /// Bases owned by each chunk.
    pub chunk_size: u64,
    /// Bytes uploaded.
    pub file_size: u64,
    /// The input's records, known once the upload is complete.
    #[serde(default)]
    pub records: Vec<RecordInfo>,
}

/// One chunk task's spec: everything a worker needs besides the bases themselves, so that a
/// worker never has to look the job up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchTaskSpec {
    /// Patterns to find.
    pub patterns: Vec<Pattern>,
    /// Strand and case options.
    pub options: SearchOptions,
    /// Index of the chunk's record.
    pub record: u32,
    /// Position of the chunk's first base in its record.
    pub record_offset: u64,
    /// Bases the chunk owns; the rest of its data is overlap.
    pub owned_len: u64,
}

impl SearchTaskSpec {
    /// The spec of `chunk` of a job searching for `patterns`.
    pub fn for_chunk(chunk: &SequenceChunk, patterns: &[Pattern], options: SearchOptions) -> Self {
        Self {
            patterns: patterns.to_vec(),
            options,
            record: chunk.record,
            record_offset: chunk.record_offset,
            owned_len: chunk.owned_len as u64,
        }
    }
}

/// One match as stored in a chunk result: start, pattern index, strand, matched bases.
pub type StoredHit = (u64, u32, Strand, String);

/// What a worker stores for one search chunk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChunkPayload {
    /// The chunk's record.
    pub record: u32,
    /// Per pattern, matches by strand.
    pub counts: Vec<StrandCounts>,
    /// Every match starting in the owned range, ordered by start, pattern, strand.
    pub hits: Vec<StoredHit>,
}

/// Why a chunk task could not run (the worker nacks with this message).
#[derive(Debug, Error)]
pub enum TaskError {
    /// The task spec is not a search task spec.
    #[error("bad search task spec: {0}")]
    BadSpec(#[from] serde_json::Error),
    /// The patterns do not compile (the master validates them, so this is a bug or tampering).
    #[error(transparent)]
    Pattern(#[from] PatternError),
}

/// Compiles a task's patterns.
pub fn pattern_set(spec: &SearchTaskSpec) -> Result<PatternSet, TaskError> {
    Ok(PatternSet::new(spec.patterns.clone(), spec.options)?)
}

/// Runs the kernel on one chunk's bases: the same `search_chunk` call `gridwatch search` makes.
pub fn run_chunk(set: &PatternSet, spec: &SearchTaskSpec, bases: &[u8]) -> ChunkPayload {
    let chunk = Chunk {
        bases,
        owned_len: (spec.owned_len as usize).min(bases.len()),
        record_offset: spec.record_offset,
    };
    let mut hits: Vec<Hit> = Vec::new();
    search_chunk(set, &chunk, &mut hits);
    let mut counts = vec![StrandCounts::default(); set.patterns().len()];
    let stored = hits
        .iter()
        .map(|hit| {
            if let Some(count) = counts.get_mut(hit.pattern as usize) {
                count.add(hit.strand);
            }
            let local = (hit.start - spec.record_offset) as usize;
            let len = set.patterns()[hit.pattern as usize].sequence.len();
            let matched = matched_bases(&bases[local..(local + len).min(bases.len())], hit.strand);
            (hit.start, hit.pattern, hit.strand, matched)
        })
        .collect();
    ChunkPayload {
        record: spec.record,
        counts,
        hits: stored,
    }
}

/// The matched bases as seqkit prints them: as in the sequence on `+`, reverse-complemented on `-`.
fn matched_bases(window: &[u8], strand: Strand) -> String {
    match strand {
        Strand::Forward => String::from_utf8_lossy(window).into_owned(),
        Strand::Reverse => window
            .iter()
            .rev()
            .map(|&b| {
                let c = complement_base(b.to_ascii_uppercase());
                if b.is_ascii_lowercase() {
                    c.to_ascii_lowercase() as char
                } else {
                    c as char
                }
            })
            .collect(),
    }
}

/// Complement of a sequence letter; letters that are not bases (N, ...) stay as they are.
fn complement_base(base: u8) -> u8 {
    match base {
        b'A' => b'T',
        b'C' => b'G',
        b'G' => b'C',
        b'T' | b'U' => b'A',
        other => other,
    }
}

/// Assembles a report from a job's spec and its stored chunk results (any order, one per chunk).
pub fn assemble_report(
    spec: &SearchJobSpec,
    results: &[ChunkResult],
) -> Result<SearchReport, serde_json::Error> {
    let mut counts = vec![StrandCounts::default(); spec.patterns.len()];
    let mut hits = Vec::new();
    for result in results {
        let payload: ChunkPayload = serde_json::from_value(result.payload.clone())?;
        for (total, part) in counts.iter_mut().zip(&payload.counts) {
            total.forward += part.forward;
            total.reverse += part.reverse;
        }
        hits.extend(
            payload
                .hits
                .into_iter()
                .map(|(start, pattern, strand, matched)| ReportHit {
                    record: payload.record,
                    start,
                    pattern,
                    strand,
                    matched,
                }),
        );
    }
    hits.sort_unstable();
    Ok(SearchReport {
        records: spec.records.clone(),
        patterns: spec.patterns.clone(),
        counts,
        hits,
    })
}
