//! Tasks that read a stored genome instead of carrying their bases. Such a task's spec holds one
//! reserved key, [`GENOME_SPEC_KEY`]: `{"genome": {"storage": …, "offset": …, "len": …}}`, a
//! range of the decoded sequence kept under that storage id, and the task is enqueued with no
//! input bytes. The storage id, not the genome's hash, is named so that a first upload's tasks
//! read the copy being written (before any hash is known) and a lease never resolves a hash.
//! Tasks queued before storage ids existed name `hash`: read as the storage id, which is what
//! such genomes are kept under. [`GenomeQueue`] wraps the queue that hands leases to workers
//! and fills the bytes in at lease time, so the backends' queues and the worker never see the
//! difference.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::live_output::{LiveOutput, OutputPiece};
use super::{
    BackendError, BackendResult, Completion, CompletionOutcome, GenomeStore, Lease, Leases,
    MasterQueue, NackOutcome, NewTask, QueueAdmin, ResultSink, WorkerId, WorkerIds, WorkerOffer,
};

/// The task spec key reserved for a genome reference; no job kind may use it for anything else.
pub const GENOME_SPEC_KEY: &str = "genome";

/// A range of a stored genome's decoded sequence: a task's input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenomeRef {
    /// Where the sequence is kept (64 lowercase hex digits). Tasks queued by earlier versions
    /// name the genome's hash, under which such genomes are kept.
    #[serde(alias = "hash")]
    pub storage: String,
    /// First base, counted from the start of the whole sequence (records concatenated).
    pub offset: u64,
    /// Bases.
    pub len: u64,
}

impl GenomeRef {
    /// The reference a task spec carries, if it carries a well-formed one.
    pub fn from_spec(spec: &serde_json::Value) -> Option<GenomeRef> {
        let reference = GenomeRef::deserialize(spec.get(GENOME_SPEC_KEY)?).ok()?;
        is_genome_hash(&reference.storage).then_some(reference)
    }

    /// Adds this reference to a task spec (a JSON object).
    pub fn attach(&self, spec: &mut serde_json::Value) {
        if let (Some(fields), Ok(value)) = (spec.as_object_mut(), serde_json::to_value(self)) {
            fields.insert(GENOME_SPEC_KEY.to_string(), value);
        }
    }
}

