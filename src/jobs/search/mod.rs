//! The `search` job kind: the uploaded genome is cut into chunks as it streams in (each chunk
//! owns a range of one record and carries the overlap a match needs), a worker runs the search
//! kernel on one chunk, and the stored chunk results become the same [`SearchReport`] that local
//! `gridwatch search` prints.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{
    DecodedSink, InputCutter, JobContext, JobKind, PlannedTask, Refusal, SubmitLimits, TaskError,
    TaskSource,
};
use crate::backend::genome::{is_genome_hash, GenomeRef};
use crate::backend::{ChunkResult, GenomeRecord};
use crate::protocol::ErrorCode;
use pack::{Packer, Piece, Span};

use crate::search::{
    search_chunk, Chunk, Chunker, Hit, InputError, Pattern, PatternSet, RecordInfo, SearchOptions,
    SequenceChunk, Strand, StrandMode,
};

pub mod hits;
pub mod pack;
pub mod printer;
pub mod stream;

pub use hits::{HitRef, Hits, StoredHit};
pub use printer::{write_report, OutputFormat, ReportHit, SearchReport, StrandCounts};

/// The job kind name stored with each search job.
pub const SEARCH_KIND: &str = "search";

/// Most patterns in one search job.
pub const MAX_PATTERNS: usize = 100_000;

/// Most patterns one task searches for. A job with more is cut by pattern group as well as by
/// genome range (chunk `c`, group `g` is task `c * groups + g`), so a 10,000-guide search spreads
/// over every worker even when the genome is one chunk, and each task's matcher stays small.
pub const PATTERNS_PER_TASK: usize = 500;

/// How many pattern groups a job of `patterns` patterns is cut into.
pub fn pattern_groups(patterns: usize) -> u64 {
    patterns.div_ceil(PATTERNS_PER_TASK).max(1) as u64
}

/// Most chunk tasks one search job may be cut into; the chunk size must be large enough for the
/// input to fit in this many chunks (a tiny chunk size would otherwise make millions of tasks).
pub const MAX_TASKS_PER_JOB: u64 = 100_000;

/// What a client submits: the patterns and options, and the name of the file it uploads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchSubmission {
    /// The input's file name, for display.
    pub filename: String,
    /// Patterns to find.
    pub patterns: Vec<Pattern>,
    /// Strand and case options.
    #[serde(default)]
    pub options: SearchOptions,
    /// Bases per chunk; the master's default when absent.
    #[serde(default)]
    pub chunk_size: Option<u64>,
    /// BLAKE3 of the file's bytes (lowercase hex), sent by clients that know it: when the
    /// master holds that genome already, nothing is uploaded. Checked by the master when the
    /// bytes do come.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genome_hash: Option<String>,
    /// Store counts only, never positions: exact counts of any size in little space.
    #[serde(default, skip_serializing_if = "is_false")]
    pub count_only: bool,
    /// Run the search even when a finished identical one could answer it from the result
    /// cache.
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_cache: bool,
}

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
    /// Most input bytes after decompression, and most bases, the master takes for this job (its
    /// upload limit at submission); `None` for jobs stored before the limit was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_input: Option<u64>,
    /// The input's genome hash: the one the client announced until the upload ends, then the
    /// one the master computed from the bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genome_hash: Option<String>,
    /// Bytes this job's submit uploaded (0 when its genome was stored already).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_bytes: Option<u64>,
    /// Whether the job searched a genome stored by an earlier submit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genome_reused: Option<bool>,
    /// Counts only, never positions.
    #[serde(default, skip_serializing_if = "is_false")]
    pub count_only: bool,
    /// Most positions the job may find (the master's cap at submission); `None` for jobs stored
    /// before the cap existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_positions: Option<u64>,
    /// Run even when the result cache holds the answer (the job's results are still kept as
    /// an answer for later searches).
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_cache: bool,
    /// For a job answered from the result cache: the finished job whose results it copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_from: Option<String>,
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
    /// Index in the job's pattern list of `patterns[0]` (tasks of one pattern group).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pattern_offset: u32,
    /// Store counts only, never positions.
    #[serde(default, skip_serializing_if = "is_false")]
    pub count_only: bool,
    /// Most positions the job may store: a chunk finding more fails the task, naming the cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_positions: Option<u64>,
    /// For a task packing several short record ends, its pieces, in input order (their bases
    /// are the task's input, one after another); `record`, `record_offset` and `owned_len` are
    /// then the first piece's record and offset and the pieces' total. Empty for a plain chunk.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pieces: Vec<Piece>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn is_zero(value: &u32) -> bool {
    *value == 0
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
            pattern_offset: 0,
            count_only: false,
            max_positions: None,
            pieces: Vec::new(),
        }
    }
}

/// What a worker stores for one search chunk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChunkPayload {
    /// The chunk's record.
    pub record: u32,
    /// Per pattern of the task (from `pattern_offset` in the job's list), matches by strand.
    pub counts: Vec<StrandCounts>,
    /// Every match starting in the owned range, ordered by start, pattern, strand; pattern
    /// indices are the job's.
    pub hits: Hits,
    /// The job's index of the task's first pattern (0 unless the job is cut by pattern group).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pattern_offset: u32,
    /// Per hit (same order), its mismatches; empty for an exact search and in results stored
    /// before mismatch search existed, which read as all zero.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mismatches: Vec<u32>,
    /// For a task of several pieces: per piece, its record and how many of `hits` (in order)
    /// are its. Empty for a plain chunk, whose hits are all of `record`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub piece_hits: Vec<(u32, u64)>,
}

/// Owned bases searched between two looks at a task's stop flag: a cancelled or lost task
/// stops within one slice (milliseconds for an exact search), whatever its chunk size.
const STOP_CHECK_BASES: usize = 1 << 20;

/// A flag never set, for runs that cannot be stopped.
static NEVER_STOP: AtomicBool = AtomicBool::new(false);

/// Runs the kernel on one chunk's bases: the same `search_chunk` call `gridwatch search` makes.
pub fn run_chunk(set: &PatternSet, spec: &SearchTaskSpec, bases: &[u8]) -> ChunkPayload {
    run_chunk_until(set, spec, bases, &NEVER_STOP).unwrap_or_else(|| empty_payload(set, spec))
}

/// What a run that was stopped before it began would hold; never stored (its task is dropped).
fn empty_payload(set: &PatternSet, spec: &SearchTaskSpec) -> ChunkPayload {
    ChunkPayload {
        record: spec.record,
        counts: vec![StrandCounts::default(); set.patterns().len()],
        hits: Hits::default(),
        pattern_offset: spec.pattern_offset,
        mismatches: Vec::new(),
        piece_hits: Vec::new(),
    }
}

