//! `get_results`: a completed job's spec and stored chunk results, streamed one chunk result per
//! frame so a large result never has to fit one frame or one buffer.

use super::status::find_job;
use super::{Conn, HandlerError};
use crate::backend::JobStatus;
use crate::master::{job_view, MasterState};
use crate::protocol::{ErrorCode, Message};

/// Answers `get_results`.
pub async fn apply(conn: &mut Conn, state: &MasterState, job_id: &str) -> Result<(), HandlerError> {
    let job = find_job(state, job_id).await?;
    if job.status != JobStatus::Completed {
        let view = job_view(state.store.as_ref(), job).await?;
        return Err(HandlerError::refused(
            ErrorCode::JobNotReady,
            format!(
                "job {job_id} is {} ({}/{} chunks); results are ready when it completes (`gridwatch status {job_id} --wait`)",
                format!("{:?}", view.status).to_lowercase(),
                view.progress.processed_chunks,
                view.progress.total_chunks
            ),
        ));
    }
    let spec = job.spec.clone();
    let results = state.store.chunk_results(job_id).await?;
    let view = job_view(state.store.as_ref(), job).await?;
    conn.send_message(&Message::ResultsHeader {
        job: view,
        spec,
        chunks: results.len() as u32,
    })
    .await?;
    for result in results {
        conn.send_message(&Message::ResultChunk { result }).await?;
    }
    conn.flush().await?;
    Ok(())
}
