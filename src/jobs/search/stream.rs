//! Prints a search job's stored results while they are read, task after task, in the bytes the
//! whole-report printers produce, without ever holding the job's positions: at most the stored
//! texts of one chunk's tasks (one per pattern group) are in memory at a time.
//!
//! Tasks arrive by index; task `c * groups + g` is chunk `c`, pattern group `g`, and chunks
//! follow the input, so the chunks' owned ranges come in (record, start) order. A chunk's tasks
//! are merged; a task already in order (the usual case) is printed straight from its text.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Write};

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::printer::{
    json_patterns, resolve, write_bed_line, write_count, write_tsv_header, write_tsv_line, HitRef,
    JsonHit, OutputFormat, SearchReport, StrandCounts, TaggedHit,
};
use super::{pattern_groups, SearchJobSpec};
use crate::jobs::ResultError;
use crate::search::Strand;

/// What a stored chunk result holds besides its positions, read with the positions skipped.
#[derive(Deserialize)]
struct PayloadMeta {
    record: u32,
    counts: Vec<StrandCounts>,
    #[allow(dead_code)]
    hits: IgnoredAny,
    #[serde(default)]
    pattern_offset: u32,
    #[serde(default)]
    mismatches: Vec<u32>,
    #[serde(default)]
    piece_hits: Vec<(u32, u64)>,
}

/// The matched bases of a stored hit, borrowed from the stored text when it has no escapes.
#[derive(Deserialize)]
struct Matched<'a>(#[serde(borrow)] Cow<'a, str>);

/// One stored hit as it is in the text: start, pattern, strand, matched bases.
type StoredRef<'a> = (u64, u32, Strand, Matched<'a>);

/// Per pattern of a job, its matches by strand, summed over the tasks' stored results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountTally {
    counts: Vec<StrandCounts>,
}

impl CountTally {
    /// Zero counts for a job of `patterns` patterns.
    pub fn new(patterns: usize) -> Self {
        Self {
            counts: vec![StrandCounts::default(); patterns],
        }
    }

    /// Adds one stored result's counts (its positions are skipped, not read).
    pub fn add_stored(&mut self, text: &[u8]) -> Result<(), serde_json::Error> {
        let meta: PayloadMeta = serde_json::from_slice(text)?;
        self.add(meta.pattern_offset, &meta.counts);
        Ok(())
    }

    fn add(&mut self, pattern_offset: u32, counts: &[StrandCounts]) {
        let from = pattern_offset as usize;
        for (total, part) in self.counts.iter_mut().skip(from).zip(counts) {
            total.forward = total.forward.saturating_add(part.forward);
            total.reverse = total.reverse.saturating_add(part.reverse);
        }
    }

    /// The counts, per pattern in the job's order.
    pub fn counts(&self) -> &[StrandCounts] {
        &self.counts
    }
}

/// The order hits are printed in: record, start, pattern, strand (a match is found once per
/// pattern and strand at a start, so the order is strict).
type HitKey = (u32, u64, u32, Strand);

fn key_of(hit: &HitRef<'_>) -> HitKey {
    (hit.record, hit.start, hit.pattern, hit.strand)
}

/// The JSON output's field order: the printers' own for `json`, alphabetical (how a JSON map
/// orders its keys) when the job id is added to it.
#[derive(Clone, Debug)]
enum JsonLayout {
    Plain,
    Tagged { job_id: String },
}

/// Prints a search job's results as its tasks' stored texts are pushed, in task order.
pub struct StreamPrinter<W: Write> {
    spec: SearchJobSpec,
    format: OutputFormat,
    json: JsonLayout,
    groups: u64,
    out: W,
    tally: CountTally,
    /// Whether pushed results add to `tally` (not when the counts were given beforehand).
    sum_counts: bool,
    /// The stored texts of the current chunk's tasks, and that chunk's index.
    batch: Vec<(u32, Bytes)>,
    batch_chunk: Option<u64>,
    /// The last hit printed, which the next must follow.
    last: Option<HitKey>,
    printed: u64,
    /// Reused for each JSON hit.
    scratch: Vec<u8>,
}

impl<W: Write> StreamPrinter<W> {
    /// A printer of `format`. A plain JSON output names the counts before the hits: its
    /// `counts` must be given, summed beforehand (with [`CountTally`]) over every task.
    pub fn new(
        spec: SearchJobSpec,
        format: OutputFormat,
        counts: Option<CountTally>,
        out: W,
    ) -> Result<Self, ResultError> {
        if format == OutputFormat::Json && counts.is_none() {
            return Err(ResultError::Corrupt(
                "JSON results need the job's counts before its positions".to_string(),
            ));
        }
        Self::build(spec, format, JsonLayout::Plain, counts, out)
    }

