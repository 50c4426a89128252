//! Every Redis key and name the backend uses, in one place. Job and worker keys are readable
//! words (`job:{id}:status`, `worker:{id}:metrics`, `alerts:history`), so that `redis-cli` shows
//! the state of the grid without any tool.
//!
//! The Lua scripts in `lua/` build the `job:{id}:*` and `worker:{id}:*` keys of the jobs and
//! workers they meet while running (`lua/common.lua`, `job_key` and `worker_key`); keep the two
//! in step.

use crate::backend::Priority;

/// Consumer group shared by every worker; each worker is a consumer named after its id.
pub const GROUP: &str = "workers";

/// Consumer that reclaim steps claim entries to, just long enough to re-add them.
pub const RECLAIMER: &str = "gridwatch:reclaimer";

/// One stream per priority, read high before medium before low.
pub const TASK_STREAMS: [&str; 3] = ["tasks:high", "tasks:medium", "tasks:low"];

/// Command tasks' streams, one per priority, read only by workers that run commands: a worker
/// that does not never leases one (so never hands one back, which would use up its attempts).
/// Stream indexes 4 to 6 in lease tokens and `job:{id}:tasks`; `lua/common.lua` names them too.
pub const COMMAND_STREAMS: [&str; 3] = [
    "tasks:commands:high",
    "tasks:commands:medium",
    "tasks:commands:low",
];

/// Every task stream by its 1-based stream index: [`TASK_STREAMS`], then [`COMMAND_STREAMS`].
pub const ALL_STREAMS: [&str; 6] = [
    TASK_STREAMS[0],
    TASK_STREAMS[1],
    TASK_STREAMS[2],
    COMMAND_STREAMS[0],
    COMMAND_STREAMS[1],
    COMMAND_STREAMS[2],
];

/// Hash of the worker ids that said they run command tasks to the slots each offers; live ones
/// are those also recently in [`WORKERS_SEEN`].
pub const COMMAND_SLOTS: &str = "workers:command_slots";

/// Tasks that used up their attempts, with the job, chunk, attempt and last error.
pub const DEAD_LETTER_STREAM: &str = "tasks:dead";

/// Sorted set of job ids scored by creation time, for listing jobs newest first.
pub const JOBS_INDEX: &str = "jobs";

/// Set of worker ids that stored metrics; members whose metrics expired are pruned on read.
pub const WORKERS_INDEX: &str = "workers";

/// Capped list of alerts, newest first (`LRANGE alerts:history 0 -1`).
pub const ALERT_HISTORY: &str = "alerts:history";

/// Hash of refused results by reason (`not_holder`, `no_such_task`, `out_of_range`), counted by
/// the scripts that refuse them, whoever called.
pub const RESULTS_REFUSED: &str = "results:refused";

/// How long a partly uploaded result's staged parts are kept if its commit never comes.
pub const STAGING_TTL_MS: u64 = 60 * 60 * 1000;

/// Dead-letter entries kept (approximately) before the oldest are trimmed.
pub const DEAD_LETTER_CAP: usize = 10_000;

/// Stream holding tasks of `priority`.
pub fn task_stream(priority: Priority) -> &'static str {
    TASK_STREAMS[priority_index(priority) - 1]
}

/// 1-based position of `priority` among [`TASK_STREAMS`] (Lua arrays start at 1).
pub fn priority_index(priority: Priority) -> usize {
    match priority {
        Priority::High => 1,
        Priority::Medium => 2,
        Priority::Low => 3,
    }
}

/// 1-based stream index of a task of `kind` at `priority` among [`ALL_STREAMS`].
pub fn stream_index(priority: Priority, kind: &str) -> usize {
    // The command kind's tag; the backend sits below the job kinds and names it by its word.
    let offset = if kind == "command" {
        TASK_STREAMS.len()
    } else {
        0
    };
    priority_index(priority) + offset
}

/// The priority of the stream at 1-based `stream_index` among [`ALL_STREAMS`].
pub fn stream_priority(stream_index: usize) -> Priority {
    match (stream_index + 2) % 3 {
        0 => Priority::High,
        1 => Priority::Medium,
        _ => Priority::Low,
    }
}