/// [`run_chunk`], giving up with `None` once `stop` is set. The owned range is searched in
/// slices, each carrying the look-ahead its last matches need: ownership makes the slices'
/// hits exactly the whole chunk's, in the same order (by start first). Each slice's hits go
/// straight into the compact list, so a chunk of millions of matches never holds them twice.
fn run_chunk_until(
    set: &PatternSet,
    spec: &SearchTaskSpec,
    bases: &[u8],
    stop: &AtomicBool,
) -> Option<ChunkPayload> {
    let owned_len = (spec.owned_len as usize).min(bases.len());
    let mut counts = vec![StrandCounts::default(); set.patterns().len()];
    let mut stored = Hits::default();
    let mut mismatches = Vec::new();
    let keep_mismatches = set.options().max_mismatches > 0;
    let mut slice_hits: Vec<Hit> = Vec::new();
    let mut matched = String::new();
    // Past the job's cap the task fails anyway: no position is worth keeping then.
    let mut keep_positions = !spec.count_only;
    let mut found = 0u64;
    let mut from = 0;
    while from < owned_len {
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        let owned = STOP_CHECK_BASES.min(owned_len - from);
        let end = (from + owned + set.overlap()).min(bases.len());
        let slice = Chunk {
            bases: &bases[from..end],
            owned_len: owned,
            record_offset: spec.record_offset + from as u64,
        };
        slice_hits.clear();
        search_chunk(set, &slice, &mut slice_hits);
        found += slice_hits.len() as u64;
        if spec.max_positions.is_some_and(|cap| found > cap) && keep_positions {
            keep_positions = false;
            stored = Hits::default();
            mismatches = Vec::new();
        }
        for hit in &slice_hits {
            if let Some(count) = counts.get_mut(hit.pattern as usize) {
                count.add(hit.strand);
            }
            if !keep_positions {
                continue;
            }
            let local = (hit.start - spec.record_offset) as usize;
            let len = set.patterns()[hit.pattern as usize].sequence.len();
            let window = &bases[local..(local + len).min(bases.len())];
            matched_bases(window, hit.strand, &mut matched);
            let pattern = hit.pattern.saturating_add(spec.pattern_offset);
            stored.push(hit.start, pattern, hit.strand, &matched);
            if keep_mismatches {
                mismatches.push(hit.mismatches);
            }
        }
        from += owned;
    }
    Some(ChunkPayload {
        record: spec.record,
        counts,
        hits: stored,
        pattern_offset: spec.pattern_offset,
        mismatches,
        piece_hits: Vec::new(),
    })
}

/// Runs a task of several pieces: each piece is searched on its own bases (so no match crosses
/// from one record into the next), and the pieces' results are joined in order.
pub fn run_pieces(set: &PatternSet, spec: &SearchTaskSpec, input: &[u8]) -> ChunkPayload {
    run_pieces_until(set, spec, input, &NEVER_STOP).unwrap_or_else(|| empty_payload(set, spec))
}

/// [`run_pieces`], giving up with `None` once `stop` is set.
fn run_pieces_until(
    set: &PatternSet,
    spec: &SearchTaskSpec,
    input: &[u8],
    stop: &AtomicBool,
) -> Option<ChunkPayload> {
    let mut joined = ChunkPayload {
        record: spec.record,
        counts: vec![StrandCounts::default(); set.patterns().len()],
        hits: Hits::default(),
        pattern_offset: spec.pattern_offset,
        mismatches: Vec::new(),
        piece_hits: Vec::with_capacity(spec.pieces.len()),
    };
    let mut at = 0usize;
    for piece in &spec.pieces {
        let end = at.saturating_add(piece.len as usize).min(input.len());
        let piece_spec = SearchTaskSpec {
            record: piece.record,
            record_offset: piece.record_offset,
            owned_len: piece.len,
            pieces: Vec::new(),
            ..spec.clone()
        };
        let part = run_chunk_until(set, &piece_spec, &input[at.min(end)..end], stop)?;
        at = end;
        for (total, count) in joined.counts.iter_mut().zip(&part.counts) {
            total.forward += count.forward;
            total.reverse += count.reverse;
        }
        joined
            .piece_hits
            .push((piece.record, part.hits.len() as u64));
        joined.hits.append(&part.hits);
        joined.mismatches.extend(part.mismatches);
    }
    Some(joined)
}

