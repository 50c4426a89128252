//! A completed job's result as its kind renders it: the small JSON summary `/jobs/{id}` shows
//! beside the job, the image at `/jobs/{id}/image.png` and the files of `/jobs/{id}/results`.
//! Kinds name these formats themselves ([`Kind::summary_format`], [`Kind::image_format`]).
//! Renders are few at once (a semaphore; over it, 503 with Retry-After) and run on a blocking
//! thread. A Julia job, whose image may hold hundreds of millions of pixels, is streamed: its
//! bands are read from the store one at a time and its bytes go out as they are made, so a
//! request holds one band whatever the image's size. A search's `count` reads each stored part
//! once, keeping the counts and skipping the positions; its positions (TSV, BED, JSON) are
//! streamed a task's stored result at a time.

use std::io::{self, Write};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::{ApiError, HttpState};
use crate::backend::{JobRecord, JobStatus, ResultStore, StoredResult};
use crate::jobs::julia::{self as julia_kind, JuliaBand, JuliaJobSpec, JULIA_KIND};
use crate::jobs::search::stream::{CountTally, StreamPrinter};
use crate::jobs::search::{
    write_report, OutputFormat, SearchJobSpec, SearchReport, StrandCounts, SEARCH_KIND,
};
use crate::jobs::{self, JobContext, Kind};
use crate::master::job_view;

/// Bytes a streamed response sends at a time.
const STREAM_CHUNK: usize = 64 * 1024;
/// Chunks a streamed response buffers ahead of a slow reader.
const STREAM_AHEAD: usize = 4;

/// `GET /jobs/{id}/image.png`: the job's image, for kinds that draw one.
pub async fn image(
    State(state): State<HttpState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = crate::master::jobs::find(&state.master, &id).await?;
    let kind = jobs::kind(&record.kind);
    let Some((kind, format)) = kind.and_then(|k| Some((k, k.image_format()?))) else {
        return Err(ApiError::NotFound(format!(
            "job {id} is a {} job, which has no image",
            record.kind
        )));
    };
    let record = crate::master::jobs::results_readable(&state.master, record, "image").await?;
    let body = respond(&state, kind, record, format).await?;
    // A completed job's results never change.
    let headers = [
        (header::CONTENT_TYPE, "image/png"),
        (header::CACHE_CONTROL, "max-age=86400"),
    ];
    Ok((headers, body).into_response())
}

/// The summary of a completed job's result, for kinds that have one; `None` otherwise.
pub async fn summary(
    state: &HttpState,
    record: &JobRecord,
) -> Result<Option<serde_json::Value>, ApiError> {
    let Some(kind) = jobs::kind(&record.kind) else {
        return Ok(None);
    };
    let Some(format) = kind.summary_format() else {
        return Ok(None);
    };
    if record.status != JobStatus::Completed {
        return Ok(None);
    }
    let body = respond(state, kind, record.clone(), format).await?;
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| ApiError::Corrupt(format!("job {}: {e}", record.id)))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ApiError::Corrupt(format!("job {}: {e}", record.id)))
}

/// A completed job's stored results rendered in `format`, as a response body: streamed for
/// Julia jobs, whole for the other kinds. Refused with 503 when renders are at their limit.
pub(super) async fn respond(
    state: &HttpState,
    kind: &'static dyn Kind,
    record: JobRecord,
    format: &'static str,
) -> Result<Body, ApiError> {
    let permit = state
        .renders
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Busy(state.max_renders))?;
    let store = state.master.store.clone();
    if record.kind == JULIA_KIND {
        return stream_julia(store, record, format, permit).await;
    }
    if record.kind == SEARCH_KIND && format == "count" {
        let bytes = count_search(store, record).await?;
        drop(permit);
        return Ok(Body::from(bytes));
    }
    if record.kind == SEARCH_KIND {
        return stream_search(store, record, format, permit).await;
    }
    let bytes = render(store.as_ref(), kind, record, format).await?;
    drop(permit);
    Ok(Body::from(bytes))
}

/// Renders a completed job's stored results in `format`, whole.
async fn render(
    store: &dyn ResultStore,
    kind: &'static dyn Kind,
    record: JobRecord,
    format: &'static str,
) -> Result<Vec<u8>, ApiError> {
    let results = store.chunk_results(&record.id).await?;
    let spec = record.spec.clone();
    let id = record.id.clone();
    let context = JobContext::of_view(&job_view(store, record).await?);
    let rendered = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        kind.render(&context, &spec, &results, format, &mut out)
            .map(|()| out)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| ApiError::Corrupt(format!("job {id}: rendering failed: {e}")))?;
    rendered.map_err(|e| ApiError::Corrupt(format!("job {id}: {e}")))
}

