//! A completed job's stored results as the master sends them: its state, its spec, then one
//! result per task, a large payload in data frames. Read whole (`fetch_results`) or one task at a
//! time (`open_results`) by `gridwatch results`, the submit that waits, command jobs' task
//! files, and the local demo and benchmarks.

use bytes::Bytes;

use super::connect::{unexpected, ClientError, MasterClient};
use gridwatch::backend::{ChunkResult, RESULT_PART_BYTES};
use gridwatch::jobs::search::{report_from_stored, SearchReport};
use gridwatch::protocol::{JobView, Message};

/// A completed job's results as stored: its state, its kind's spec and one result per task.
#[derive(Clone, Debug)]
pub struct JobResults {
    /// The job's state (its kind among it).
    pub job: JobView,
    /// The kind-specific job spec.
    pub spec: serde_json::Value,
    /// One stored result per task.
    pub results: Vec<ChunkResult>,
}

/// A completed job's stored results as the master sends them, one task's result at a time.
pub struct ResultsStream<'c> {
    pub(super) client: &'c mut MasterClient,
    pub(super) job_id: String,
    remaining: u32,
}

/// Asks for a completed job's results: returns its state, its spec and the stream of its
/// tasks' results (which must be read to the end before the connection serves anything else).
pub async fn open_results<'c>(
    client: &'c mut MasterClient,
    job: &str,
) -> Result<(JobView, serde_json::Value, ResultsStream<'c>), ClientError> {
    let message = Message::GetResults {
        job_id: job.to_string(),
    };
    let (view, mut spec, chunks, spec_parts) = match client.request(&message).await? {
        Message::ResultsHeader {
            job,
            spec,
            chunks,
            spec_parts,
        } => (job, spec, chunks, spec_parts),
        other => return Err(unexpected(&other)),
    };
    if spec_parts > 0 {
        let text = read_parts(client, spec_parts).await?;
        spec = serde_json::from_slice(&text)
            .map_err(|e| ClientError::JobFailed(format!("job {job} spec: unreadable JSON: {e}")))?;
    }
    let stream = ResultsStream {
        client,
        job_id: job.to_string(),
        remaining: chunks,
    };
    Ok((view, spec, stream))
}

impl ResultsStream<'_> {
    /// The next task's result, its payload left as the stored JSON text (the result's own
    /// `payload` is then null); `None` after the last.
    pub async fn next_text(&mut self) -> Result<Option<(ChunkResult, Bytes)>, ClientError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining -= 1;
        match self.client.reply().await? {
            Message::ResultChunk { mut result, parts } => {
                let text = match parts {
                    0 => serde_json::to_vec(&std::mem::take(&mut result.payload))
                        .map(Bytes::from)
                        .map_err(|e| {
                            let chunk = result.chunk;
                            ClientError::JobFailed(format!("job {} task {chunk}: {e}", self.job_id))
                        })?,
                    parts => read_parts(self.client, parts).await?,
                };
                Ok(Some((result, text)))
            }
            other => Err(unexpected(&other)),
        }
    }

    /// The next task's result with its payload parsed.
    pub async fn next_result(&mut self) -> Result<Option<ChunkResult>, ClientError> {
        let Some((mut result, text)) = self.next_text().await? else {
            return Ok(None);
        };
        result.payload = serde_json::from_slice(&text).map_err(|e| {
            ClientError::JobFailed(format!(
                "job {} chunk {} result: unreadable JSON: {e}",
                self.job_id, result.chunk
            ))
        })?;
        Ok(Some(result))
    }
}

/// Fetches a completed job's stored results, all of them.
pub async fn fetch_results(
    client: &mut MasterClient,
    job: &str,
) -> Result<JobResults, ClientError> {
    let (view, spec, mut stream) = open_results(client, job).await?;
    let mut results = Vec::with_capacity(stream.remaining.min(1 << 16) as usize);
    while let Some(result) = stream.next_result().await? {
        results.push(result);
    }
    Ok(JobResults {
        job: view,
        spec,
        results,
    })
}

/// Reads `parts` data frames: their bytes one after another (a single part as it came).
async fn read_parts(client: &mut MasterClient, parts: u32) -> Result<Bytes, ClientError> {
    if parts == 1 {
        return Ok(client.connection().read_data().await?);
    }
    // Every part but the last is full: room for them all at once, not twice that by doubling.
    let mut text = Vec::with_capacity(RESULT_PART_BYTES.saturating_mul(parts.min(16) as usize));
    for _ in 0..parts {
        text.extend_from_slice(&client.connection().read_data().await?);
    }
    Ok(Bytes::from(text))
}

/// Fetches a completed search job's results as a report, for callers that submitted the search
/// themselves and compare it with a local one (the demo and the grid benchmark).
pub async fn fetch_report(
    client: &mut MasterClient,
    job: &str,
) -> Result<SearchReport, ClientError> {
    let fetched = fetch_results(client, job).await?;
    let unreadable = |e: serde_json::Error| {
        ClientError::JobFailed(format!("job {job}: unreadable search result: {e}"))
    };
    report_from_stored(&fetched.spec, &fetched.results).map_err(unreadable)
}
