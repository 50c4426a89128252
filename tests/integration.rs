//! Every integration test in one binary, as one crate: one build and one link for the whole suite,
//! shared helpers in `support/`, and each file a module named for its subject. The gzip-bomb test
//! has its own binary, because it measures the peak memory of its own process.

mod support;

mod alert_delivery;
mod backend_conformance;
mod batch_drop_dir;
mod batch_limits;
mod batch_load;
#[cfg(feature = "bench")]
mod bench_kinds;
mod bounded_resources;
mod cancel_stops_tasks;
mod cli_completions;
mod cli_messages;
mod client_reconnect;
mod collector_attacks;
mod command_attacks;
mod command_inputs;
mod command_scheduling;
mod command_tasks;
mod dashboard_browser;
mod docker_compose;
mod drop_dir_attacks;
mod first_upload;
mod fuzz_batch;
mod fuzz_parsers;
mod genome_export;
mod genome_packing;
mod genome_reuse;
mod grid_e2e;
mod grid_protocol;
mod grid_up;
mod http_api;
mod http_attacks;
mod http_writes;
mod job_figures;
mod julia_jobs;
mod julia_kernel;
mod layering;
mod lease_wait;
mod many_records;
mod output_cap;
mod particles_jobs;
mod particles_kernel;
mod prometheus_files;
mod queue_backlog;
mod rate_limits;
mod redis_backend;
mod redis_grid;
mod redis_partition;
mod redis_tls;
mod resubmit_interrupted;
mod result_cache;
mod result_fencing;
mod result_size;
mod retention;
mod search_cli;
mod search_kernel;
mod search_mismatch;
mod search_mismatch_cli;
mod search_pattern_groups;
mod search_positioned;
mod search_speedpaths;
mod security;
mod task_records;
#[cfg(feature = "tui")]
mod task_view;
mod tls;
#[cfg(feature = "tui")]
mod top_tmux;
mod twobit;
mod up_autoscale;
mod up_supervisor;
mod watchman_collector;
mod watchman_demo;
mod watchman_hostloss;
mod watchman_reconcile;
mod watchman_recovery;
mod work_caps;
mod worker_prefetch;
mod worker_reconnect;
mod workers_forget;
