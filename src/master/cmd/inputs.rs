//! Command inputs: `put_input` stores a file a command job's tasks read, byte for byte, in the
//! store that keeps genomes, under the BLAKE3 of its bytes; an input stored already is not sent
//! again. `read_input` hands a worker a bounded piece of one. The job service checks, before a
//! command job is created, that every input it names is stored (see `master::jobs`).

use super::{Conn, HandlerError, Session};
use crate::backend::genome::is_genome_hash;
use crate::backend::{GenomeRecord, GenomeStore, StoredKind, INPUT_PIECE_BYTES};
use crate::master::MasterState;
use crate::protocol::{ErrorCode, Message, Role};

/// Answers `put_input`.
pub async fn put(
    conn: &mut Conn,
    state: &MasterState,
    job_id: &str,
    hash: &str,
    size: u64,
) -> Result<(), HandlerError> {
    if !crate::jobs::batch::valid_job_id(job_id) {
        return Err(bad_message("put_input: the job id is not a valid job id"));
    }
    if !is_genome_hash(hash) {
        return Err(bad_message(
            "put_input: the hash is not a BLAKE3 hash (64 lowercase hex digits)",
        ));
    }
    let max = state.config.max_input;
    if size > max {
        return Err(HandlerError::refused(
            ErrorCode::UploadTooLarge,
            format!(
                "an input of {size} bytes is over the master's limit of {max} bytes \
                 (--max-input-size); split it, or raise the limit on the master"
            ),
        ));
    }
    let store = state.genome_store()?;
    if let Some(stored) = store.use_genome(hash, job_id).await? {
        crate::master::jobs::check_stored_input(&stored, hash, size)?;
        tracing::info!(component = "master", job = %job_id, input = %hash, bytes = size, "input stored already: nothing uploaded");
        conn.write_message(&Message::InputStored {
            hash: hash.to_string(),
            uploaded: false,
        })
        .await?;
        return Ok(());
    }
    super::check_free_space(state, size)?;
    receive(conn, state, store, job_id, hash, size).await?;
    tracing::info!(component = "master", job = %job_id, input = %hash, bytes = size, "input stored");
    conn.write_message(&Message::InputStored {
        hash: hash.to_string(),
        uploaded: true,
    })
    .await?;
    Ok(())
}

/// Takes the announced bytes, hashing and storing them as they come; keeps them only if their
/// hash is the announced one.
async fn receive(
    conn: &mut Conn,
    state: &MasterState,
    store: &dyn GenomeStore,
    job_id: &str,
    hash: &str,
    size: u64,
) -> Result<(), HandlerError> {
    let mut writer = store.begin_genome(StoredKind::Input).await?;
    conn.write_message(&Message::Ready {
        job_id: job_id.to_string(),
    })
    .await?;
    let mut hasher = blake3::Hasher::new();
    let mut received = 0u64;
    while received < size {
        let frame = match conn.read_data().await {
            Ok(frame) => frame,
            Err(err) => {
                writer.discard().await;
                return Err(HandlerError::fatal(
                    ErrorCode::UploadIncomplete,
                    format!("input upload ended after {received} of {size} bytes: {err}"),
                ));
            }
        };
        received += frame.len() as u64;
        if received > size {
            writer.discard().await;
            return Err(HandlerError::fatal(
                ErrorCode::BadFrame,
                format!("the input upload carries more than the announced {size} bytes"),
            ));
        }
        state
            .ops
            .upload_bytes
            .fetch_add(frame.len() as u64, std::sync::atomic::Ordering::Relaxed);
        hasher.update(&frame);
        if let Err(err) = writer.append(frame).await {
            writer.discard().await;
            return Err(HandlerError::fatal(
                ErrorCode::Internal,
                format!("storing the input failed: {err}"),
            ));
        }
    }
    let computed = hasher.finalize().to_hex().to_string();
    if computed != hash {
        writer.discard().await;
        return Err(HandlerError::refused(
            ErrorCode::BadInput,
            format!(
                "the uploaded input has BLAKE3 {computed}, not the announced {hash}: the file \
                 changed while it was sent; nothing was stored, submit again"
            ),
        ));
    }
    let now = crate::time::unix_now();
    let record = GenomeRecord {
        kind: StoredKind::Input,
        hash: hash.to_string(),
        storage: String::new(),
        size_bytes: size,
        bases: size,
        records: serde_json::Value::Null,
        filename: String::new(),
        created_at: now,
        last_used: now,
        jobs: 0,
    };
    writer.commit(&record, job_id).await?;
    Ok(())
}

/// Answers `read_input`, for workers only.
pub async fn read(
    conn: &mut Conn,
    state: &MasterState,
    session: &Session,
    hash: &str,
    offset: u64,
    len: u64,
) -> Result<(), HandlerError> {
    if !matches!((&session.role, &session.id), (Role::Worker, Some(_))) {
        return Err(HandlerError::fatal(
            ErrorCode::UnexpectedMessage,
            "only workers (hello with role worker and an id) read inputs",
        ));
    }
    if len > INPUT_PIECE_BYTES {
        return Err(bad_message(&format!(
            "read_input: at most {INPUT_PIECE_BYTES} bytes per piece"
        )));
    }
    if !is_genome_hash(hash) {
        return Err(bad_message(
            "read_input: the hash is not a BLAKE3 hash (64 lowercase hex digits)",
        ));
    }
    let piece = state
        .genome_store()?
        .read_genome(hash, offset, len)
        .await
        .map_err(|err| {
            HandlerError::refused(
                ErrorCode::BadInput,
                format!("input {hash}, bytes {offset}+{len}: {err}"),
            )
        })?;
    conn.write_message(&Message::InputPiece {
        len: piece.len() as u64,
    })
    .await?;
    conn.send_frame(&piece).await?;
    conn.flush().await?;
    Ok(())
}

fn bad_message(text: &str) -> HandlerError {
    HandlerError::refused(ErrorCode::BadMessage, text)
}