/// `job:{id}:status`: the status as a lowercase word (`pending`, `processing`, ...).
pub fn job_status(job: &str) -> String {
    format!("job:{job}:status")
}

/// `job:{id}:info`: hash of the job's immutable description (kind, spec, created_at, summary,
/// priority) plus its error and finish time once known.
pub fn job_info(job: &str) -> String {
    format!("job:{job}:info")
}

/// `job:{id}:stats`: hash with `total_chunks`, `chunks_processed` and `total_matches`, the last two
/// moved only by the script that stores a chunk's first result, and `redeliveries`, the deliveries
/// of its tasks beyond their first, counted by the lease script.
pub fn job_stats(job: &str) -> String {
    format!("job:{job}:stats")
}

/// `job:{id}:results`: hash chunk index → the stored result's header JSON (chunk, matches,
/// worker, parts), first write wins. Results stored before parts existed carry their payload
/// inline instead of `parts`.
pub fn job_results(job: &str) -> String {
    format!("job:{job}:results")
}

/// `job:{id}:result:{chunk}`: list of the stored result's payload parts (its JSON text, cut).
pub fn job_result_parts(job: &str, chunk: u32) -> String {
    format!("job:{job}:result:{chunk}")
}

/// `job:{id}:staging:{chunk}:{entry id}`: list of parts one delivery uploaded before its commit,
/// renamed to [`job_result_parts`] by the commit that stores the result.
pub fn job_result_staging(job: &str, chunk: u32, entry_id: &str) -> String {
    format!("job:{job}:staging:{chunk}:{entry_id}")
}

/// `job:{id}:fences`: hash live delivery (`{stream index}/{entry id}`) → the random nonce its
/// lease carries; a result, ack, extension or nack must present it. Beside it,
/// `{stream index}/{entry id}:max` holds the entry's `max_matches` ('' if it has none), so a
/// result is fenced without reading the stream entry back.
pub fn job_fences(job: &str) -> String {
    format!("job:{job}:fences")
}

/// `job:{id}:tasks`: hash chunk index → the live stream entry of that chunk
/// (`{priority index}/{entry id}`); a field disappears when the chunk is acked.
pub fn job_tasks(job: &str) -> String {
    format!("job:{job}:tasks")
}

/// `job:{id}:live:{chunk}`: hash of a running command task's output tail (`worker`, `token`,
/// `started_at`, `updated_at`, `out_off`, `out`, `err_off`, `err`), expiring unless extended.
pub fn job_live(job: &str, chunk: u32) -> String {
    format!("job:{job}:live:{chunk}")
}

/// `job:{id}:live`: set of the chunks that have a [`job_live`] tail, expiring with them.
pub fn job_live_index(job: &str) -> String {
    format!("job:{job}:live")
}

/// `job:{id}:chunks`: hash chunk index → the chunk's input bytes, freed on ack or cancel.
pub fn job_chunks(job: &str) -> String {
    format!("job:{job}:chunks")
}

/// `cache:{key}`: set of the jobs recorded under a result cache key (a hex digest the job's kind
/// computes); each job's `job:{id}:info` names its key in `cache_key`, so deleting the job
/// removes it from the set. Members no longer completed are dropped when the set is read.
pub fn result_cache(key: &str) -> String {
    format!("cache:{key}")
}

/// `worker:{id}:owner`: the nonce of the live process holding this worker id, with a TTL.
pub fn worker_owner(worker: &str) -> String {
    format!("worker:{worker}:owner")
}

/// Sorted set worker id → Redis time (ms) of its last id claim renewal: the live workers, idle
/// ones included (a worker blocked waiting for work leases nothing for a while, yet is there).
pub const WORKERS_SEEN: &str = "workers:seen";

/// Set of worker ids that completed a task, for listing task counts and times.
pub const TASK_WORKERS_INDEX: &str = "workers:tasks";

/// `worker:{id}:tasks_completed`: hash job kind → tasks of that kind the worker completed.
pub fn worker_tasks_completed(worker: &str) -> String {
    format!("worker:{worker}:tasks_completed")
}