/// Streams a Julia job's result in `format`, reading one band at a time. What can be checked
/// before the first byte (the spec, one stored result per band) is, so a broken job still gets
/// a clean error status; a band that turns out unreadable later cuts the response short.
async fn stream_julia(
    store: Arc<dyn ResultStore>,
    record: JobRecord,
    format: &'static str,
    permit: OwnedSemaphorePermit,
) -> Result<Body, ApiError> {
    let id = record.id.clone();
    let spec: JuliaJobSpec = serde_json::from_value(record.spec.clone())
        .map_err(|e| ApiError::Corrupt(format!("job {id}: julia job spec: {e}")))?;
    let headers = store.result_headers(&id).await?;
    let in_order = headers
        .iter()
        .enumerate()
        .all(|(i, h)| h.chunk as usize == i);
    if headers.len() != spec.bands as usize || !in_order {
        return Err(ApiError::Corrupt(format!(
            "job {id}: {} bands are stored, the job has {}",
            headers.len(),
            spec.bands
        )));
    }
    let context = JobContext::of_view(&job_view(store.as_ref(), record).await?);
    let (sender, mut receiver) = mpsc::channel::<io::Result<Bytes>>(STREAM_AHEAD);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut out = ChannelWriter::new(sender.clone());
        let mut bands = headers.into_iter();
        let next_band = || match bands.next() {
            None => Ok(None),
            Some(header) => runtime
                .block_on(read_band(store.as_ref(), &id, &header))
                .map(Some),
        };
        let written = julia_kind::write_streamed(&spec, &context, format, next_band, &mut out)
            .and_then(|()| out.flush());
        if let Err(err) = written {
            // The reader going away is routine; a broken band is worth a warning.
            if err.kind() != io::ErrorKind::BrokenPipe {
                tracing::warn!(component = "http", job = %id, error = %err, "streamed result cut short");
                let _ = sender.blocking_send(Err(err));
            }
        }
    });
    let body = Body::from_stream(futures_util::stream::poll_fn(move |cx| {
        receiver.poll_recv(cx)
    }));
    Ok(body)
}

/// Streams a search job's positions in `format` (tsv, bed or json), one task's stored result
/// in memory at a time. Every stored result is read once before the first byte, for the
/// counts the JSON names first and so that one that does not read gets an error status naming
/// its task; a position found broken later cuts the response short.
async fn stream_search(
    store: Arc<dyn ResultStore>,
    record: JobRecord,
    format: &'static str,
    permit: OwnedSemaphorePermit,
) -> Result<Body, ApiError> {
    let id = record.id.clone();
    let spec: SearchJobSpec = serde_json::from_value(record.spec)
        .map_err(|e| ApiError::Corrupt(format!("job {id}: search job spec: {e}")))?;
    let format = OutputFormat::from_name(format)
        .ok_or_else(|| ApiError::BadQuery(format!("format {format:?}")))?;
    let headers = store.result_headers(&id).await?;
    let mut tally = CountTally::new(spec.patterns.len());
    for header in &headers {
        let text = read_text(store.as_ref(), &id, header).await?;
        tally.add_stored(&text).map_err(|e| {
            ApiError::Corrupt(format!(
                "job {id}: the stored result of task {} is unreadable: {e}",
                header.chunk
            ))
        })?;
    }
    let (sender, mut receiver) = mpsc::channel::<io::Result<Bytes>>(STREAM_AHEAD);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let out = ChannelWriter::new(sender.clone());
        let written = (|| -> Result<(), jobs::ResultError> {
            let mut printer = StreamPrinter::new(spec, format, Some(tally), out)?;
            for header in &headers {
                let text = runtime.block_on(read_text(store.as_ref(), &id, header));
                let text = text.map_err(|e| io::Error::other(e.to_string()))?;
                printer.push(header.chunk, text)?;
            }
            printer.finish()?.flush()?;
            Ok(())
        })();
        match written {
            Ok(()) => {}
            // The reader going away is routine; a broken result is worth a warning.
            Err(jobs::ResultError::Io(err)) if err.kind() == io::ErrorKind::BrokenPipe => {}
            Err(err) => {
                tracing::warn!(component = "http", job = %id, error = %err, "streamed result cut short");
                let _ = sender.blocking_send(Err(io::Error::other(err.to_string())));
            }
        }
    });
    let body = Body::from_stream(futures_util::stream::poll_fn(move |cx| {
        receiver.poll_recv(cx)
    }));
    Ok(body)
}

