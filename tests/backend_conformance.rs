//! One conformance suite for every backend: the same test functions run against the embedded
//! backend, against Redis (a real `redis-server` per test, on a free port), and against the
//! embedded backend as a worker reaches it: through a real master on a free port, with
//! `RemoteBackend` making the worker's calls over the protocol. A backend that passes them
//! delivers tasks at least once, stores results exactly once, and can stand in for the other.
//!
//! Each case takes a [`Subject`]. `conformance_suite!` lists the cases once, grouped by the
//! capability trait each one exercises (`leases`, `queue_admin`, `result_sink`, `result_store`,
//! `job_store`, `result_cache`, `monitor_store`, `stored_objects`, `first_uploads`), with the visibility timeout
//! each one needs; one line of it wires a backend in.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use gridwatch::backend::embedded::{EmbeddedBackend, EmbeddedConfig, GenomeDir};
use gridwatch::backend::genome::GenomeFiles;
use gridwatch::backend::redis::{RedisBackend, RedisOptions};
use gridwatch::backend::{GenomeStore, InputSource, MasterQueue, MasterStore};

mod through_master;

/// A backend under test, and whatever keeps it alive (a server process, a temp dir).
pub struct Subject {
    queue: Arc<dyn MasterQueue>,
    store: Arc<dyn MasterStore>,
    /// Where the master stores genomes and command inputs.
    genomes: Arc<dyn GenomeStore>,
    /// Where a worker reads command inputs.
    inputs: Arc<dyn InputSource>,
    /// The stored genomes' files as a worker on the master's host reads them, for a backend
    /// that keeps genomes as local files.
    files: Option<Arc<dyn GenomeFiles>>,
    _keep_alive: Box<dyn Any + Send + Sync>,
}

/// Visibility timeout for cases that never let a lease expire.
const LONG: Duration = Duration::from_secs(120);
/// Visibility timeout for cases that wait for a lease to expire.
const SHORT: Duration = Duration::from_millis(300);
/// Visibility timeout for the lease-extension case: long enough that a loaded machine still
/// extends in time, short enough to expire within the test.
const EXTENDABLE: Duration = Duration::from_millis(1500);

/// One test per case, each on a fresh subject from `$subject` (an async fn of the visibility
/// timeout).
macro_rules! instantiate {
    ($subject:path; $($case:ident: $visibility:expr),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let subject = $subject($visibility).await;
                suite::$case(&subject).await;
            }
        )*
    };
}

