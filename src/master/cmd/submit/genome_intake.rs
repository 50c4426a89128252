//! The genome half of a search submit. A genome the backend holds already (looked up by the
//! hash the client announced) gives the job its tasks with nothing uploaded. Otherwise the
//! upload's bytes are hashed as they arrive and the decoded bases written to the backend; the
//! genome is stored under the hash the master computed, and only if it equals the announced one:
//! a client that lies about the hash fails its job and stores nothing.

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{to_tasks, Enqueuer, Submission};
use crate::backend::{GenomeRecord, GenomeWriter};
use crate::jobs::search::{tasks_from_genome, SEARCH_KIND};
use crate::master::cmd::HandlerError;
use crate::master::MasterState;
use crate::protocol::ErrorCode;

/// Tasks sent to the queue in one step when planned from a stored genome, so workers start
/// on the first ones while the rest are stored.
const REUSE_BATCH: usize = 64;

/// The hash a submit announced for its input, if any.
fn announced_hash(submission: &Submission) -> Option<&str> {
    submission.spec.get("genome_hash")?.as_str()
}

/// Plans the job's tasks from the stored genome its submit names, if the backend holds it
/// (and marks the job as using it, so it is not deleted under the job); `None` when the input
/// must be uploaded. Returns the task count and the completed spec.
pub(super) async fn reuse_genome(
    state: &MasterState,
    submission: &Submission,
    enqueuer: &mut Enqueuer,
) -> Result<Option<(u32, serde_json::Value)>, HandlerError> {
    if submission.kind.name() != SEARCH_KIND {
        return Ok(None);
    }
    let Some(hash) = announced_hash(submission) else {
        return Ok(None);
    };
    let used = match state.genome_store() {
        Ok(genomes) => genomes.use_genome(hash, &submission.job_id).await,
        Err(err) => Err(err),
    };
    let genome = match used {
        // A command input with the same bytes is stored as uploaded, not decoded: not a genome.
        Ok(Some(genome))
            if Some(genome.size_bytes) == submission.file_size
                && genome.kind == crate::backend::StoredKind::Genome =>
        {
            genome
        }
        Ok(_) => return Ok(None),
        Err(err) => {
            tracing::debug!(component = "master", job = %submission.job_id, error = %err, "stored genomes unavailable; taking the upload");
            return Ok(None);
        }
    };
    let (tasks, spec) = tasks_from_genome(&submission.spec, &genome)?;
    let mut chunks = 0;
    let mut tasks = tasks.into_iter().peekable();
    while tasks.peek().is_some() {
        let batch: Vec<_> = tasks.by_ref().take(REUSE_BATCH).collect();
        chunks += enqueuer.send(to_tasks(submission, batch)).await?;
    }
    tracing::info!(component = "master", job = %submission.job_id, genome = %genome.hash, "searching a stored genome: nothing uploaded");
    Ok(Some((chunks, spec)))
}

/// What the receiving loop hands the intake.
pub(super) enum Intake {
    /// Upload bytes as they came, to hash.
    Raw(Bytes),
    /// Decoded bases, in order, to store.
    Bases(Bytes),
    /// The upload is complete.
    Done,
}

/// What the intake saw.
struct Taken {
    hash: String,
    bases: u64,
    writer: Option<Box<dyn GenomeWriter>>,
}

/// Hashes an upload and stores its decoded bases beside the receiving loop, so neither slows
/// the other much; a bounded channel keeps memory bounded.
pub(super) struct GenomeIntake {
    sender: Option<mpsc::Sender<Intake>>,
    task: tokio::task::JoinHandle<Option<Taken>>,
}

impl GenomeIntake {
    /// Starts hashing, and storing if the backend stores genomes.
    pub(super) async fn start(state: &MasterState) -> Self {
        let begun = match state.genome_store() {
            Ok(genomes) => {
                genomes
                    .begin_genome(crate::backend::StoredKind::Genome)
                    .await
            }
            Err(err) => Err(err),
        };
        let writer = match begun {
            Ok(writer) => Some(writer),
            Err(err) => {
                tracing::warn!(component = "master", error = %err, "cannot store the uploaded genome; the job runs without keeping it");
                None
            }
        };
        let (sender, receiver) = mpsc::channel(8);
        let task = tokio::spawn(take(receiver, writer));
        Self {
            sender: Some(sender),
            task,
        }
    }