/// The matched bases as seqkit prints them (as in the sequence on `+`, reverse-complemented on
/// `-`), written into `out` so that one buffer serves every hit.
fn matched_bases(window: &[u8], strand: Strand, out: &mut String) {
    out.clear();
    match strand {
        Strand::Forward => out.extend(window.iter().map(|&b| b as char)),
        Strand::Reverse => out.extend(window.iter().rev().map(|&b| {
            let c = complement_base(b.to_ascii_uppercase());
            if b.is_ascii_lowercase() {
                c.to_ascii_lowercase() as char
            } else {
                c as char
            }
        })),
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
    let payloads = results
        .iter()
        .map(|result| ChunkPayload::deserialize(&result.payload))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(combine_payloads(spec, payloads))
}

/// Assembles a report from a job's stored spec (as JSON) and its stored chunk results.
pub fn report_from_stored(
    spec: &serde_json::Value,
    results: &[ChunkResult],
) -> Result<SearchReport, serde_json::Error> {
    assemble_report(&SearchJobSpec::deserialize(spec)?, results)
}

/// Sums the chunks' counts and gathers their hits in report order.
fn combine_payloads(
    spec: &SearchJobSpec,
    payloads: impl IntoIterator<Item = ChunkPayload>,
) -> SearchReport {
    let mut counts = vec![StrandCounts::default(); spec.patterns.len()];
    let mut hits = Vec::new();
    for payload in payloads {
        let from = payload.pattern_offset as usize;
        for (total, part) in counts.iter_mut().skip(from).zip(&payload.counts) {
            total.forward = total.forward.saturating_add(part.forward);
            total.reverse = total.reverse.saturating_add(part.reverse);
        }
        let mismatches = payload.mismatches.into_iter().chain(std::iter::repeat(0));
        let records = match payload.piece_hits.is_empty() {
            true => vec![(payload.record, payload.hits.len() as u64)],
            false => payload.piece_hits,
        };
        let records = records
            .into_iter()
            .flat_map(|(record, hits)| std::iter::repeat(record).take(hits as usize))
            .chain(std::iter::repeat(payload.record));
        hits.extend(payload.hits.iter().zip(mismatches).zip(records).map(
            |((hit, mismatches), record)| ReportHit {
                record,
                start: hit.start,
                pattern: hit.pattern,
                strand: hit.strand,
                matched: hit.matched.to_string(),
                mismatches,
            },
        ));
    }
    hits.sort_unstable();
    SearchReport {
        max_mismatches: spec.options.max_mismatches,
        records: spec.records.clone(),
        patterns: spec.patterns.clone(),
        counts,
        hits,
    }
}

/// The cap on a search job's total positions, from one of its task specs, with the error the
/// job fails with past it; `None` for a count-only job or one stored before the cap.
pub fn job_position_cap(task: &serde_json::Value) -> Option<(u64, String)> {
    let task = SearchTaskSpec::deserialize(task).ok()?;
    let cap = task.max_positions.filter(|_| !task.count_only)?;
    let error = format!(
        "the job found more than {cap} match positions, its cap (raise the master's \
         --max-positions, or submit with --count-only for exact counts without positions)"
    );
    Some((cap, error))
}

/// The shape checks of [`JobKind::check_result`] for a search chunk.
fn check_chunk_payload(task: &SearchTaskSpec, payload: &ChunkPayload) -> Result<(), String> {
    if payload.record != task.record || payload.pattern_offset != task.pattern_offset {
        return Err(format!(
            "the payload is for record {} and pattern {}, the task for record {} and pattern {}",
            payload.record, payload.pattern_offset, task.record, task.pattern_offset
        ));
    }
    if payload.counts.len() != task.patterns.len() {
        return Err(format!(
            "the payload counts {} patterns, the task searches {}",
            payload.counts.len(),
            task.patterns.len()
        ));
    }
    let forward_only = task.options.strand == StrandMode::Forward;
    if forward_only && payload.counts.iter().any(|count| count.reverse > 0) {
        return Err("reverse-strand counts for a forward-only search".to_string());
    }
    if task.count_only && !payload.hits.is_empty() {
        return Err("positions in the result of a count-only task".to_string());
    }
    if !payload.mismatches.is_empty() && payload.mismatches.len() != payload.hits.len() {
        return Err("mismatches do not pair with the hits".to_string());
    }
    let max_mismatches = task.options.max_mismatches;
    if payload.mismatches.iter().any(|&m| m > max_mismatches) {
        return Err(format!("a hit with more than {max_mismatches} mismatches"));
    }
    if task.count_only {
        return Ok(());
    }
    // Each hit's owned range: the chunk's, or its piece's (hits come piece after piece).
    let ranges: Vec<(std::ops::Range<u64>, u64)> = match task.pieces.as_slice() {
        [] if payload.piece_hits.is_empty() => {
            let owned = task.record_offset..task.record_offset.saturating_add(task.owned_len);
            vec![(owned, payload.hits.len() as u64)]
        }
        pieces => {
            let records = payload.piece_hits.iter().map(|(record, _)| *record);
            if pieces.len() != payload.piece_hits.len()
                || !pieces.iter().map(|p| p.record).eq(records)
            {
                return Err("the payload's pieces are not the task's".to_string());
            }
            let ranges = pieces
                .iter()
                .zip(&payload.piece_hits)
                .map(|(piece, (_, hits))| {
                    let owned = piece.record_offset..piece.record_offset.saturating_add(piece.len);
                    (owned, *hits)
                });
            ranges.collect()
        }
    };
    let listed = ranges
        .iter()
        .map(|(_, hits)| *hits)
        .fold(0, u64::saturating_add);
    if listed != payload.hits.len() as u64 {
        return Err("the pieces' hit counts do not add up to the hits".to_string());
    }
    let owned_of_hit = ranges
        .iter()
        .flat_map(|(owned, hits)| std::iter::repeat(owned).take(*hits as usize));
    let mut tally = vec![StrandCounts::default(); task.patterns.len()];
    for (hit, owned) in payload.hits.iter().zip(owned_of_hit) {
        let HitRef {
            start,
            pattern,
            strand,
            matched,
        } = hit;
        if !owned.contains(&start) {
            return Err(format!(
                "a hit at {start} lies outside its owned range {owned:?}"
            ));
        }
        let index = pattern.checked_sub(task.pattern_offset).map(|i| i as usize);
        let Some(index) = index.filter(|&i| i < task.patterns.len()) else {
            return Err(format!(
                "a hit names pattern {pattern}, not one of the task's"
            ));
        };
        if matched.len() > task.patterns[index].sequence.len() {
            return Err(format!("a hit at {start} is longer than its pattern"));
        }
        tally[index].add(strand);
    }
    if tally != payload.counts {
        return Err("the counts do not add up to the hits".to_string());
    }
    Ok(())
}

/// A worker's compiled patterns of one pattern group of a job.
#[derive(Debug)]
pub struct PreparedGroup {
    set: PatternSet,
    pattern_offset: u32,
}

/// The search kind.
#[derive(Clone, Copy, Debug, Default)]
pub struct SearchKind;

impl JobKind for SearchKind {
    const NAME: &'static str = SEARCH_KIND;
    const FORMATS: &'static [&'static str] = &["count", "tsv", "bed", "json"];
    /// Room for [`MAX_PATTERNS`] guides with names: a task carries only its pattern group, so the
    /// job's whole list is stored once, not once per task.
    const MAX_SPEC_BYTES: usize = 8 << 20;
    type Submission = SearchSubmission;
    type Spec = SearchJobSpec;
    type TaskSpec = SearchTaskSpec;
    type Prepared = PreparedGroup;
    type TaskResult = ChunkPayload;
    type Output = SearchReport;

    fn accept(
        &self,
        submission: SearchSubmission,
        upload: Option<u64>,
        limits: &SubmitLimits,
    ) -> Result<SearchJobSpec, Refusal> {
        let SearchSubmission {
            filename,
            patterns,
            options,
            chunk_size,
            genome_hash,
            count_only,
            no_cache,
        } = submission;
        if let Some(hash) = genome_hash.as_deref().filter(|hash| !is_genome_hash(hash)) {
            return Err(Refusal::new(
                ErrorCode::BadMessage,
                format!(
                    "genome hash {:?}: expected 64 lowercase hex digits (BLAKE3)",
                    hash.chars().take(80).collect::<String>()
                ),
            ));
        }
        if patterns.len() > MAX_PATTERNS {
            return Err(Refusal::new(
                ErrorCode::BadMessage,
                format!(
                    "{} patterns: a search job takes at most {MAX_PATTERNS}; split them over several jobs",
                    patterns.len()
                ),
            ));
        }
        let set = PatternSet::new(patterns, options)
            .map_err(|err| Refusal::new(ErrorCode::BadPattern, err.to_string()))?;
        let Some(file_size) = upload else {
            return Err(Refusal::new(
                ErrorCode::BadMessage,
                format!("{filename}: a search job uploads its input; give file_size"),
            ));
        };
        if file_size > limits.max_upload {
            return Err(Refusal::new(
                ErrorCode::UploadTooLarge,
                format!(
                    "{filename}: {file_size} bytes exceeds the master's upload limit of {} bytes (--max-upload)",
                    limits.max_upload
                ),
            ));
        }
        let chunk_size = chunk_size.unwrap_or(limits.default_chunk_size);
        let largest = limits.max_frame.saturating_sub(set.overlap()) as u64;
        let chunks = MAX_TASKS_PER_JOB / pattern_groups(set.patterns().len());
        let smallest = file_size.div_ceil(chunks.max(1)).max(1);
        if chunk_size < smallest || chunk_size > largest {
            return Err(Refusal::new(
                ErrorCode::BadMessage,
                format!(
                    "chunk size {chunk_size}: must be between {smallest} and {largest} bases \
                     (a job is cut into at most {MAX_TASKS_PER_JOB} chunks)"
                ),
            ));
        }
        Ok(SearchJobSpec {
            filename,
            patterns: set.patterns().to_vec(),
            options,
            chunk_size,
            file_size,
            records: Vec::new(),
            max_input: Some(limits.max_upload),
            genome_hash,
            uploaded_bytes: None,
            genome_reused: None,
            count_only,
            max_positions: Some(limits.max_positions),
            no_cache,
            cached_from: None,
        })
    }

    fn tasks(&self, spec: &SearchJobSpec) -> Result<TaskSource, Refusal> {
        let overlap = spec
            .patterns
            .iter()
            .map(|p| p.sequence.len())
            .max()
            .unwrap_or(1)
            .saturating_sub(1);
        let mut chunker =
            Chunker::new(spec.chunk_size as usize, overlap).plain_name(&spec.filename);
        if let Some(limit) = spec.max_input {
            // Compressed input counts at its real size, and the bases also bound the task count.
            let chunks = MAX_TASKS_PER_JOB / pattern_groups(spec.patterns.len());
            let bases = limit.min(spec.chunk_size.saturating_mul(chunks));
            chunker = chunker.with_max_decompressed(limit).with_max_bases(bases);
        }
        Ok(TaskSource::Upload(Box::new(SearchCutter {
            spec: spec.clone(),
            chunker,
            packer: Packer::new(spec.chunk_size),
            next_group: 0,
            decoded: None,
            kept_bases: 0,
            storage: None,
        })))
    }

    fn prepare(&self, task: &SearchTaskSpec) -> Result<PreparedGroup, TaskError> {
        let set = PatternSet::new(task.patterns.clone(), task.options)
            .map_err(|e| TaskError(e.to_string()))?;
        Ok(PreparedGroup {
            set,
            pattern_offset: task.pattern_offset,
        })
    }

    /// A job cut by pattern group has one pattern set per group.
    fn prepared_fits(&self, prepared: &PreparedGroup, task: &SearchTaskSpec) -> bool {
        prepared.pattern_offset == task.pattern_offset
            && prepared.set.patterns().len() == task.patterns.len()
    }

    fn run(&self, prepared: &PreparedGroup, task: &SearchTaskSpec, input: &[u8]) -> ChunkPayload {
        match task.pieces.is_empty() {
            true => run_chunk(&prepared.set, task, input),
            false => run_pieces(&prepared.set, task, input),
        }
    }

    /// Stops between slices of a chunk (or between pieces), so a cancelled or lost task frees
    /// its slot within one slice's search.
    fn run_until(
        &self,
        prepared: &PreparedGroup,
        task: &SearchTaskSpec,
        input: &[u8],
        stop: &AtomicBool,
    ) -> Option<ChunkPayload> {
        match task.pieces.is_empty() {
            true => run_chunk_until(&prepared.set, task, input, stop),
            false => run_pieces_until(&prepared.set, task, input, stop),
        }
    }

    /// A chunk alone finding more positions than the job may store fails, naming the cap.
    fn check_output(&self, task: &SearchTaskSpec, payload: &ChunkPayload) -> Result<(), TaskError> {
        let found = self.matches(payload);
        match task.max_positions {
            Some(cap) if !task.count_only && found > cap => Err(TaskError(format!(
                "record {} from base {}: {found} match positions exceed the job's cap of {cap} \
                 (raise the master's --max-positions, or submit with --count-only for exact \
                 counts without positions)",
                task.record,
                task.record_offset + 1
            ))),
            _ => Ok(()),
        }
    }

    fn matches(&self, result: &ChunkPayload) -> u64 {
        result
            .counts
            .iter()
            .map(StrandCounts::total)
            .fold(0, u64::saturating_add)
    }

    /// A match starts at an owned base, once per pattern and strand at most.
    fn max_matches(&self, task: &SearchTaskSpec, input_len: usize) -> u64 {
        let strands = match task.options.strand {
            StrandMode::Forward => 1,
            StrandMode::Both => 2,
        };
        task.owned_len
            .min(input_len as u64)
            .saturating_mul(task.patterns.len() as u64)
            .saturating_mul(strands)
    }

    /// Counts agree with the match count and, unless the task stores counts only, with the
    /// hits; every hit starts in the owned range, names a pattern of the task's group and a
    /// strand the job searches, and is at most its pattern long.
    fn check_result(
        &self,
        task: &SearchTaskSpec,
        matches: u64,
        payload: &ChunkPayload,
    ) -> Result<(), String> {
        super::agree(matches, self.matches(payload))?;
        check_chunk_payload(task, payload)
    }

    fn combine(&self, spec: &SearchJobSpec, results: Vec<(u32, ChunkPayload)>) -> SearchReport {
        combine_payloads(spec, results.into_iter().map(|(_, payload)| payload))
    }

    fn render(
        &self,
        report: &SearchReport,
        _job: &JobContext,
        format: &str,
        out: &mut dyn Write,
    ) -> io::Result<()> {
        let format = OutputFormat::from_name(format).unwrap_or_default();
        write_report(format, report, out)
    }

    fn summary(&self, spec: &SearchJobSpec) -> String {
        let patterns = match spec.patterns.as_slice() {
            [one] => one.sequence.clone(),
            many => format!("{} patterns", many.len()),
        };
        let mut notes = Vec::new();
        if spec.options.strand == StrandMode::Both {
            notes.push("both strands".to_string());
        }
        match spec.options.max_mismatches {
            0 => {}
            1 => notes.push("up to 1 mismatch".to_string()),
            k => notes.push(format!("up to {k} mismatches")),
        }
        let notes = match notes.is_empty() {
            true => String::new(),
            false => format!(" ({})", notes.join(", ")),
        };
        format!("{patterns} in {}{notes}", spec.filename)
    }

    /// Everything a search's answer depends on: the input's bytes (by their hash and size), the
    /// patterns (names and normalised sequences, in order: both show in the output), the strand
    /// mode, the case flag, the mismatch bound, whether positions are kept and the cap on them.
    /// The chunk size, the mismatch matcher and the file's name change nothing in the answer.
    fn result_key(&self, spec: &SearchJobSpec) -> Option<String> {
        #[derive(Serialize)]
        struct Answered<'a> {
            kind: &'static str,
            genome: &'a str,
            file_size: u64,
            patterns: &'a [Pattern],
            strand: StrandMode,
            case_sensitive: bool,
            max_mismatches: u32,
            count_only: bool,
            max_positions: Option<u64>,
        }
        let answered = Answered {
            kind: SEARCH_KIND,
            genome: spec
                .genome_hash
                .as_deref()
                .filter(|hash| is_genome_hash(hash))?,
            file_size: spec.file_size,
            patterns: &spec.patterns,
            strand: spec.options.strand,
            case_sensitive: spec.options.case_sensitive,
            max_mismatches: spec.options.max_mismatches,
            count_only: spec.count_only,
            max_positions: spec.max_positions.filter(|_| !spec.count_only),
        };
        let text = serde_json::to_vec(&answered).ok()?;
        Some(blake3::hash(&text).to_hex().to_string())
    }
}