/// Every case, grouped by the capability it exercises, for the backend module `$backend` whose
/// subjects come from `$subject`.
macro_rules! conformance_suite {
    ($backend:ident, $subject:path) => {
        mod $backend {
            use super::*;

            /// `Leases`: delivery, acks, nacks, retries, extension, batches, worker offers.
            mod leases {
                use super::*;
                instantiate! { $subject;
                    leased_task_is_hidden_until_acked: LONG,
                    lease_waits_for_a_task_enqueued_later: LONG,
                    lease_on_an_empty_queue_times_out: LONG,
                    higher_priority_is_leased_first: LONG,
                    nack_retries_then_dead_letters_and_fails_the_job: LONG,
                    tasks_keep_their_kind_through_retries_and_reclaims: LONG,
                    release_unheld_returns_only_the_leases_the_worker_does_not_name: LONG,
                    extended_lease_outlives_the_visibility_timeout: EXTENDABLE,
                    crashing_deliveries_past_max_attempts_dead_letter: LONG,
                    concurrent_workers_get_each_task_exactly_once: LONG,
                    batch_lease_returns_distinct_tasks_in_priority_order: LONG,
                    batch_leases_expire_independently: EXTENDABLE,
                    batch_result_with_one_stale_token_refuses_only_that_item: LONG,
                    batch_acked_tasks_never_come_back: LONG,
                    a_task_taking_more_slots_than_a_worker_has_waits_for_a_wider_one: LONG,
                    a_task_set_aside_for_a_wider_worker_is_not_reclaimed_as_expired: SHORT,
                    a_failed_command_task_is_retried_on_another_worker_first: LONG,
                    a_running_task_s_output_tail_is_kept_while_held_and_dropped_when_it_ends: LONG,
                }
            }

            /// `QueueAdmin`: reclaims, expiry sweeps, cancels.
            mod queue_admin {
                use super::*;
                instantiate! { $subject;
                    reclaim_worker_returns_only_that_workers_leases: LONG,
                    stale_lease_is_ignored_after_reclaim: LONG,
                    fresh_lease_is_not_reclaimed_as_expired: LONG,
                    expired_lease_is_reclaimed_for_another_worker: SHORT,
                    cancel_removes_queued_tasks_and_refuses_late_results: LONG,
                    cancel_if_unstarted_spares_a_job_whose_task_is_leased: LONG,
                    cancel_if_unstarted_counts_a_returned_or_reclaimed_lease_as_started: LONG,
                    batch_leases_of_a_dead_worker_are_reclaimed: LONG,
                }
            }

            /// `ResultSink`: results fenced by the lease, first write wins, large ones in parts.
            mod result_sink {
                use super::*;
                instantiate! { $subject;
                    first_chunk_result_wins: LONG,
                    results_are_taken_only_from_the_lease_holder: LONG,
                    a_lease_lost_to_a_reclaim_cannot_store_its_result: LONG,
                    large_results_are_stored_in_parts_that_appear_together: LONG,
                }
            }

            /// `ResultStore`: progress, task records and times read back from stored results.
            mod result_store {
                use super::*;
                instantiate! { $subject;
                    progress_is_derived_from_stored_results: LONG,
                    stored_results_carry_their_task_record: LONG,
                    task_times_count_first_results_per_worker_and_kind: LONG,
                }
            }

            /// `JobStore`: job records, status, listings and pruning.
            mod job_store {
                use super::*;
                instantiate! { $subject;
                    status_follows_stored_results: LONG,
                    results_before_accept_complete_the_job_on_accept: LONG,
                    create_job_is_idempotent: LONG,
                    jobs_are_created_and_accepted_in_groups_as_one_by_one: LONG,
                    update_job_spec_replaces_the_spec: LONG,
                    finished_job_keeps_its_status: LONG,
                    jobs_are_listed_newest_first: LONG,
                    job_summaries_list_progress_without_specs: LONG,
                    prune_deletes_only_finished_jobs_past_the_cutoff: LONG,
                }
            }

            /// `ResultCache`: completed jobs answering identical later ones.
            mod result_cache {
                use super::*;
                instantiate! { $subject;
                    a_completed_job_answers_its_key_with_a_copy_of_its_results: LONG,
                    failed_cancelled_or_running_jobs_never_answer: LONG,
                }
            }

            /// `GenomeStore` and `InputSource`: genomes and command inputs stored once.
            mod stored_objects {
                use super::*;
                instantiate! { $subject;
                    a_command_input_is_stored_byte_for_byte_and_read_in_pieces: LONG,
                    reading_what_is_not_a_stored_input_fails: LONG,
                    genomes_and_inputs_are_listed_with_their_kinds: LONG,
                    a_genome_reads_back_exactly_from_any_range: LONG,
                }
            }

            /// `GenomeStore` and `GenomeWriter`: a first upload read while it is written.
            mod first_uploads {
                use super::*;
                instantiate! { $subject;
                    a_range_reads_by_storage_id_while_its_upload_is_in_progress: LONG,
                    a_spare_copy_is_deleted_once_its_job_ends_and_the_kept_copy_still_reads: LONG,
                    a_discarded_upload_leaves_nothing: LONG,
                }
            }

            /// `MonitorSink` and `MonitorStore`: alerts and worker views.
            mod monitor_store {
                use super::*;
                instantiate! { $subject;
                    alerts_are_returned_newest_first: LONG,
                    worker_metrics_expire_after_their_ttl: LONG,
                }
            }
        }
    };
}

conformance_suite!(embedded_backend, embedded_subject);
conformance_suite!(redis_backend, redis_subject);
conformance_suite!(remote_backend, through_master::subject);

/// A fresh embedded backend in its own temporary data directory.
async fn embedded_subject(visibility_timeout: Duration) -> Subject {
    let dir = tempfile::tempdir().expect("temp data dir");
    let config = EmbeddedConfig {
        visibility_timeout,
        ..EmbeddedConfig::default()
    };
    let backend =
        Arc::new(EmbeddedBackend::open(dir.path(), config).expect("opening the embedded backend"));
    let files = GenomeDir::open(&gridwatch::backend::embedded::genome_dir(dir.path()))
        .expect("the stored genomes' directory");
    Subject {
        queue: backend.clone(),
        store: backend.clone(),
        genomes: backend.clone(),
        inputs: backend,
        files: Some(Arc::new(files)),
        _keep_alive: Box::new(dir),
    }
}

/// A fresh `redis-server` and a backend connected to it.
async fn redis_subject(visibility_timeout: Duration) -> Subject {
    let server = tokio::task::spawn_blocking(crate::support::redis::RedisServer::start)
        .await
        .expect("starting redis-server");
    let options = RedisOptions {
        visibility_timeout,
        ..RedisOptions::default()
    };
    let backend = Arc::new(
        RedisBackend::connect(&server.url(), options)
            .await
            .expect("connecting to the test redis-server"),
    );
    Subject {
        queue: backend.clone(),
        store: backend.clone(),
        genomes: backend.clone(),
        inputs: backend,
        files: None,
        _keep_alive: Box::new(server),
    }
}

mod batches;
mod delivery;
mod fencing;
mod first_uploads;
mod fixtures;
mod live_output;
mod offers;
mod records;
mod result_cache;
mod storage;
mod stored_objects;

/// Every case, by name, for the instantiating macros.
mod suite {
    pub use super::batches::*;
    pub use super::delivery::*;
    pub use super::fencing::*;
    pub use super::first_uploads::*;
    pub use super::live_output::*;
    pub use super::offers::*;
    pub use super::records::*;
    pub use super::result_cache::*;
    pub use super::storage::*;
    pub use super::stored_objects::*;
}
