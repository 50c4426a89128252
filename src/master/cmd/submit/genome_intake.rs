//! The genome half of a search submit. A genome the backend holds already (looked up by the
//! hash the client announced) gives the job its tasks with nothing uploaded. Otherwise the
//! upload's bytes are hashed as they arrive and the decoded bases written once, under a fresh
//! storage id; the job's tasks carry no bases but their range of that copy, and each is held
//! back only until the writer reports its range readable, so workers start while the upload
//! still streams in. A failed write fails the job (the tasks have no other copy). At the end
//! the copy is stored under the hash the master computed, and only if it equals the announced
//! one: a client that lies about the hash fails its job and stores nothing. A copy whose genome
//! was stored meanwhile stays as a spare until its job ends.

use std::collections::VecDeque;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use super::{to_tasks, Enqueuer, Submission};
use crate::backend::genome::GenomeRef;
use crate::backend::{BackendError, GenomeRecord, GenomeWriter, NewTask};
use crate::jobs::search::{tasks_from_genome, SEARCH_KIND};
use crate::jobs::InputCutter;
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
    writer: Box<dyn GenomeWriter>,
}

/// Hashes an upload and stores its decoded bases beside the receiving loop, so neither slows
/// the other much; a bounded channel keeps memory bounded. Holds the tasks whose range is not
/// readable yet.
pub(super) struct GenomeIntake {
    sender: Option<mpsc::Sender<Intake>>,
    task: Option<tokio::task::JoinHandle<Result<Option<Taken>, BackendError>>>,
    /// Bases readable by storage id, as the writer reports them.
    readable: watch::Receiver<u64>,
    /// Tasks cut but not yet readable, in the order they were cut (their ranges only grow).
    waiting: VecDeque<NewTask>,
}

impl GenomeIntake {
    /// Starts hashing and storing, and has `cutter` cut tasks that refer to the copy being
    /// stored. `None` when the backend cannot store genomes: the tasks then carry their bases.
    pub(super) async fn start(state: &MasterState, cutter: &mut dyn InputCutter) -> Option<Self> {
        let begun = match state.genome_store() {
            Ok(genomes) => {
                genomes
                    .begin_genome(crate::backend::StoredKind::Genome)
                    .await
            }
            Err(err) => Err(err),
        };
        let writer = match begun {
            Ok(writer) => writer,
            Err(err) => {
                tracing::warn!(component = "master", error = %err, "cannot store the uploaded genome; its tasks carry their bases");
                return None;
            }
        };
        cutter.refer_to_kept(writer.storage());
        let (sender, receiver) = mpsc::channel(8);
        let (published, readable) = watch::channel(0);
        let task = tokio::spawn(take(receiver, writer, published));
        Some(Self {
            sender: Some(sender),
            task: Some(task),
            readable,
            waiting: VecDeque::new(),
        })
    }

