//! One conformance suite for every backend: the same test functions run against the embedded
//! backend, against Redis (a real `redis-server` per test, on a free port), and against the
//! embedded backend as a worker reaches it: through a real master on a free port, with
//! `RemoteBackend` making the worker's calls over the protocol. A backend that passes them
//! delivers tasks at least once, stores results exactly once, and can stand in for the other.
//!
//! Each case takes a [`Subject`]; `conformance_cases!` lists the cases once, with the visibility
//! timeout each one needs, and each backend module instantiates them all.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use gridwatch::backend::embedded::{EmbeddedBackend, EmbeddedConfig};
use gridwatch::backend::redis::{RedisBackend, RedisOptions};
use gridwatch::backend::{Queue, Store};

mod through_master;

/// A backend under test, and whatever keeps it alive (a server process, a temp dir).
pub struct Subject {
    queue: Arc<dyn Queue>,
    store: Arc<dyn Store>,
    _keep_alive: Box<dyn Any + Send + Sync>,
}

/// Visibility timeout for cases that never let a lease expire.
const LONG: Duration = Duration::from_secs(120);
/// Visibility timeout for cases that wait for a lease to expire.
const SHORT: Duration = Duration::from_millis(300);
/// Visibility timeout for the lease-extension case: long enough that a loaded machine still
/// extends in time, short enough to expire within the test.
const EXTENDABLE: Duration = Duration::from_millis(1500);

macro_rules! conformance_cases {
    ($instantiate:ident) => {
        $instantiate! {
            leased_task_is_hidden_until_acked: LONG,
            lease_waits_for_a_task_enqueued_later: LONG,
            lease_on_an_empty_queue_times_out: LONG,
            higher_priority_is_leased_first: LONG,
            nack_retries_then_dead_letters_and_fails_the_job: LONG,
            tasks_keep_their_kind_through_retries_and_reclaims: LONG,
            reclaim_worker_returns_only_that_workers_leases: LONG,
            release_unheld_returns_only_the_leases_the_worker_does_not_name: LONG,
            stale_lease_is_ignored_after_reclaim: LONG,
            fresh_lease_is_not_reclaimed_as_expired: LONG,
            expired_lease_is_reclaimed_for_another_worker: SHORT,
            extended_lease_outlives_the_visibility_timeout: EXTENDABLE,
            crashing_deliveries_past_max_attempts_dead_letter: LONG,
            first_chunk_result_wins: LONG,
            progress_is_derived_from_stored_results: LONG,
            status_follows_stored_results: LONG,
            results_before_accept_complete_the_job_on_accept: LONG,
            cancel_removes_queued_tasks_and_refuses_late_results: LONG,
            cancel_if_unstarted_spares_a_job_whose_task_is_leased: LONG,
            cancel_if_unstarted_counts_a_returned_or_reclaimed_lease_as_started: LONG,
            create_job_is_idempotent: LONG,
            update_job_spec_replaces_the_spec: LONG,
            finished_job_keeps_its_status: LONG,
            jobs_are_listed_newest_first: LONG,
            alerts_are_returned_newest_first: LONG,
            worker_metrics_expire_after_their_ttl: LONG,
            concurrent_workers_get_each_task_exactly_once: LONG,
            results_are_taken_only_from_the_lease_holder: LONG,
            a_lease_lost_to_a_reclaim_cannot_store_its_result: LONG,
            large_results_are_stored_in_parts_that_appear_together: LONG,
            job_summaries_list_progress_without_specs: LONG,
            stored_results_carry_their_task_record: LONG,
            task_times_count_first_results_per_worker_and_kind: LONG,
            prune_deletes_only_finished_jobs_past_the_cutoff: LONG,
            batch_lease_returns_distinct_tasks_in_priority_order: LONG,
            batch_leases_expire_independently: EXTENDABLE,
            batch_result_with_one_stale_token_refuses_only_that_item: LONG,
            batch_acked_tasks_never_come_back: LONG,
            batch_leases_of_a_dead_worker_are_reclaimed: LONG,
        }
    };
}

macro_rules! instantiate_for_embedded {
    ($($case:ident: $visibility:expr),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let subject = embedded_subject($visibility);
                suite::$case(&subject).await;
            }
        )*
    };
}

macro_rules! instantiate_for_redis {
    ($($case:ident: $visibility:expr),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let subject = redis_subject($visibility).await;
                suite::$case(&subject).await;
            }
        )*
    };
}

/// A fresh embedded backend in its own temporary data directory.
fn embedded_subject(visibility_timeout: Duration) -> Subject {
    let dir = tempfile::tempdir().expect("temp data dir");
    let config = EmbeddedConfig {
        visibility_timeout,
        ..EmbeddedConfig::default()
    };
    let backend =
        Arc::new(EmbeddedBackend::open(dir.path(), config).expect("opening the embedded backend"));
    Subject {
        queue: backend.clone(),
        store: backend,
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
        store: backend,
        _keep_alive: Box::new(server),
    }
}

mod embedded_backend {
    use super::*;
    conformance_cases!(instantiate_for_embedded);
}

mod redis_backend {
    use super::*;
    conformance_cases!(instantiate_for_redis);
}

macro_rules! instantiate_through_master {
    ($($case:ident: $visibility:expr),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let subject = through_master::subject($visibility).await;
                suite::$case(&subject).await;
            }
        )*
    };
}

mod remote_backend {
    use super::*;
    conformance_cases!(instantiate_through_master);
}

mod batches;
mod delivery;
mod fencing;
mod fixtures;
mod records;
mod storage;

/// Every case, by name, for the instantiating macros.
mod suite {
    pub use super::batches::*;
    pub use super::delivery::*;
    pub use super::fencing::*;
    pub use super::records::*;
    pub use super::storage::*;
}