    /// A JSON printer whose output carries `"job_id"` as well (the keys then come in
    /// alphabetical order, the hits first, so the counts are summed on the way).
    pub fn tagged_json(spec: SearchJobSpec, job_id: &str, out: W) -> Result<Self, ResultError> {
        let layout = JsonLayout::Tagged {
            job_id: job_id.to_string(),
        };
        Self::build(spec, OutputFormat::Json, layout, None, out)
    }

    fn build(
        spec: SearchJobSpec,
        format: OutputFormat,
        json: JsonLayout,
        counts: Option<CountTally>,
        out: W,
    ) -> Result<Self, ResultError> {
        let groups = pattern_groups(spec.patterns.len());
        let sum_counts = counts.is_none();
        let tally = counts.unwrap_or_else(|| CountTally::new(spec.patterns.len()));
        let mut printer = StreamPrinter {
            spec,
            format,
            json,
            groups,
            out,
            tally,
            sum_counts,
            batch: Vec::new(),
            batch_chunk: None,
            last: None,
            printed: 0,
            scratch: Vec::new(),
        };
        printer.start()?;
        Ok(printer)
    }

    /// What comes before the first hit.
    fn start(&mut self) -> io::Result<()> {
        match (self.format, &self.json) {
            (OutputFormat::Tsv, _) => {
                write_tsv_header(self.spec.options.max_mismatches > 0, &mut self.out)
            }
            (OutputFormat::Json, JsonLayout::Plain) => {
                let approximate = self.spec.options.max_mismatches > 0;
                let mut fields = Vec::new();
                if approximate {
                    fields.push((
                        "max_mismatches",
                        json_text(&self.spec.options.max_mismatches)?,
                    ));
                }
                fields.push(("total", json_text(&total(self.tally.counts()))?));
                let patterns = json_patterns(&self.spec.patterns, self.tally.counts());
                fields.push(("patterns", json_text(&patterns)?));
                fields.push(("records", json_text(&self.spec.records)?));
                self.out.write_all(b"{")?;
                for (i, (key, value)) in fields.iter().enumerate() {
                    write_field(&mut self.out, i == 0, key, value)?;
                }
                self.out.write_all(b",\n  \"hits\": ")
            }
            (OutputFormat::Json, JsonLayout::Tagged { .. }) => {
                self.out.write_all(b"{\n  \"hits\": ")
            }
            _ => Ok(()),
        }
    }

    /// Takes the stored text of task `task`'s result; tasks must come in index order. A
    /// chunk's hits are printed when its last pattern group's task arrives (or the next
    /// chunk's), so a caller that reads task by task holds one chunk's texts at most.
    pub fn push(&mut self, task: u32, text: Bytes) -> Result<(), ResultError> {
        let chunk = u64::from(task) / self.groups;
        if self.batch_chunk != Some(chunk) {
            self.print_batch()?;
            self.batch_chunk = Some(chunk);
        }
        self.batch.push((task, text));
        if u64::from(task) % self.groups == self.groups - 1 {
            self.print_batch()?;
        }
        Ok(())
    }

    /// Prints what is left and closes the output; returns the writer.
    pub fn finish(mut self) -> Result<W, ResultError> {
        self.print_batch()?;
        match (self.format, self.json.clone()) {
            (OutputFormat::Count, _) => {
                let report = SearchReport {
                    max_mismatches: self.spec.options.max_mismatches,
                    records: Vec::new(),
                    patterns: self.spec.patterns.clone(),
                    counts: self.tally.counts().to_vec(),
                    hits: Vec::new(),
                };
                write_count(&report, &mut self.out)?;
            }
            (OutputFormat::Json, layout) => {
                self.close_hits()?;
                if let JsonLayout::Tagged { job_id } = layout {
                    let tail = tagged_tail(&self.spec, self.tally.counts(), &job_id)?;
                    for (key, value) in &tail {
                        write_field(&mut self.out, false, key, value)?;
                    }
                }
                self.out.write_all(b"\n}\n")?;
            }
            _ => {}
        }
        self.out.flush()?;
        Ok(self.out)
    }