/// The tasks of a search job over a genome stored by an earlier upload: the chunks the
/// upload's cutter would have cut (same indices, records, offsets, owned lengths and overlaps),
/// each referencing its range of the stored sequence instead of carrying it. Returns them with
/// the job's spec completed as the end of an upload completes it.
pub fn tasks_from_genome(
    spec: &serde_json::Value,
    genome: &GenomeRecord,
) -> Result<(Vec<PlannedTask>, serde_json::Value), Refusal> {
    let internal = |what: &str, e: serde_json::Error| {
        Refusal::new(ErrorCode::Internal, format!("{what}: {e}"))
    };
    let mut spec = SearchJobSpec::deserialize(spec).map_err(|e| internal("job spec", e))?;
    let records = Vec::<RecordInfo>::deserialize(&genome.records)
        .map_err(|e| internal("stored genome records", e))?;
    let groups = pattern_groups(spec.patterns.len());
    if let Some(limit) = spec.max_input {
        let bases = limit.min(spec.chunk_size.saturating_mul(MAX_TASKS_PER_JOB / groups));
        if genome.bases > bases {
            return Err(Refusal::new(
                ErrorCode::UploadTooLarge,
                format!(
                    "{}: {} bases exceed this job's limit of {bases} (the master's --max-upload, \
                     or {MAX_TASKS_PER_JOB} chunks of {} bases)",
                    spec.filename, genome.bases, spec.chunk_size
                ),
            ));
        }
    }
    let overlap = spec
        .patterns
        .iter()
        .map(|p| p.sequence.len() as u64)
        .max()
        .unwrap_or(1)
        .saturating_sub(1);
    let chunk_size = spec.chunk_size.max(1);
    let mut tasks = Vec::new();
    let mut chunk_index = 0u64;
    let mut record_start = 0u64;
    let mut packer = Packer::new(chunk_size);
    let mut plan = |group: Vec<(Span, u64)>, tasks: &mut Vec<PlannedTask>| {
        let reference = GenomeRef {
            storage: match genome.storage.is_empty() {
                true => genome.hash.clone(),
                false => genome.storage.clone(),
            },
            offset: group[0].1,
            len: group_input_len(&group),
        };
        for mut planned in group_tasks(&spec, &group, chunk_index)? {
            reference.attach(&mut planned.spec);
            tasks.push(planned);
        }
        chunk_index += 1;
        Ok::<(), Refusal>(())
    };
    for (record, info) in records.iter().enumerate() {
        let mut offset = 0u64;
        while offset < info.length {
            let span = Span {
                record: record as u32,
                record_offset: offset,
                owned_len: chunk_size.min(info.length - offset),
                data_len: (chunk_size + overlap).min(info.length - offset),
            };
            for group in packer.push(span, record_start + offset) {
                plan(group, &mut tasks)?;
            }
            offset += span.owned_len;
        }
        record_start += info.length;
    }
    if let Some(group) = packer.close() {
        plan(group, &mut tasks)?;
    }
    spec.records = records;
    spec.genome_hash = Some(genome.hash.clone());
    spec.uploaded_bytes = Some(0);
    spec.genome_reused = Some(true);
    let spec = serde_json::to_value(&spec).map_err(|e| internal("job spec", e))?;
    Ok((tasks, spec))
}