    /// Hands the intake the next piece. A stopped intake (its write failed) fails the upload.
    pub(super) async fn send(&mut self, piece: Intake) -> Result<(), HandlerError> {
        let sent = match &self.sender {
            Some(sender) => sender.send(piece).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        self.sender = None;
        match self.wait().await {
            Err(err) => Err(err),
            Ok(_) => Err(stopped()),
        }
    }

    /// Takes the tasks just cut; returns those whose range is readable now (with every task
    /// cut before them), holding the rest back.
    pub(super) fn hold(&mut self, tasks: Vec<NewTask>) -> Vec<NewTask> {
        self.waiting.extend(tasks);
        let readable = *self.readable.borrow();
        let mut ready = Vec::new();
        while let Some(task) = self.waiting.front() {
            let end = GenomeRef::from_spec(&task.spec)
                .map_or(0, |range| range.offset.saturating_add(range.len));
            if end > readable {
                break;
            }
            ready.extend(self.waiting.pop_front());
        }
        ready
    }

    /// The upload failed: waits until what was stored of the genome is dropped.
    pub(super) async fn abandon(mut self) {
        self.sender = None;
        let _ = self.wait().await;
    }

    /// Ends the upload: the last bases are written (everything is readable) and the hash is
    /// known. Every task still held back is returned with it.
    async fn finish(&mut self) -> Result<(Taken, Vec<NewTask>), HandlerError> {
        self.send(Intake::Done).await?;
        self.sender = None;
        let taken = self.wait().await?.ok_or_else(stopped)?;
        Ok((taken, self.waiting.drain(..).collect()))
    }

    /// Waits for the intake's task; its error as the job's.
    async fn wait(&mut self) -> Result<Option<Taken>, HandlerError> {
        let Some(task) = self.task.take() else {
            return Err(stopped());
        };
        match task.await {
            Ok(Ok(taken)) => Ok(taken),
            Ok(Err(err)) => Err(HandlerError::Backend(BackendError::Other(format!(
                "storing the uploaded genome failed: {err}"
            )))),
            Err(join) => Err(HandlerError::fatal(
                ErrorCode::Internal,
                format!("storing the uploaded genome failed: {join}"),
            )),
        }
    }
}

fn stopped() -> HandlerError {
    HandlerError::fatal(
        ErrorCode::Internal,
        "storing the uploaded genome stopped early",
    )
}

/// The intake's loop: hashes the bytes, writes the bases and publishes how many are readable.
/// A failed write drops the copy and ends the loop with its error; an upload that ends without
/// `Done` (it failed) drops what was written.
async fn take(
    mut receiver: mpsc::Receiver<Intake>,
    mut writer: Box<dyn GenomeWriter>,
    readable: watch::Sender<u64>,
) -> Result<Option<Taken>, BackendError> {
    let mut hasher = blake3::Hasher::new();
    let mut bases = 0u64;
    while let Some(piece) = receiver.recv().await {
        let (written, done) = match piece {
            Intake::Raw(bytes) => {
                hasher.update(&bytes);
                continue;
            }
            Intake::Bases(piece) => {
                bases += piece.len() as u64;
                let written = writer.append(piece.clone()).await;
                // Stored: the chunk's buffer can take the bases of a chunk to come.
                crate::buffers::give_back(piece);
                (written, false)
            }
            Intake::Done => (writer.flush().await, true),
        };
        if let Err(err) = written {
            writer.discard().await;
            return Err(err);
        }
        readable.send_replace(writer.readable());
        if done {
            return Ok(Some(Taken {
                hash: hasher.finalize().to_hex().to_string(),
                bases,
                writer,
            }));
        }
    }
    writer.discard().await;
    Ok(None)
}

/// Ends a kept genome's upload: checks the announced hash against the bytes, queues the tasks
/// still held back, stores the genome under the computed hash (or keeps this copy as a spare
/// when it is stored already) and notes both in the job's spec.
pub(super) async fn keep_genome(
    submission: &Submission,
    mut intake: GenomeIntake,
    mut spec: serde_json::Value,
    uploaded: u64,
    enqueuer: &mut Enqueuer,
) -> Result<serde_json::Value, HandlerError> {
    let (taken, held) = intake.finish().await.map_err(super::mid_upload)?;
    if let Some(announced) = announced_hash(submission).filter(|hash| *hash != taken.hash) {
        taken.writer.discard().await;
        return Err(HandlerError::refused(
            ErrorCode::BadInput,
            format!(
                "the uploaded bytes have BLAKE3 {}, not the announced {announced}: the file \
                 changed while it was sent, or the client is wrong; nothing was stored, submit again",
                taken.hash
            ),
        ));
    }
    if let Err(err) = enqueuer.send(held).await {
        taken.writer.discard().await;
        return Err(err);
    }
    let genome = GenomeRecord {
        kind: crate::backend::StoredKind::Genome,
        hash: taken.hash.clone(),
        storage: taken.writer.storage().to_string(),
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
    let storage = genome.storage.clone();
    taken
        .writer
        .commit(&genome, &submission.job_id)
        .await
        .map_err(|err| {
            super::name_full_disk(
                HandlerError::Backend(BackendError::Other(format!(
                    "storing the uploaded genome failed: {err}"
                ))),
                false,
            )
        })?;
    tracing::info!(component = "master", job = %submission.job_id, genome = %genome.hash, %storage, bases = genome.bases, "genome stored");
    if let Some(fields) = spec.as_object_mut() {
        fields.insert("genome_hash".into(), taken.hash.into());
        fields.insert("uploaded_bytes".into(), uploaded.into());
        fields.insert("genome_reused".into(), false.into());
    }
    Ok(spec)
}