    /// Hands the intake the next piece; if it stopped, the piece is dropped.
    pub(super) async fn send(&mut self, piece: Intake) {
        if let Some(sender) = &self.sender {
            let _ = sender.send(piece).await;
        }
    }

    /// The upload failed: waits until what was stored of the genome is dropped.
    pub(super) async fn abandon(mut self) {
        self.sender = None;
        let _ = (&mut self.task).await;
    }

    async fn finish(mut self) -> Option<Taken> {
        self.send(Intake::Done).await;
        self.sender = None;
        (&mut self.task).await.ok().flatten()
    }
}

/// The intake's loop. A failed write stops the storing, not the job: its tasks carry their own
/// bases. An upload that ends without `Done` (it failed) drops what was written.
async fn take(
    mut receiver: mpsc::Receiver<Intake>,
    mut writer: Option<Box<dyn GenomeWriter>>,
) -> Option<Taken> {
    let mut hasher = blake3::Hasher::new();
    let mut bases = 0u64;
    while let Some(piece) = receiver.recv().await {
        match piece {
            Intake::Raw(bytes) => {
                hasher.update(&bytes);
            }
            Intake::Bases(piece) => {
                bases += piece.len() as u64;
                let Some(store) = writer.as_mut() else {
                    continue;
                };
                if let Err(err) = store.append(piece).await {
                    tracing::warn!(component = "master", error = %err, "storing the uploaded genome failed; the job runs without keeping it");
                    if let Some(failed) = writer.take() {
                        failed.discard().await;
                    }
                }
            }
            Intake::Done => {
                return Some(Taken {
                    hash: hasher.finalize().to_hex().to_string(),
                    bases,
                    writer,
                })
            }
        }
    }
    if let Some(abandoned) = writer {
        abandoned.discard().await;
    }
    None
}

/// Ends a kept genome's upload: checks the announced hash against the bytes, stores the genome
/// under the computed hash, and notes both in the job's spec.
pub(super) async fn keep_genome(
    submission: &Submission,
    intake: GenomeIntake,
    mut spec: serde_json::Value,
    uploaded: u64,
) -> Result<serde_json::Value, HandlerError> {
    let Some(taken) = intake.finish().await else {
        return Err(HandlerError::refused(
            ErrorCode::Internal,
            "hashing the upload stopped early",
        ));
    };
    if let Some(announced) = announced_hash(submission).filter(|hash| *hash != taken.hash) {
        if let Some(writer) = taken.writer {
            writer.discard().await;
        }
        return Err(HandlerError::refused(
            ErrorCode::BadInput,
            format!(
                "the uploaded bytes have BLAKE3 {}, not the announced {announced}: the file \
                 changed while it was sent, or the client is wrong; nothing was stored, submit again",
                taken.hash
            ),
        ));
    }
    let genome = GenomeRecord {
        kind: crate::backend::StoredKind::Genome,
        hash: taken.hash.clone(),
        size_bytes: uploaded,
        bases: taken.bases,
        records: spec.get("records").cloned().unwrap_or_default(),
        filename: spec
            .get("filename")
            .and_then(|name| name.as_str())
            .unwrap_or_default()
            .to_string(),
        created_at: crate::time::unix_now(),
        last_used: crate::time::unix_now(),
        jobs: 0,
    };
    if let Some(writer) = taken.writer {
        match writer.commit(&genome, &submission.job_id).await {
            Ok(()) => {
                tracing::info!(component = "master", job = %submission.job_id, genome = %genome.hash, bases = genome.bases, "genome stored")
            }
            Err(err) => {
                tracing::warn!(component = "master", job = %submission.job_id, error = %err, "storing the uploaded genome failed; the job runs without keeping it")
            }
        }
    }
    if let Some(fields) = spec.as_object_mut() {
        fields.insert("genome_hash".into(), taken.hash.into());
        fields.insert("uploaded_bytes".into(), uploaded.into());
        fields.insert("genome_reused".into(), false.into());
    }
    Ok(spec)
}