/// Input bases of a group of chunks: a plain chunk's (owned and overlap), or its pieces'.
fn group_input_len<T>(group: &[(Span, T)]) -> u64 {
    match group {
        [(span, _)] => span.data_len,
        pieces => pieces.iter().map(|(span, _)| span.owned_len).sum(),
    }
}

/// The tasks of one group of chunks (a plain chunk, or pieces packed together), one per
/// pattern group, numbered from `index × groups`; their input is attached by the caller.
fn group_tasks<T>(
    spec: &SearchJobSpec,
    group: &[(Span, T)],
    index: u64,
) -> Result<Vec<PlannedTask>, Refusal> {
    let groups = pattern_groups(spec.patterns.len());
    let first = group[0].0;
    let pieces = pack::pieces(group);
    let owned_len = match pieces.is_empty() {
        true => first.owned_len,
        false => pieces.iter().map(|piece| piece.len).sum(),
    };
    let mut tasks = Vec::with_capacity(groups as usize);
    for (group, patterns) in spec.patterns.chunks(PATTERNS_PER_TASK).enumerate() {
        let task = SearchTaskSpec {
            patterns: patterns.to_vec(),
            options: spec.options,
            record: first.record,
            record_offset: first.record_offset,
            owned_len,
            pattern_offset: (group * PATTERNS_PER_TASK) as u32,
            count_only: spec.count_only,
            max_positions: spec.max_positions,
            pieces: pieces.clone(),
        };
        let index = u32::try_from(index * groups + group as u64).map_err(|_| {
            Refusal::new(
                ErrorCode::BadMessage,
                "too many tasks for one job".to_string(),
            )
        })?;
        tasks.push(PlannedTask::new(index, &task, Bytes::new())?);
    }
    Ok(tasks)
}

/// Cuts an uploaded genome into chunk tasks as it streams in.
struct SearchCutter {
    spec: SearchJobSpec,
    chunker: Chunker,
    /// Groups short record ends into shared tasks; each chunk with its bases and where its
    /// owned bases start in the kept sequence.
    packer: Packer<(Bytes, u64)>,
    /// Index of the next group of chunks (tasks are numbered by group and pattern group).
    next_group: u64,
    /// Where the owned bases of each chunk go, when kept: in order, they are each record's
    /// sequence, records one after another (what a stored genome holds).
    decoded: Option<DecodedSink>,
    /// Bases handed to `decoded` so far: where the next chunk's owned bases start in the kept
    /// sequence (the same offsets `tasks_from_genome` plans from).
    kept_bases: u64,
    /// When set, tasks carry no bases but a [`GenomeRef`] to their range of the sequence kept
    /// under this storage id.
    storage: Option<String>,
}

impl SearchCutter {
    fn bad_input(&self, err: InputError) -> Refusal {
        let code = match err {
            InputError::ExpandsPastLimit { .. }
            | InputError::TooLarge { .. }
            | InputError::TooManyBases { .. } => ErrorCode::UploadTooLarge,
            _ => ErrorCode::BadInput,
        };
        let advice = match code {
            ErrorCode::UploadTooLarge => format!(
                " (the master's --max-upload, or {MAX_TASKS_PER_JOB} chunks of {} bases)",
                self.spec.chunk_size
            ),
            _ => String::new(),
        };
        Refusal::new(code, format!("{}: {err}{advice}", self.spec.filename))
    }