    /// Prints the current chunk's tasks: straight from the text when there is one task and its
    /// hits are in order, else merged in memory (bounded by one chunk's tasks).
    fn print_batch(&mut self) -> Result<(), ResultError> {
        let batch = std::mem::take(&mut self.batch);
        let mut metas = Vec::with_capacity(batch.len());
        for (task, text) in &batch {
            let meta: PayloadMeta = serde_json::from_slice(text).map_err(|e| corrupt(*task, e))?;
            if self.sum_counts {
                self.tally.add(meta.pattern_offset, &meta.counts);
            }
            metas.push(meta);
        }
        if self.format == OutputFormat::Count {
            return Ok(());
        }
        if let ([(task, text)], [meta]) = (batch.as_slice(), metas.as_slice()) {
            if in_order(text, meta).map_err(|e| corrupt(*task, e))? {
                let mut failed = None;
                let read = visit_hits(text, meta, |hit| match self.print_hit(hit.as_hit()) {
                    Ok(()) => true,
                    Err(err) => {
                        failed = Some(err);
                        false
                    }
                });
                if let Some(err) = failed {
                    return Err(err);
                }
                return read.map_err(|e| corrupt(*task, e));
            }
        }
        let mut hits: Vec<(HitKey, Cow<'_, str>, u32)> = Vec::new();
        for ((task, text), meta) in batch.iter().zip(&metas) {
            let read = visit_hits(text, meta, |hit| {
                hits.push((key_of(&hit.as_hit()), hit.matched, hit.mismatches));
                true
            });
            read.map_err(|e| corrupt(*task, e))?;
        }
        hits.sort_unstable();
        for ((record, start, pattern, strand), matched, mismatches) in &hits {
            let hit = HitRef {
                record: *record,
                start: *start,
                pattern: *pattern,
                strand: *strand,
                matched,
                mismatches: *mismatches,
            };
            self.print_hit(hit)?;
        }
        Ok(())
    }

    /// Prints one hit, which must come after the last one printed.
    fn print_hit(&mut self, hit: HitRef<'_>) -> Result<(), ResultError> {
        let key = key_of(&hit);
        if self.last.is_some_and(|last| key <= last) {
            return Err(ResultError::Corrupt(format!(
                "stored positions out of order: record {} position {} comes after record {} \
                 position {}",
                hit.record,
                hit.start,
                self.last.map_or(0, |l| l.0),
                self.last.map_or(0, |l| l.1)
            )));
        }
        self.last = Some(key);
        let (record, pattern) = resolve(&self.spec.records, &self.spec.patterns, hit)?;
        let approximate = self.spec.options.max_mismatches > 0;
        match self.format {
            OutputFormat::Tsv => write_tsv_line(record, pattern, hit, approximate, &mut self.out)?,
            OutputFormat::Bed => write_bed_line(record, pattern, hit, &mut self.out)?,
            OutputFormat::Json => {
                self.scratch.clear();
                let tagged = matches!(self.json, JsonLayout::Tagged { .. });
                let json = JsonHit::new(record, pattern, hit, approximate);
                match tagged {
                    false => serde_json::to_writer_pretty(&mut self.scratch, &json),
                    true => serde_json::to_writer_pretty(&mut self.scratch, &TaggedHit::from(json)),
                }
                .map_err(io::Error::from)?;
                let open: &[u8] = if self.printed == 0 { b"[" } else { b"," };
                self.out.write_all(open)?;
                self.out.write_all(b"\n    ")?;
                write_indented(&mut self.out, &self.scratch, b"\n    ")?;
            }
            OutputFormat::Count => {}
        }
        self.printed += 1;
        Ok(())
    }

    /// Ends the JSON hits array.
    fn close_hits(&mut self) -> io::Result<()> {
        match self.printed {
            0 => self.out.write_all(b"[]"),
            _ => self.out.write_all(b"\n  ]"),
        }
    }
}

/// A stored result that does not read, named by its task.
fn corrupt(task: u32, err: serde_json::Error) -> ResultError {
    ResultError::Corrupt(format!(
        "the stored result of task {task} is unreadable: {err}"
    ))
}

fn total(counts: &[StrandCounts]) -> u64 {
    counts
        .iter()
        .map(StrandCounts::total)
        .fold(0, u64::saturating_add)
}

/// `value` as pretty JSON text (nested lines indented from column 0).
fn json_text(value: &impl Serialize) -> io::Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(io::Error::from)
}