/// `worker:{id}:task_times:{kind}`: list of the worker's recent task times of that kind in
/// seconds, newest first, capped.
pub fn worker_task_times(worker: &str, kind: &str) -> String {
    format!("worker:{worker}:task_times:{kind}")
}

/// `worker:{id}:metrics`: the worker's latest metrics JSON, with a TTL.
pub fn worker_metrics(worker: &str) -> String {
    format!("worker:{worker}:metrics")
}

/// Set of the hashes of stored genomes.
pub const GENOMES_INDEX: &str = "genomes";

/// Bytes per block of an object kept byte for byte (a command input, or a genome stored before
/// genomes were packed): a few MiB, so one value never nears Redis's limits and a task's range
/// is read with one `GETRANGE` or two.
pub const GENOME_BLOCK_BYTES: u64 = 4 << 20;

/// Bases per block of a packed genome. Its packed bytes are 64 bytes short of 1 MiB: Redis
/// allocates a value with a dozen bytes of header, and a value of exactly 1 MiB would take the
/// allocator's next size (1.25 MiB), a quarter more memory for every block.
pub const GENOME_BLOCK_BASES: u64 = 4 * ((1 << 20) - 64);

/// How long blocks of an upload that never commits are kept.
pub const GENOME_UPLOAD_TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// `genome:{hash}`: hash describing a complete stored genome (size_bytes, bases, records JSON,
/// filename, created_at, last_used, blocks, kind, `storage`: the storage id its blocks are kept
/// under, and how they are kept: `format`, `raw` or `packed`, and `block_size`, bytes or bases
/// per block; a record without them is raw in blocks of [`GENOME_BLOCK_BYTES`], and one without
/// `storage` is kept under its hash). Written last, so it names complete blocks.
/// `lua/genome_*.lua` build these keys too; keep them in step.
pub fn genome_record(hash: &str) -> String {
    format!("genome:{hash}")
}

/// `genome:{storage}:{i}`: block `i` of the object kept under a storage id: its bases packed
/// (see `backend::packed`), or its bytes as they are, as its `format` says. Written by the
/// upload with [`GENOME_UPLOAD_TTL_MS`], made persistent when it commits.
pub fn genome_block(storage: &str, index: u64) -> String {
    format!("genome:{storage}:{index}")
}

/// `genome:{storage}:{i}:x`: the exceptions of block `i` of a packed genome.
pub fn genome_exceptions(storage: &str, index: u64) -> String {
    format!("genome:{storage}:{index}:x")
}

/// `genome-storage:{storage}`: how the blocks under a storage id are kept (`format`,
/// `block_size`) and how far they are written (`blocks`, and `bases` readable): written when
/// the upload begins and with every block, so readers in other processes read an upload in
/// progress. Expires with the upload's blocks unless it commits. Absent for objects stored
/// before storage ids (their record says the same).
pub fn genome_storage_meta(storage: &str) -> String {
    format!("genome-storage:{storage}")
}

/// Hash of the spare copies, storage id → job: copies of a genome stored meanwhile by another
/// upload, kept until their job ends because its tasks read them.
pub const GENOME_SPARES: &str = "genome-spares";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_follow_priority_order() {
        assert_eq!(task_stream(Priority::High), "tasks:high");
        assert_eq!(task_stream(Priority::Medium), "tasks:medium");
        assert_eq!(task_stream(Priority::Low), "tasks:low");
    }

    #[test]
    fn command_tasks_have_streams_of_their_own() {
        assert_eq!(
            ALL_STREAMS[stream_index(Priority::High, "search") - 1],
            "tasks:high"
        );
        let command = stream_index(Priority::Low, "command");
        assert_eq!(ALL_STREAMS[command - 1], "tasks:commands:low");
        for index in 1..=ALL_STREAMS.len() {
            let priority = stream_priority(index);
            assert!(index == priority_index(priority) || index == priority_index(priority) + 3);
        }
    }

    #[test]
    fn job_keys_are_readable_words() {
        assert_eq!(job_status("42"), "job:42:status");
        assert_eq!(job_stats("42"), "job:42:stats");
        assert_eq!(job_results("42"), "job:42:results");
        assert_eq!(worker_metrics("w1"), "worker:w1:metrics");
    }
}