/// Whether `text` is a BLAKE3 digest as stored: 64 lowercase hex digits. Anything else is never
/// used to name a file or a key.
pub fn is_genome_hash(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A fresh storage id: 64 lowercase hex digits, random, so it passes [`is_genome_hash`] wherever
/// a name is checked before it names a file or a key.
pub fn new_storage_id() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Where a [`GenomeQueue`] reads the ranges it fills leases with.
enum Source {
    /// The store itself: the master of an embedded backend, or any process of a Redis one.
    Store {
        store: Arc<dyn GenomeStore>,
        /// Workers that read genomes from the store's files themselves (their offer named the
        /// store's [`GenomeStore::files_id`]), each with whether it also reads genomes still
        /// being uploaded: their leases of such genomes go out without bases.
        reading_files: std::sync::Mutex<std::collections::HashMap<String, bool>>,
    },
    /// A worker on the master's host reading the master's genome files in place.
    Files(Arc<dyn GenomeFiles>),
}

/// The store's genome files as a worker on the master's host reads them.
#[async_trait]
pub trait GenomeFiles: Send + Sync {
    /// The files' directory id, which the worker's lease requests name: the master sends
    /// ranges without their bases only to a worker naming its own.
    fn id(&self) -> u128;
    /// `len` bases from `offset` of the genome kept under storage id `storage`, complete or
    /// still being uploaded.
    async fn read(&self, storage: &str, offset: u64, len: u64) -> BackendResult<Bytes>;
}

/// A queue whose leases of genome-referencing tasks arrive with their bases read from the store.
/// Every other call passes straight through. The master wraps its queue in one; a worker on the
/// master's host wraps its leases in another, reading the store's files
/// ([`GenomeQueue::reading_files`]) for the leases the master sent without bases.
pub struct GenomeQueue<Q: ?Sized = dyn MasterQueue> {
    inner: Arc<Q>,
    source: Source,
}

impl<Q: ?Sized> GenomeQueue<Q> {
    /// Wraps `inner`; genome ranges are read from `store`.
    pub fn new(inner: Arc<Q>, store: Arc<dyn GenomeStore>) -> Self {
        Self {
            inner,
            source: Source::Store {
                store,
                reading_files: Default::default(),
            },
        }
    }

    /// Wraps a worker's leases: ranges that arrive without their bases are read from `dir`.
    pub fn reading_files(inner: Arc<Q>, files: Arc<dyn GenomeFiles>) -> Self {
        Self {
            inner,
            source: Source::Files(files),
        }
    }

    /// Notes whether `worker` reads this store's files itself.
    fn note_offer(&self, worker: &str, offer: &WorkerOffer) {
        if let Source::Store {
            store,
            reading_files,
        } = &self.source
        {
            let mut workers = reading_files.lock().unwrap_or_else(|e| e.into_inner());
            if offer.genome_files.is_some() && offer.genome_files == store.files_id() {
                if workers.get(worker) != Some(&offer.genome_partials) {
                    workers.insert(worker.to_string(), offer.genome_partials);
                }
            } else {
                workers.remove(worker);
            }
        }
    }

    /// The bases `reference` names, or `None` when `worker` reads them itself.
    async fn read(&self, worker: &str, reference: &GenomeRef) -> BackendResult<Option<Bytes>> {
        let GenomeRef {
            storage,
            offset,
            len,
        } = reference;
        match &self.source {
            Source::Files(files) => files.read(storage, *offset, *len).await.map(Some),
            Source::Store {
                store,
                reading_files,
            } => {
                let reads_itself = reading_files
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(worker)
                    .copied();
                if let Some(reads_partials) = reads_itself {
                    if reads_partials && store.writing_in_files(storage)
                        || store.in_files(storage).await?
                    {
                        return Ok(None);
                    }
                }
                store.read_stored(storage, *offset, *len).await.map(Some)
            }
        }
    }
}

impl<Q: Leases + ?Sized> GenomeQueue<Q> {
    /// Fills a lease's input from its genome reference. A genome that cannot be read fails this
    /// delivery (nack, so a genome deleted under a task fails its job after the retries) and
    /// no lease is returned.
    async fn fill(&self, mut lease: Lease) -> BackendResult<Option<Lease>> {
        let Some(reference) = GenomeRef::from_spec(&lease.spec) else {
            return Ok(Some(lease));
        };
        if !lease.data.is_empty() {
            return Ok(Some(lease));
        }
        match self.read(&lease.worker, &reference).await {
            Ok(bases) => {
                lease.data = bases.unwrap_or_default();
                Ok(Some(lease))
            }
            // The backend is out of reach: the lease stays this worker's, and the worker, unsure
            // what it holds, names its leases in hand once it reconnects and the backend returns
            // this one (see `Leases::release_unheld`) without counting a failed attempt.
            Err(err @ BackendError::Unavailable(_)) => Err(err),
            Err(err) => {
                let reason = format!(
                    "cannot read bases {}..{} of stored genome copy {}: {err}",
                    reference.offset,
                    reference.offset + reference.len,
                    reference.storage
                );
                tracing::warn!(component = "backend", job = %lease.id.job, chunk = lease.id.chunk, %reason, "task input unavailable");
                self.inner.nack(&lease, &reason).await?;
                Ok(None)
            }
        }
    }
}

#[async_trait]
impl<Q: Leases + ?Sized> Leases for GenomeQueue<Q> {
    async fn lease(&self, worker: &str, wait: Duration) -> BackendResult<Option<Lease>> {
        match self.inner.lease(worker, wait).await? {
            Some(lease) => self.fill(lease).await,
            None => Ok(None),
        }
    }

    async fn set_offer(&self, worker: &str, mut offer: WorkerOffer) -> BackendResult<()> {
        self.note_offer(worker, &offer);
        if let Source::Files(files) = &self.source {
            // The worker reads this directory, uploads in progress included: its leases say so.
            offer.genome_files = Some(files.id());
            offer.genome_partials = true;
        }
        self.inner.set_offer(worker, offer).await
    }

    async fn extend(&self, lease: &Lease) -> BackendResult<bool> {
        self.inner.extend(lease).await
    }

    async fn extend_with_output(&self, lease: &Lease, piece: &OutputPiece) -> BackendResult<bool> {
        self.inner.extend_with_output(lease, piece).await
    }

    async fn ack(&self, lease: &Lease) -> BackendResult<()> {
        self.inner.ack(lease).await
    }

    async fn nack(&self, lease: &Lease, error: &str) -> BackendResult<NackOutcome> {
        self.inner.nack(lease, error).await
    }

    async fn release_unheld(&self, worker: &str, held: &[String]) -> BackendResult<usize> {
        self.inner.release_unheld(worker, held).await
    }

    async fn lease_batch(
        &self,
        worker: &str,
        max: usize,
        wait: Duration,
    ) -> BackendResult<Vec<Lease>> {
        let leased = self.inner.lease_batch(worker, max, wait).await?;
        let mut filled = Vec::with_capacity(leased.len());
        let mut leased = leased.into_iter();
        while let Some(lease) = leased.next() {
            match self.fill(lease).await {
                Ok(Some(lease)) => filled.push(lease),
                Ok(None) => {}
                // Out of reach: the worker's reconnect returns the whole batch.
                Err(err @ BackendError::Unavailable(_)) => return Err(err),
                Err(err) => {
                    // The backend failed mid-batch: the batch's other leases go back (when it
                    // answers) rather than wait out their visibility timeout.
                    for lease in filled.iter().chain(leased.as_slice()) {
                        let _ = self
                            .inner
                            .nack(lease, "its batch could not be filled")
                            .await;
                    }
                    return Err(err);
                }
            }
        }
        Ok(filled)
    }

    async fn complete_batch(
        &self,
        results: &dyn ResultSink,
        items: &[Completion],
    ) -> BackendResult<Vec<CompletionOutcome>> {
        self.inner.complete_batch(results, items).await
    }
}

#[async_trait]
impl<Q: QueueAdmin + ?Sized> QueueAdmin for GenomeQueue<Q> {
    async fn enqueue(&self, tasks: Vec<NewTask>) -> BackendResult<()> {
        self.inner.enqueue(tasks).await
    }

    async fn reclaim_worker(&self, worker: &str) -> BackendResult<usize> {
        self.inner.reclaim_worker(worker).await
    }

    async fn oldest_waiting(&self) -> BackendResult<Vec<(crate::backend::Priority, f64)>> {
        self.inner.oldest_waiting().await
    }

    async fn reclaim_expired(&self) -> BackendResult<usize> {
        self.inner.reclaim_expired().await
    }

    async fn cancel_job(&self, job: &str) -> BackendResult<usize> {
        self.inner.cancel_job(job).await
    }

    async fn cancel_if_unstarted(&self, job: &str) -> BackendResult<bool> {
        self.inner.cancel_if_unstarted(job).await
    }

    async fn recent_workers(&self, window: Duration) -> BackendResult<Option<Vec<WorkerId>>> {
        self.inner.recent_workers(window).await
    }
    async fn command_slots_live(&self, window: Duration) -> BackendResult<Option<u32>> {
        self.inner.command_slots_live(window).await
    }

    async fn live_output(&self, job: &str, chunk: u32) -> BackendResult<Option<LiveOutput>> {
        self.inner.live_output(job, chunk).await
    }

    async fn live_tasks(&self, job: &str) -> BackendResult<Vec<LiveOutput>> {
        self.inner.live_tasks(job).await
    }
}

#[async_trait]
impl<Q: WorkerIds + ?Sized> WorkerIds for GenomeQueue<Q> {
    async fn hold_worker_id(&self, worker: &str, holder: &str) -> BackendResult<bool> {
        self.inner.hold_worker_id(worker, holder).await
    }

    async fn release_worker_id(&self, worker: &str, holder: &str) -> BackendResult<()> {
        self.inner.release_worker_id(worker, holder).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_round_trips_through_a_spec_and_bad_hashes_are_ignored() {
        let reference = GenomeRef {
            storage: "ab".repeat(32),
            offset: 7,
            len: 9,
        };
        let mut spec = serde_json::json!({ "record": 0 });
        reference.attach(&mut spec);
        assert_eq!(spec["genome"]["offset"], 7);
        assert_eq!(GenomeRef::from_spec(&spec), Some(reference));
        spec["genome"]["storage"] = "../../etc/passwd".into();
        assert_eq!(GenomeRef::from_spec(&spec), None);
        assert!(!is_genome_hash(&"AB".repeat(32)));
        assert!(!is_genome_hash("abc"));
    }

    #[test]
    fn a_reference_queued_by_an_earlier_version_names_its_storage_by_hash() {
        let spec =
            serde_json::json!({ "genome": { "hash": "cd".repeat(32), "offset": 3, "len": 4 } });
        let reference = GenomeRef::from_spec(&spec).expect("an old reference still reads");
        assert_eq!(reference.storage, "cd".repeat(32));
        assert_eq!((reference.offset, reference.len), (3, 4));
    }
}