/// One field of a pretty-printed top-level object, as serde_json writes it.
fn write_field(out: &mut impl Write, first: bool, key: &str, value: &[u8]) -> io::Result<()> {
    if !first {
        out.write_all(b",")?;
    }
    out.write_all(b"\n  ")?;
    out.write_all(&serde_json::to_vec(key).map_err(io::Error::from)?)?;
    out.write_all(b": ")?;
    write_indented(out, value, b"\n  ")
}

/// Writes `text` with every line break followed by `indent` (JSON text has no other line
/// breaks: those in strings are escaped).
fn write_indented(out: &mut impl Write, text: &[u8], indent: &[u8]) -> io::Result<()> {
    let mut lines = text.split(|&b| b == b'\n');
    if let Some(first) = lines.next() {
        out.write_all(first)?;
    }
    for line in lines {
        out.write_all(indent)?;
        out.write_all(line)?;
    }
    Ok(())
}

/// The fields after `hits` when the job id is added: as a JSON map orders them, and each value
/// as a JSON value prints (its own keys in alphabetical order too).
fn tagged_tail(
    spec: &SearchJobSpec,
    counts: &[StrandCounts],
    job_id: &str,
) -> io::Result<Vec<(&'static str, Vec<u8>)>> {
    let mut fields = vec![("job_id", sorted(&job_id)?)];
    if spec.options.max_mismatches > 0 {
        fields.push(("max_mismatches", sorted(&spec.options.max_mismatches)?));
    }
    fields.push(("patterns", sorted(&json_patterns(&spec.patterns, counts))?));
    fields.push(("records", sorted(&spec.records)?));
    fields.push(("total", sorted(&total(counts))?));
    Ok(fields)
}

/// `value` as pretty JSON text after a round through a JSON value, which orders object keys
/// alphabetically (as the output with a job id added is printed).
fn sorted(value: &impl Serialize) -> io::Result<Vec<u8>> {
    let value = serde_json::to_value(value).map_err(io::Error::from)?;
    json_text(&value)
}

/// One stored hit, read in place, with the record and mismatches its result lists apart.
struct StoredView<'t> {
    record: u32,
    start: u64,
    pattern: u32,
    strand: Strand,
    matched: Cow<'t, str>,
    mismatches: u32,
}

impl StoredView<'_> {
    fn as_hit(&self) -> HitRef<'_> {
        HitRef {
            record: self.record,
            start: self.start,
            pattern: self.pattern,
            strand: self.strand,
            matched: &self.matched,
            mismatches: self.mismatches,
        }
    }
}

/// Why a visit ended early: the visitor asked it to.
const STOPPED: &str = "stopped by the reader";

/// Whether a stored result's hits come in print order.
fn in_order(text: &[u8], meta: &PayloadMeta) -> Result<bool, serde_json::Error> {
    let mut previous: Option<HitKey> = None;
    let mut ordered = true;
    let read = visit_hits(text, meta, |hit| {
        let key = key_of(&hit.as_hit());
        ordered = previous.map_or(true, |previous| previous < key);
        previous = Some(key);
        ordered
    });
    match ordered {
        false => Ok(false),
        true => read.map(|()| true),
    }
}

/// Calls `visit` on each stored hit of a result, in stored order, until it returns false.
fn visit_hits<'t>(
    text: &'t [u8],
    meta: &PayloadMeta,
    visit: impl FnMut(StoredView<'t>) -> bool,
) -> Result<(), serde_json::Error> {
    let mut reader = serde_json::Deserializer::from_slice(text);
    reader.deserialize_map(PayloadHits { meta, visit })?;
    reader.end()
}

/// Walks a stored result's fields, reading `hits` hit by hit and skipping the rest.
struct PayloadHits<'m, F> {
    meta: &'m PayloadMeta,
    visit: F,
}

impl<'de, F: FnMut(StoredView<'de>) -> bool> Visitor<'de> for PayloadHits<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a search chunk result")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == "hits" {
                map.next_value_seed(HitsSeq {
                    meta: self.meta,
                    visit: &mut self.visit,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// The `hits` array of a stored result, each hit handed on as it is read.
struct HitsSeq<'v, 'm, F> {
    meta: &'m PayloadMeta,
    visit: &'v mut F,
}

impl<'de, F: FnMut(StoredView<'de>) -> bool> DeserializeSeed<'de> for HitsSeq<'_, '_, F> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(StoredView<'de>) -> bool> Visitor<'de> for HitsSeq<'_, '_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of hits")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut records = RecordCursor::new(self.meta);
        let mut index = 0usize;
        while let Some((start, pattern, strand, Matched(matched))) =
            seq.next_element::<StoredRef<'de>>()?
        {
            let hit = StoredView {
                record: records.next_record(),
                start,
                pattern,
                strand,
                matched,
                mismatches: self.meta.mismatches.get(index).copied().unwrap_or(0),
            };
            if !(self.visit)(hit) {
                return Err(de::Error::custom(STOPPED));
            }
            index += 1;
        }
        Ok(())
    }
}

