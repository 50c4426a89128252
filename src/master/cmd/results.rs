//! `get_results`: a completed job's spec and stored chunk results, streamed so that no frame and
//! no buffer on the master grows with the job: the spec's JSON text and each result's payload go
//! out in data frames of at most one stored part each.

use super::{Conn, HandlerError};
use crate::backend::{ChunkResult, RESULT_PART_BYTES};
use crate::master::{job_view, jobs, MasterState};
use crate::protocol::{ErrorCode, Message};

/// Answers `get_results`.
pub async fn apply(conn: &mut Conn, state: &MasterState, job_id: &str) -> Result<(), HandlerError> {
    let mut job = jobs::with_results(state, job_id, "results").await?;
    let spec_text = serde_json::to_vec(&std::mem::take(&mut job.spec))
        .map_err(|e| HandlerError::refused(ErrorCode::Internal, format!("job spec: {e}")))?;
    let headers = state.store.result_headers(job_id).await?;
    let view = job_view(state.store.as_ref(), job).await?;
    let spec_parts = spec_text.chunks(RESULT_PART_BYTES);
    conn.send_message(&Message::ResultsHeader {
        job: view,
        spec: serde_json::Value::Null,
        chunks: headers.len() as u32,
        spec_parts: spec_parts.len() as u32,
    })
    .await?;
    for part in spec_parts {
        conn.send_frame(part).await?;
    }
    drop(spec_text);
    for header in headers {
        let result = ChunkResult {
            chunk: header.chunk,
            matches: header.matches,
            payload: serde_json::Value::Null,
            encoded: None,
            worker: header.worker,
            run: Box::new(header.run),
        };
        conn.send_message(&Message::ResultChunk {
            result,
            parts: header.parts,
        })
        .await?;
        for part in 0..header.parts {
            // Frames are under way: a failure now cannot be an error reply the client would read
            // in step, so it closes the connection.
            let bytes = state
                .store
                .result_part(job_id, header.chunk, part)
                .await
                .map_err(|e| HandlerError::fatal(ErrorCode::Internal, e.to_string()))?;
            conn.send_frame(&bytes).await?;
        }
    }
    conn.flush().await?;
    Ok(())
}