    /// Takes the next chunk; emits the tasks of every group of chunks it closes.
    fn tasks(
        &mut self,
        mut chunk: SequenceChunk,
        emit: &mut dyn FnMut(PlannedTask),
    ) -> Result<(), Refusal> {
        let bases = Bytes::from(std::mem::take(&mut chunk.bases));
        let start = self.kept_bases;
        if let Some(sink) = &self.decoded {
            let owned = bases.slice(..chunk.owned_len.min(bases.len()));
            self.kept_bases += owned.len() as u64;
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(owned);
        }
        let span = Span {
            record: chunk.record,
            record_offset: chunk.record_offset,
            owned_len: chunk.owned_len as u64,
            data_len: bases.len() as u64,
        };
        for group in self.packer.push(span, (bases, start)) {
            self.emit_group(group, emit)?;
        }
        Ok(())
    }

    /// The tasks of one group of chunks, one per pattern group, sharing the group's bases, or
    /// the reference to them in the kept sequence (a group's input is contiguous there: a
    /// plain chunk's owned bases then its overlap, or its pieces' owned bases in order).
    fn emit_group(
        &mut self,
        group: Vec<(Span, (Bytes, u64))>,
        emit: &mut dyn FnMut(PlannedTask),
    ) -> Result<(), Refusal> {
        let reference = self.storage.as_ref().map(|storage| GenomeRef {
            storage: storage.clone(),
            offset: group[0].1 .1,
            len: group_input_len(&group),
        });
        let data = match (&reference, group.as_slice()) {
            (Some(_), _) => Bytes::new(),
            (None, [(_, (bases, _))]) => bases.clone(),
            (None, pieces) => {
                let mut joined = Vec::with_capacity(group_input_len(pieces) as usize);
                for (span, (bases, _)) in pieces {
                    joined.extend_from_slice(&bases[..(span.owned_len as usize).min(bases.len())]);
                }
                Bytes::from(joined)
            }
        };
        for mut task in group_tasks(&self.spec, &group, self.next_group)? {
            match &reference {
                Some(reference) => reference.attach(&mut task.spec),
                None => task.data = data.clone(),
            }
            emit(task);
        }
        self.next_group += 1;
        Ok(())
    }

    fn emit_all(
        &mut self,
        ready: Vec<SequenceChunk>,
        emit: &mut dyn FnMut(PlannedTask),
    ) -> Result<(), Refusal> {
        for chunk in ready {
            self.tasks(chunk, emit)?;
        }
        Ok(())
    }
}

impl InputCutter for SearchCutter {
    fn push(&mut self, bytes: &[u8], emit: &mut dyn FnMut(PlannedTask)) -> Result<(), Refusal> {
        let mut ready = Vec::new();
        let pushed = self.chunker.push(bytes, &mut |chunk| ready.push(chunk));
        pushed.map_err(|err| self.bad_input(err))?;
        self.emit_all(ready, emit)
    }

    fn finish(
        self: Box<Self>,
        emit: &mut dyn FnMut(PlannedTask),
    ) -> Result<serde_json::Value, Refusal> {
        let SearchCutter {
            spec,
            chunker,
            packer,
            next_group,
            decoded,
            kept_bases,
            storage,
        } = *self;
        let mut ready = Vec::new();
        let finished = chunker.finish(&mut |chunk| ready.push(chunk));
        let mut this = SearchCutter {
            spec,
            chunker: Chunker::new(1, 0),
            packer,
            next_group,
            decoded,
            kept_bases,
            storage,
        };
        this.spec.records = finished.map_err(|err| this.bad_input(err))?;
        this.emit_all(ready, emit)?;
        if let Some(group) = this.packer.close() {
            this.emit_group(group, emit)?;
        }
        let spec = this.spec;
        serde_json::to_value(&spec)
            .map_err(|e| Refusal::new(ErrorCode::Internal, format!("job spec: {e}")))
    }

    fn keep_decoded(&mut self, sink: DecodedSink) -> bool {
        self.decoded = Some(sink);
        true
    }

    fn refer_to_kept(&mut self, storage: &str) -> bool {
        if self.decoded.is_none() || !is_genome_hash(storage) {
            return false;
        }
        self.storage = Some(storage.to_string());
        true
    }
}

