//! The Lua scripts behind every multi-key step, so each step is atomic in Redis. Queue scripts
//! share helpers (`lua/common.lua`), and the store scripts that record progress share
//! `lua/settle.lua`; both are prepended at compile time.

use ::redis::Script;

/// Prepends the shared helpers to a queue script.
macro_rules! queue_script {
    ($file:literal) => {
        concat!(include_str!("lua/common.lua"), include_str!($file))
    };
}

/// Prepends the queue helpers, the result fence and the status-settling helper to a script
/// that fences a result's writer.
macro_rules! fenced_script {
    ($file:literal) => {
        concat!(
            include_str!("lua/common.lua"),
            include_str!("lua/fence.lua"),
            include_str!("lua/settle.lua"),
            include_str!($file)
        )
    };
}

/// Prepends what storing results takes (`lua/results.lua`, after the fence and the settling
/// helper) to a script that stores them: one result (`put_result.lua`) or a batch settled with
/// its acks (`complete.lua`), both in the same layout.
macro_rules! results_script {
    ($file:literal) => {
        concat!(
            include_str!("lua/common.lua"),
            include_str!("lua/fence.lua"),
            include_str!("lua/settle.lua"),
            include_str!("lua/results.lua"),
            include_str!($file)
        )
    };
}

/// Prepends the status-settling helper to a store script.
macro_rules! settling_script {
    ($file:literal) => {
        concat!(include_str!("lua/settle.lua"), include_str!($file))
    };
}

/// Every script, hashed once per backend.
pub(super) struct Scripts {
    pub enqueue: Script,
    pub lease: Script,
    pub extend: Script,
    pub ack: Script,
    pub nack: Script,
    pub reclaim_worker: Script,
    pub release_unheld: Script,
    pub reclaim_expired: Script,
    pub cancel: Script,
    pub cancel_unstarted: Script,
    pub create_job: Script,
    pub accept_job: Script,
    pub update_spec: Script,
    pub set_status: Script,
    pub put_result: Script,
    pub stage_part: Script,
    pub complete: Script,
    pub mark_ends_logged: Script,
    pub copy_answer: Script,
    pub live_append: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Scripts {
            enqueue: Script::new(queue_script!("lua/enqueue.lua")),
            lease: Script::new(queue_script!("lua/lease.lua")),
            extend: Script::new(queue_script!("lua/extend.lua")),
            ack: Script::new(queue_script!("lua/ack.lua")),
            nack: Script::new(queue_script!("lua/nack.lua")),
            reclaim_worker: Script::new(queue_script!("lua/reclaim_worker.lua")),
            release_unheld: Script::new(queue_script!("lua/release_unheld.lua")),
            reclaim_expired: Script::new(queue_script!("lua/reclaim_expired.lua")),
            cancel: Script::new(queue_script!("lua/cancel.lua")),
            cancel_unstarted: Script::new(queue_script!("lua/cancel_unstarted.lua")),
            create_job: Script::new(include_str!("lua/create_job.lua")),
            accept_job: Script::new(settling_script!("lua/accept_job.lua")),
            update_spec: Script::new(include_str!("lua/update_spec.lua")),
            set_status: Script::new(include_str!("lua/set_status.lua")),
            put_result: Script::new(results_script!("lua/put_result.lua")),
            stage_part: Script::new(fenced_script!("lua/stage_part.lua")),
            complete: Script::new(results_script!("lua/complete.lua")),
            mark_ends_logged: Script::new(include_str!("lua/mark_ends_logged.lua")),
            copy_answer: Script::new(include_str!("lua/copy_answer.lua")),
            live_append: Script::new(include_str!("lua/live_append.lua")),
        }
    }
}