/// The record of each hit in turn: a packed task's results list, per piece, its record and
/// how many hits (in order) are its; a plain chunk's hits are all of its record.
struct RecordCursor<'m> {
    pieces: std::slice::Iter<'m, (u32, u64)>,
    current: (u32, u64),
    default: u32,
}

impl<'m> RecordCursor<'m> {
    fn new(meta: &'m PayloadMeta) -> Self {
        Self {
            pieces: meta.piece_hits.iter(),
            current: (meta.record, 0),
            default: meta.record,
        }
    }

    fn next_record(&mut self) -> u32 {
        while self.current.1 == 0 {
            match self.pieces.next() {
                Some(&piece) => self.current = piece,
                None => return self.default,
            }
        }
        self.current.1 -= 1;
        self.current.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ChunkResult;
    use crate::jobs::{self, JobContext, SubmitLimits};

    /// A job run in one process the way the grid runs it: accepted, cut, each task run alone.
    /// Returns the completed spec and the stored results by task index.
    fn run_job(
        fasta: &[u8],
        submission: serde_json::Value,
    ) -> (serde_json::Value, Vec<ChunkResult>) {
        let kind = jobs::require("search").unwrap();
        let limits = SubmitLimits {
            max_upload: 1 << 24,
            max_frame: 1 << 24,
            default_chunk_size: 50,
            work: jobs::WorkCaps::DEFAULT,
            max_positions: 1 << 24,
        };
        let (spec, tasks) = super::super::cut_upload(submission, fasta, 37, &limits);
        let results = tasks
            .iter()
            .map(|task| {
                let prepared = kind.prepare(&task.spec).unwrap();
                let outcome = prepared.run(&task.spec, &task.data).unwrap();
                outcome.into_chunk_result(task.chunk, "w".into(), Default::default())
            })
            .collect();
        (spec, results)
    }

    /// Records of assorted lengths (short ones are packed into shared tasks, long ones cut into
    /// several chunks), soft-masked stretches and N runs.
    fn genome() -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut fasta = Vec::new();
        for (i, len) in [7usize, 3, 260, 12, 5, 140, 1, 90].into_iter().enumerate() {
            fasta.extend_from_slice(format!(">r{i} desc\n").as_bytes());
            for at in 0..len {
                let base = match next() % 23 {
                    0 => b'N',
                    1 | 2 => b"acgt"[(next() % 4) as usize],
                    _ => b"ACGT"[(next() % 4) as usize],
                };
                fasta.push(base);
                if at % 31 == 30 {
                    fasta.push(b'\n');
                }
            }
            fasta.push(b'\n');
        }
        fasta
    }

    /// What the whole-report path prints, with the job id added as `submit --wait --json` adds it.
    fn tagged_reference(
        spec: &serde_json::Value,
        results: &[ChunkResult],
        job_id: &str,
    ) -> Vec<u8> {
        let kind = jobs::require("search").unwrap();
        let mut rendered = Vec::new();
        kind.render(&JobContext::default(), spec, results, "json", &mut rendered)
            .unwrap();
        let mut value: serde_json::Value = serde_json::from_slice(&rendered).unwrap();
        value
            .as_object_mut()
            .unwrap()
            .insert("job_id".into(), job_id.into());
        let mut out = serde_json::to_vec_pretty(&value).unwrap();
        out.push(b'\n');
        out
    }

    fn texts(results: &[ChunkResult]) -> Vec<(u32, Bytes)> {
        results
            .iter()
            .map(|r| {
                (
                    r.chunk,
                    Bytes::from(serde_json::to_vec(&r.payload).unwrap()),
                )
            })
            .collect()
    }