/// A stored result's payload text, its parts read one after another.
async fn read_text(
    store: &dyn ResultStore,
    job: &str,
    header: &StoredResult,
) -> Result<Bytes, ApiError> {
    if header.parts == 1 {
        return Ok(store.result_part(job, header.chunk, 0).await?);
    }
    let mut text = Vec::new();
    for part in 0..header.parts {
        text.extend_from_slice(&store.result_part(job, header.chunk, part).await?);
    }
    Ok(Bytes::from(text))
}

/// What a search's `count` needs of a stored chunk result: its counts, not its positions.
#[derive(serde::Deserialize)]
struct ChunkCounts {
    counts: Vec<StrandCounts>,
    #[serde(default)]
    pattern_offset: u32,
}

/// A search's `count` output, reading each chunk's stored parts through once, one part in
/// memory at a time.
async fn count_search(store: Arc<dyn ResultStore>, record: JobRecord) -> Result<Vec<u8>, ApiError> {
    let id = record.id.clone();
    let spec: SearchJobSpec = serde_json::from_value(record.spec)
        .map_err(|e| ApiError::Corrupt(format!("job {id}: search job spec: {e}")))?;
    let headers = store.result_headers(&id).await?;
    let runtime = tokio::runtime::Handle::current();
    let counted = tokio::task::spawn_blocking(move || -> io::Result<Vec<u8>> {
        let mut counts = vec![StrandCounts::default(); spec.patterns.len()];
        for header in &headers {
            let parts = PartsReader {
                store: store.as_ref(),
                runtime: &runtime,
                job: &id,
                header,
                next: 0,
                current: Bytes::new(),
            };
            let chunk: ChunkCounts =
                serde_json::from_reader(io::BufReader::new(parts)).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("job {id}: chunk {}: {e}", header.chunk),
                    )
                })?;
            let from = chunk.pattern_offset as usize;
            for (total, part) in counts.iter_mut().skip(from).zip(&chunk.counts) {
                total.forward = total.forward.saturating_add(part.forward);
                total.reverse = total.reverse.saturating_add(part.reverse);
            }
        }
        let report = SearchReport {
            max_mismatches: spec.options.max_mismatches,
            records: spec.records,
            patterns: spec.patterns,
            counts,
            hits: Vec::new(),
        };
        let mut out = Vec::new();
        write_report(OutputFormat::Count, &report, &mut out)?;
        Ok(out)
    })
    .await
    .map_err(|e| ApiError::Corrupt(format!("job {}: counting failed: {e}", record.id)))?;
    counted.map_err(|e| ApiError::Corrupt(e.to_string()))
}

/// A stored result's payload text, its parts fetched one at a time as they are read.
struct PartsReader<'a> {
    store: &'a dyn ResultStore,
    runtime: &'a tokio::runtime::Handle,
    job: &'a str,
    header: &'a StoredResult,
    next: u32,
    current: Bytes,
}

impl io::Read for PartsReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.next >= self.header.parts {
                return Ok(0);
            }
            let part = self
                .store
                .result_part(self.job, self.header.chunk, self.next);
            self.current = self.runtime.block_on(part).map_err(io::Error::other)?;
            self.next += 1;
        }
        let taken = buf.len().min(self.current.len());
        buf[..taken].copy_from_slice(&self.current.split_to(taken));
        Ok(taken)
    }
}

/// One stored band, its payload's parts read one after another.
async fn read_band(
    store: &dyn ResultStore,
    job: &str,
    header: &StoredResult,
) -> io::Result<JuliaBand> {
    let mut text = Vec::new();
    for part in 0..header.parts {
        let bytes = store
            .result_part(job, header.chunk, part)
            .await
            .map_err(io::Error::other)?;
        text.extend_from_slice(&bytes);
    }
    serde_json::from_slice(&text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("job {job}: band {}: {e}", header.chunk),
        )
    })
}

/// Sends what is written, in chunks of [`STREAM_CHUNK`] bytes, to a response body; a reader
/// that went away shows as a broken pipe.
struct ChannelWriter {
    sender: mpsc::Sender<io::Result<Bytes>>,
    pending: Vec<u8>,
}

impl ChannelWriter {
    fn new(sender: mpsc::Sender<io::Result<Bytes>>) -> Self {
        Self {
            sender,
            pending: Vec::with_capacity(STREAM_CHUNK),
        }
    }

    fn send_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(STREAM_CHUNK));
        self.sender
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = STREAM_CHUNK - self.pending.len();
        let taken = buf.len().min(room);
        self.pending.extend_from_slice(&buf[..taken]);
        if self.pending.len() >= STREAM_CHUNK {
            self.send_pending()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_pending()
    }
}
