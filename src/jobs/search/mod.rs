//! The `search` job kind: the uploaded genome is cut into chunks as it streams in (each chunk
//! owns a range of one record and carries the overlap a match needs), a worker runs the search
//! kernel on one chunk, and the stored chunk results become the same [`SearchReport`] that local
//! `gridwatch search` prints.

use std::io::{self, Write};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{
    DecodedSink, InputCutter, JobContext, JobKind, PlannedTask, Refusal, SubmitLimits, TaskError,
    TaskSource,
};
use crate::backend::genome::{is_genome_hash, GenomeRef};
use crate::backend::{ChunkResult, GenomeRecord};
use crate::protocol::ErrorCode;
use crate::search::{
    search_chunk, Chunk, Chunker, Hit, InputError, Pattern, PatternSet, RecordInfo, SearchOptions,
    SequenceChunk, Strand, StrandMode,
};

pub mod printer;

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
    /// Per pattern of the task (from `pattern_offset` in the job's list), matches by strand.
    pub counts: Vec<StrandCounts>,
    /// Every match starting in the owned range, ordered by start, pattern, strand; pattern
    /// indices are the job's.
    pub hits: Vec<StoredHit>,
    /// The job's index of the task's first pattern (0 unless the job is cut by pattern group).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pattern_offset: u32,
    /// Per hit (same order), its mismatches; empty for an exact search and in results stored
    /// before mismatch search existed, which read as all zero.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mismatches: Vec<u32>,
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
    let mismatches = match set.options().max_mismatches {
        0 => Vec::new(),
        _ => hits.iter().map(|hit| hit.mismatches).collect(),
    };
    let stored = hits
        .iter()
        .map(|hit| {
            if let Some(count) = counts.get_mut(hit.pattern as usize) {
                count.add(hit.strand);
            }
            let local = (hit.start - spec.record_offset) as usize;
            let len = set.patterns()[hit.pattern as usize].sequence.len();
            let matched = matched_bases(&bases[local..(local + len).min(bases.len())], hit.strand);
            let pattern = hit.pattern.saturating_add(spec.pattern_offset);
            (hit.start, pattern, hit.strand, matched)
        })
        .collect();
    ChunkPayload {
        record: spec.record,
        counts,
        hits: stored,
        pattern_offset: spec.pattern_offset,
        mismatches,
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
        hits.extend(payload.hits.into_iter().zip(mismatches).map(
            |((start, pattern, strand, matched), mismatches)| ReportHit {
                record: payload.record,
                start,
                pattern,
                strand,
                matched,
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
            decoded: None,
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
        run_chunk(&prepared.set, task, input)
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
    for (record, info) in records.iter().enumerate() {
        let mut offset = 0u64;
        while offset < info.length {
            let owned_len = chunk_size.min(info.length - offset);
            let reference = GenomeRef {
                hash: genome.hash.clone(),
                offset: record_start + offset,
                len: (chunk_size + overlap).min(info.length - offset),
            };
            for (group, patterns) in spec.patterns.chunks(PATTERNS_PER_TASK).enumerate() {
                let task = SearchTaskSpec {
                    patterns: patterns.to_vec(),
                    options: spec.options,
                    record: record as u32,
                    record_offset: offset,
                    owned_len,
                    pattern_offset: (group * PATTERNS_PER_TASK) as u32,
                };
                let index = u32::try_from(chunk_index * groups + group as u64).map_err(|_| {
                    Refusal::new(
                        ErrorCode::BadMessage,
                        "too many tasks for one job".to_string(),
                    )
                })?;
                let mut planned = PlannedTask::new(index, &task, Bytes::new())?;
                reference.attach(&mut planned.spec);
                tasks.push(planned);
            }
            chunk_index += 1;
            offset += owned_len;
        }
        record_start += info.length;
    }
    spec.records = records;
    spec.genome_hash = Some(genome.hash.clone());
    spec.uploaded_bytes = Some(0);
    spec.genome_reused = Some(true);
    let spec = serde_json::to_value(&spec).map_err(|e| internal("job spec", e))?;
    Ok((tasks, spec))
}

/// Cuts an uploaded genome into chunk tasks as it streams in.
struct SearchCutter {
    spec: SearchJobSpec,
    chunker: Chunker,
    /// Where the owned bases of each chunk go, when kept: in order, they are each record's
    /// sequence, records one after another (what a stored genome holds).
    decoded: Option<DecodedSink>,
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

    /// The chunk's tasks, one per pattern group, sharing the chunk's bases.
    fn tasks(
        &mut self,
        mut chunk: SequenceChunk,
        emit: &mut dyn FnMut(PlannedTask),
    ) -> Result<(), Refusal> {
        let groups = pattern_groups(self.spec.patterns.len());
        let bases = Bytes::from(std::mem::take(&mut chunk.bases));
        if let Some(sink) = &self.decoded {
            let owned = bases.slice(..chunk.owned_len.min(bases.len()));
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(owned);
        }
        for (group, patterns) in self.spec.patterns.chunks(PATTERNS_PER_TASK).enumerate() {
            let mut spec = SearchTaskSpec::for_chunk(&chunk, patterns, self.spec.options);
            spec.pattern_offset = (group * PATTERNS_PER_TASK) as u32;
            let index = u64::from(chunk.index) * groups + group as u64;
            let index = u32::try_from(index).map_err(|_| {
                Refusal::new(
                    ErrorCode::BadMessage,
                    "too many tasks for one job".to_string(),
                )
            })?;
            emit(PlannedTask::new(index, &spec, bases.clone())?);
        }
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
            decoded,
        } = *self;
        let mut ready = Vec::new();
        let finished = chunker.finish(&mut |chunk| ready.push(chunk));
        let mut this = SearchCutter {
            spec,
            chunker: Chunker::new(1, 0),
            decoded,
        };
        this.spec.records = finished.map_err(|err| this.bad_input(err))?;
        this.emit_all(ready, emit)?;
        let spec = this.spec;
        serde_json::to_value(&spec)
            .map_err(|e| Refusal::new(ErrorCode::Internal, format!("job spec: {e}")))
    }

    fn keep_decoded(&mut self, sink: DecodedSink) -> bool {
        self.decoded = Some(sink);
        true
    }
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
        let spec = kind
            .accept(submission, Some(input.len() as u64), &LIMITS)
            .unwrap();
        let TaskSource::Upload(mut cutter) = kind.tasks(&spec).unwrap() else {
            panic!("a search uploads its input");
        };
        let mut tasks = Vec::new();
        for piece in input.chunks(5) {
            cutter.push(piece, &mut |task| tasks.push(task)).unwrap();
        }
        let spec = cutter.finish(&mut |task| tasks.push(task)).unwrap();
        assert!(tasks.len() > 1, "the input should span several chunks");
        let out = jobs::run_in_process(kind, &spec, &tasks, "count");
        String::from_utf8(out).unwrap()
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
                hash: "0".repeat(64),
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