    fn stream(
        spec: &serde_json::Value,
        results: &[ChunkResult],
        format: &str,
        tag: Option<&str>,
    ) -> Result<Vec<u8>, ResultError> {
        let spec = SearchJobSpec::deserialize(spec).unwrap();
        let format = OutputFormat::from_name(format).unwrap();
        let mut printer = match tag {
            Some(job_id) => StreamPrinter::tagged_json(spec, job_id, Vec::new())?,
            None => {
                let counts = (format == OutputFormat::Json).then(|| {
                    let mut tally = CountTally::new(spec.patterns.len());
                    for (_, text) in texts(results) {
                        tally.add_stored(&text).unwrap();
                    }
                    tally
                });
                StreamPrinter::new(spec, format, counts, Vec::new())?
            }
        };
        for (task, text) in texts(results) {
            printer.push(task, text)?;
        }
        printer.finish()
    }

    fn submissions() -> Vec<(&'static str, serde_json::Value)> {
        let many: Vec<serde_json::Value> = (0..501)
            .map(|i| {
                let sequence: String = (0..3)
                    .map(|k| ['A', 'C', 'G', 'T'][(i >> (2 * k)) % 4])
                    .collect();
                serde_json::json!({ "name": format!("g{i}"), "sequence": sequence })
            })
            .collect();
        vec![
            (
                "one pattern, forward",
                serde_json::json!({ "filename": "g.fa", "patterns": [{ "name": "p", "sequence": "AC" }] }),
            ),
            (
                "IUPAC patterns on both strands",
                serde_json::json!({
                    "filename": "g.fa",
                    "patterns": [{ "name": "n", "sequence": "N" }, { "name": "r", "sequence": "RYA" }, { "name": "pal", "sequence": "ACGT" }],
                    "options": { "strand": "both", "case_sensitive": false },
                }),
            ),
            (
                "mismatches",
                serde_json::json!({
                    "filename": "g.fa",
                    "patterns": [{ "name": "m", "sequence": "GATTA" }, { "name": "q", "sequence": "CCG" }],
                    "options": { "strand": "both", "case_sensitive": false, "max_mismatches": 1 },
                }),
            ),
            (
                "two pattern groups",
                serde_json::json!({ "filename": "g.fa", "patterns": many, "options": { "strand": "both", "case_sensitive": false } }),
            ),
            (
                "no match",
                serde_json::json!({ "filename": "g.fa", "patterns": [{ "name": "z", "sequence": "GGGGGGGGGGGG" }] }),
            ),
        ]
    }

    #[test]
    fn streamed_output_is_byte_for_byte_the_whole_report() {
        let kind = jobs::require("search").unwrap();
        let fasta = genome();
        for (case, submission) in submissions() {
            let (spec, results) = run_job(&fasta, submission);
            for format in ["count", "tsv", "bed", "json"] {
                let mut whole = Vec::new();
                kind.render(&JobContext::default(), &spec, &results, format, &mut whole)
                    .unwrap();
                let streamed = stream(&spec, &results, format, None).unwrap();
                let rows = whole.iter().filter(|&&b| b == b'\n').count();
                assert!(
                    case == "no match" || format == "count" || rows > 20,
                    "{case}: {format} should list many matches, has {rows} lines"
                );
                assert_eq!(
                    String::from_utf8(streamed).unwrap(),
                    String::from_utf8(whole).unwrap(),
                    "{case}: {format}"
                );
            }
            let streamed = stream(&spec, &results, "json", Some("job-7")).unwrap();
            assert_eq!(
                String::from_utf8(streamed).unwrap(),
                String::from_utf8(tagged_reference(&spec, &results, "job-7")).unwrap(),
                "{case}: json with the job id"
            );
        }
    }

    #[test]
    fn a_task_stored_in_disorder_is_printed_in_order() {
        let kind = jobs::require("search").unwrap();
        let (spec, mut results) = run_job(&genome(), submissions().remove(1).1);
        let hits = results
            .iter_mut()
            .map(|r| r.payload["hits"].as_array_mut().unwrap())
            .find(|hits| hits.len() > 3)
            .unwrap();
        hits.reverse();
        let mut whole = Vec::new();
        kind.render(&JobContext::default(), &spec, &results, "tsv", &mut whole)
            .unwrap();
        assert_eq!(stream(&spec, &results, "tsv", None).unwrap(), whole);
    }

    #[test]
    fn tasks_out_of_order_or_unreadable_are_refused_naming_the_task() {
        let (spec, mut results) = run_job(&genome(), submissions().remove(0).1);
        results.reverse();
        let err = stream(&spec, &results, "tsv", None).unwrap_err();
        assert!(err.to_string().contains("out of order"), "{err}");
        results.reverse();
        results[2].payload = serde_json::json!("hello");
        let err = stream(&spec, &results, "bed", None).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("task {}", results[2].chunk)),
            "{err}"
        );
    }
}