/// Cuts an upload as the master does, fed in pieces of `piece` bytes: the search kind accepts
/// `submission`, cuts `input` into tasks and completes the spec. For the kind's unit tests.
#[cfg(test)]
pub(crate) fn cut_upload(
    submission: serde_json::Value,
    input: &[u8],
    piece: usize,
    limits: &SubmitLimits,
) -> (serde_json::Value, Vec<PlannedTask>) {
    let kind = super::require(SEARCH_KIND).expect("the search kind is registered");
    let spec = kind
        .accept(submission, Some(input.len() as u64), limits)
        .expect("the submission is accepted");
    let Ok(TaskSource::Upload(mut cutter)) = kind.tasks(&spec) else {
        panic!("a search uploads its input");
    };
    let mut tasks = Vec::new();
    for bytes in input.chunks(piece) {
        cutter
            .push(bytes, &mut |task| tasks.push(task))
            .expect("the upload is cut");
    }
    let spec = cutter
        .finish(&mut |task| tasks.push(task))
        .expect("the upload ends");
    (spec, tasks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{self, Kind};

    const LIMITS: SubmitLimits = SubmitLimits {
        max_upload: 1 << 20,
        max_frame: 1 << 20,
        default_chunk_size: 7,
        work: jobs::WorkCaps::DEFAULT,
        max_positions: 1 << 20,
    };

    /// Overlapping occurrences of `pattern` in `text`, counted the slow way.
    fn naive_count(text: &[u8], pattern: &[u8]) -> usize {
        text.windows(pattern.len())
            .filter(|window| window == &pattern)
            .count()
    }

    /// Runs a job the way the grid does, but in one process: the registered kind accepts the
    /// submission, cuts the upload (fed in uneven pieces), runs every task and prints the count.
    fn run_through_the_registry(input: &[u8], pattern: &str) -> String {
        let kind = jobs::require("search").unwrap();
        let submission = serde_json::json!({
            "filename": "g.fa",
            "patterns": [{ "name": "p", "sequence": pattern }],
        });
        let (spec, tasks) = cut_upload(submission, input, 5, &LIMITS);
        assert!(tasks.len() > 1, "the input should span several chunks");
        let out = jobs::run_in_process(kind, &spec, &tasks, "count");
        String::from_utf8(out).unwrap()
    }

    /// The result cache key of a search submitted as `edit` changes the base submission.
    fn key_of(edit: impl FnOnce(&mut serde_json::Value)) -> Option<String> {
        let kind = jobs::require("search").unwrap();
        let mut submission = serde_json::json!({
            "filename": "g.fa",
            "patterns": [{ "name": "p", "sequence": "ACGTAC" }],
            "genome_hash": "ab".repeat(32),
            "chunk_size": 10,
        });
        edit(&mut submission);
        let spec = kind.accept(submission, Some(1000), &LIMITS).unwrap();
        kind.result_key(&spec)
    }

    #[test]
    fn the_result_key_changes_with_what_changes_the_answer_only() {
        let base = key_of(|_| {}).expect("a search of a known genome has a key");
        assert_eq!(base.len(), 64);
        // Nothing of the answer changes: the same key.
        assert_eq!(key_of(|s| s["chunk_size"] = 77.into()), Some(base.clone()));
        assert_eq!(
            key_of(|s| s["filename"] = "other.fa".into()),
            Some(base.clone())
        );
        assert_eq!(key_of(|s| s["no_cache"] = true.into()), Some(base.clone()));
        type Edit = fn(&mut serde_json::Value);
        let changes: [(&str, Edit); 8] = [
            ("pattern", |s| {
                s["patterns"][0]["sequence"] = "ACGTAA".into()
            }),
            ("pattern name", |s| s["patterns"][0]["name"] = "q".into()),
            (
                "strand",
                |s| s["options"] = serde_json::json!({ "strand": "both", "case_sensitive": false }),
            ),
            (
                "case",
                |s| {
                    s["options"] =
                        serde_json::json!({ "strand": "forward", "case_sensitive": true })
                },
            ),
            (
                "mismatches",
                |s| s["options"] = serde_json::json!({ "strand": "forward", "case_sensitive": false, "max_mismatches": 1 }),
            ),
            ("count only", |s| s["count_only"] = true.into()),
            ("genome", |s| s["genome_hash"] = "cd".repeat(32).into()),
            ("second pattern", |s| {
                s["patterns"] = serde_json::json!([
                    { "name": "p", "sequence": "ACGTAC" },
                    { "name": "r", "sequence": "GGCC" },
                ])
            }),
        ];
        for (what, change) in changes {
            let key = key_of(change).expect("still a key");
            assert_ne!(key, base, "a change of {what} must change the key");
        }
        // Without a genome hash the answer is not pinned: no key.
        let no_hash = key_of(|s| {
            s.as_object_mut().unwrap().remove("genome_hash");
        });
        assert_eq!(no_hash, None);
    }

    /// A chunk is searched in slices between stop checks; matches across a slice edge (starting
    /// just before it, or exactly on it) count once, as a naive scan counts them.
    #[test]
    fn a_chunk_searched_in_slices_counts_what_a_naive_scan_counts() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut bases: Vec<u8> = (0..3 * STOP_CHECK_BASES + 12_345)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                b"ACGT"[(state >> 33) as usize % 4]
            })
            .collect();
        for edge in [STOP_CHECK_BASES, 2 * STOP_CHECK_BASES] {
            for start in [edge - 3, edge, edge - 6] {
                bases[start..start + 6].copy_from_slice(b"GATTAC");
            }
        }
        let expected = naive_count(&bases, b"GATTAC");
        let mut fasta = b">chr1\n".to_vec();
        for line in bases.chunks(60) {
            fasta.extend_from_slice(line);
            fasta.push(b'\n');
        }
        let kind = jobs::require("search").unwrap();
        let submission = serde_json::json!({
            "filename": "g.fa",
            "patterns": [{ "name": "p", "sequence": "GATTAC" }],
            "chunk_size": 2 * STOP_CHECK_BASES + 17,
        });
        let limits = SubmitLimits {
            max_upload: 1 << 30,
            max_frame: 1 << 30,
            ..LIMITS
        };
        let spec = kind
            .accept(submission, Some(fasta.len() as u64), &limits)
            .unwrap();
        let TaskSource::Upload(mut cutter) = kind.tasks(&spec).unwrap() else {
            panic!("a search uploads its input");
        };
        let mut tasks = Vec::new();
        for piece in fasta.chunks(65_536) {
            cutter.push(piece, &mut |task| tasks.push(task)).unwrap();
        }
        let spec = cutter.finish(&mut |task| tasks.push(task)).unwrap();
        let out = String::from_utf8(jobs::run_in_process(kind, &spec, &tasks, "count")).unwrap();
        assert_eq!(
            out,
            format!("patternName\tpattern\tcount\np\tGATTAC\t{expected}\ntotal\t\t{expected}\n")
        );
    }

    #[test]
    fn a_job_cut_into_chunks_counts_what_a_naive_scan_counts() {
        let bases = b"ACGACGTTACGACGACGNNACGACGTACGACG";
        let fasta = [
            b">chr1\n".as_slice(),
            &bases[..16],
            b"\n",
            &bases[16..],
            b"\n",
        ]
        .concat();
        let expected = naive_count(bases, b"ACGACG");
        assert_eq!(expected, 5);
        let printed = run_through_the_registry(&fasta, "ACGACG");
        assert_eq!(
            printed,
            format!("patternName\tpattern\tcount\np\tACGACG\t{expected}\ntotal\t\t{expected}\n")
        );
    }

    #[test]
    fn tasks_planned_from_a_stored_genome_are_the_tasks_an_upload_cuts() {
        let kind = jobs::require("search").unwrap();
        let records: [&[u8]; 4] = [
            b"ACGTACGTTTGACCA",
            b"",
            b"GGGACGTAC",
            b"TACGTACGTACGTACGTAC",
        ];
        let mut fasta = Vec::new();
        for (i, bases) in records.iter().enumerate() {
            fasta.extend_from_slice(format!(">r{i}\n").as_bytes());
            for line in bases.chunks(4) {
                fasta.extend_from_slice(line);
                fasta.push(b'\n');
            }
        }
        for chunk_size in [1u64, 3, 4, 7, 100] {
            let submission = serde_json::json!({
                "filename": "g.fa",
                "patterns": [{ "name": "p", "sequence": "ACGTA" }, { "name": "q", "sequence": "GT" }],
                "chunk_size": chunk_size,
            });
            let spec = kind
                .accept(submission, Some(fasta.len() as u64), &LIMITS)
                .unwrap();
            let TaskSource::Upload(mut cutter) = kind.tasks(&spec).unwrap() else {
                panic!("a search uploads its input");
            };
            let sink = DecodedSink::default();
            assert!(cutter.keep_decoded(sink.clone()));
            let mut cut = Vec::new();
            for piece in fasta.chunks(5) {
                cutter.push(piece, &mut |task| cut.push(task)).unwrap();
            }
            let uploaded_spec = cutter.finish(&mut |task| cut.push(task)).unwrap();
            let sequence: Vec<u8> = sink.lock().unwrap().iter().flatten().copied().collect();
            assert_eq!(sequence, records.concat(), "chunk size {chunk_size}");

            let genome = GenomeRecord {
                kind: Default::default(),
                hash: "0".repeat(64),
                storage: "0".repeat(64),
                size_bytes: fasta.len() as u64,
                bases: sequence.len() as u64,
                records: uploaded_spec["records"].clone(),
                filename: "g.fa".into(),
                created_at: 0.0,
                last_used: 0.0,
                jobs: 0,
            };
            let (planned, planned_spec) = tasks_from_genome(&spec, &genome).unwrap();
            assert_eq!(planned_spec["records"], uploaded_spec["records"]);
            assert_eq!(planned.len(), cut.len(), "chunk size {chunk_size}");
            for (from_genome, from_upload) in planned.iter().zip(&cut) {
                assert_eq!(from_genome.chunk, from_upload.chunk);
                let range = GenomeRef::from_spec(&from_genome.spec).unwrap();
                let bases = &sequence[range.offset as usize..(range.offset + range.len) as usize];
                assert_eq!(
                    bases,
                    from_upload.data.as_ref(),
                    "chunk {}",
                    from_upload.chunk
                );
                let mut spec = from_genome.spec.clone();
                spec.as_object_mut()
                    .unwrap()
                    .remove(crate::backend::genome::GENOME_SPEC_KEY);
                assert_eq!(spec, from_upload.spec);
            }

            // Cut again referring to the kept copy: each task names the range a stored genome
            // plans, under the upload's storage id, and carries no bases.
            let TaskSource::Upload(mut cutter) = kind.tasks(&spec).unwrap() else {
                panic!("a search uploads its input");
            };
            let storage = "5".repeat(64);
            assert!(!cutter.refer_to_kept(&storage), "nothing is kept yet");
            assert!(cutter.keep_decoded(DecodedSink::default()));
            assert!(cutter.refer_to_kept(&storage));
            let mut referring = Vec::new();
            for piece in fasta.chunks(3) {
                cutter
                    .push(piece, &mut |task| referring.push(task))
                    .unwrap();
            }
            cutter.finish(&mut |task| referring.push(task)).unwrap();
            assert_eq!(referring.len(), planned.len(), "chunk size {chunk_size}");
            for (cut, from_genome) in referring.iter().zip(&planned) {
                assert!(cut.data.is_empty());
                let cut_range = GenomeRef::from_spec(&cut.spec).unwrap();
                let planned_range = GenomeRef::from_spec(&from_genome.spec).unwrap();
                assert_eq!(cut_range.storage, storage);
                assert_eq!(
                    (cut_range.offset, cut_range.len),
                    (planned_range.offset, planned_range.len),
                    "chunk size {chunk_size}, chunk {}",
                    cut.chunk
                );
            }
        }
    }

    #[test]
    fn every_format_the_kind_lists_has_a_printer() {
        for name in <SearchKind as JobKind>::FORMATS {
            assert!(OutputFormat::from_name(name).is_some(), "{name}");
        }
        let err = SearchKind.check_format("png").unwrap_err().to_string();
        assert!(err.contains("count, tsv, bed, json"), "{err}");
    }

    #[test]
    fn a_search_without_an_upload_or_with_a_bad_pattern_is_refused() {
        let kind = jobs::require("search").unwrap();
        let submission = serde_json::json!({
            "filename": "g.fa",
            "patterns": [{ "name": "p", "sequence": "ACGX" }],
        });
        let refused = kind
            .accept(submission.clone(), Some(10), &LIMITS)
            .unwrap_err();
        assert_eq!(refused.code, ErrorCode::BadPattern);
        let mut good = submission;
        good["patterns"][0]["sequence"] = "ACG".into();
        let refused = kind.accept(good, None, &LIMITS).unwrap_err();
        assert_eq!(refused.code, ErrorCode::BadMessage);
    }

    #[test]
    fn too_many_patterns_a_tiny_chunk_size_or_a_huge_spec_are_refused() {
        let kind = jobs::require("search").unwrap();
        let patterns: Vec<_> = (0..=MAX_PATTERNS)
            .map(|i| serde_json::json!({ "name": format!("p{i}"), "sequence": "ACGT" }))
            .collect();
        let many = serde_json::json!({ "filename": "g.fa", "patterns": patterns });
        let refused = kind.accept(many, Some(10), &LIMITS).unwrap_err();
        assert!(refused.message.contains("at most 100000"), "{refused}");

        let tiny = serde_json::json!({
            "filename": "g.fa",
            "patterns": [{ "name": "p", "sequence": "ACGT" }],
            "chunk_size": 4,
        });
        let limits = SubmitLimits {
            max_upload: 1 << 30,
            ..LIMITS
        };
        let refused = kind
            .accept(tiny.clone(), Some(1 << 20), &limits)
            .unwrap_err();
        assert!(refused.message.contains("between 11 and"), "{refused}");
        assert!(kind.accept(tiny, Some(400_000), &limits).is_ok());

        let huge = serde_json::json!({
            "filename": "g".repeat(<SearchKind as JobKind>::MAX_SPEC_BYTES),
            "patterns": [{ "name": "p", "sequence": "ACGT" }],
        });
        let refused = kind.accept(huge, Some(10), &LIMITS).unwrap_err();
        assert!(refused.message.contains("exceeds the limit"), "{refused}");
    }

    #[test]
    fn compressed_input_past_the_upload_limit_is_refused_as_too_large() {
        use std::io::Write;
        let kind = jobs::require("search").unwrap();
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gzip.write_all(b">r\n").unwrap();
        gzip.write_all(&vec![b'A'; 4 << 20]).unwrap();
        let gzip = gzip.finish().unwrap();
        let submission = serde_json::json!({
            "filename": "g.fa.gz",
            "patterns": [{ "name": "p", "sequence": "ACGT" }],
            "chunk_size": 4096,
        });
        let spec = kind
            .accept(submission, Some(gzip.len() as u64), &LIMITS)
            .unwrap();
        let TaskSource::Upload(mut cutter) = kind.tasks(&spec).unwrap() else {
            panic!("a search uploads its input");
        };
        let refused = cutter.push(&gzip, &mut |_| {}).unwrap_err();
        assert_eq!(refused.code, ErrorCode::UploadTooLarge, "{refused}");
        assert!(refused.message.contains("--max-upload"), "{refused}");
    }

    #[test]
    fn the_summary_names_the_patterns_and_the_file() {
        let spec = serde_json::json!({
            "filename": "g.fa",
            "patterns": [{ "name": "a", "sequence": "ACG" }, { "name": "b", "sequence": "TTT" }],
            "options": { "strand": "both", "case_sensitive": false },
            "chunk_size": 10,
            "file_size": 10,
        });
        assert_eq!(
            Kind::summary(&SearchKind, &spec),
            "2 patterns in g.fa (both strands)"
        );
        assert_eq!(Kind::summary(&SearchKind, &serde_json::json!({})), "");
    }
}
