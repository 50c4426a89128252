-- The embedded backend's tables. Inspect with `sqlite3 DATA_DIR/gridwatch.db`.
-- Incremental auto-vacuum lets a prune hand freed pages back to the file system; it takes effect
-- on a new database, and on an older one at the first VACUUM (which a prune runs).
PRAGMA auto_vacuum = INCREMENTAL;
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA busy_timeout = 5000;

-- jobs.spec is empty: specs live in job_specs (databases made earlier have them moved there at
-- open), so the small, often read and updated job rows never carry a spec of many megabytes.
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    spec TEXT NOT NULL,
    summary TEXT NOT NULL DEFAULT '',
    priority TEXT NOT NULL DEFAULT 'medium',
    status TEXT NOT NULL,
    total_chunks INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created_at REAL NOT NULL,
    finished_at REAL
);

CREATE TABLE IF NOT EXISTS job_specs (
    id TEXT PRIMARY KEY,
    spec TEXT NOT NULL
);

-- state: queued | leased | dead. Acked tasks are deleted; their results live in `results`.
-- token: the current delivery's random id, the proof a result, ack or extension must carry.
-- max_matches: the most matches a result may claim (NULL in tasks queued before it existed).
-- slots: how many of a worker's slots the task takes (a command task's --cpus).
-- avoid_worker, avoid_until: a failed command task is kept from the worker it failed on until
-- then, so a free other worker runs the retry.
CREATE TABLE IF NOT EXISTS tasks (
    job TEXT NOT NULL,
    chunk INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    kind TEXT NOT NULL DEFAULT 'search',
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    worker TEXT,
    deadline REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    token INTEGER NOT NULL DEFAULT 0,
    max_matches INTEGER,
    spool_offset INTEGER NOT NULL,
    spool_len INTEGER NOT NULL,
    last_error TEXT,
    slots INTEGER NOT NULL DEFAULT 1,
    avoid_worker TEXT,
    avoid_until REAL,
    PRIMARY KEY (job, chunk)
);
CREATE INDEX IF NOT EXISTS tasks_ready ON tasks (state, priority);
CREATE INDEX IF NOT EXISTS tasks_by_worker ON tasks (worker) WHERE state = 'leased';

-- parts = 0: the payload is inline in `payload`; otherwise it is `parts` rows of
-- `result_parts` staged under the delivery `token`, made visible by this row's insertion.
CREATE TABLE IF NOT EXISTS results (
    job TEXT NOT NULL,
    chunk INTEGER NOT NULL,
    matches INTEGER NOT NULL,
    payload TEXT NOT NULL,
    worker TEXT NOT NULL,
    parts INTEGER NOT NULL DEFAULT 0,
    token TEXT NOT NULL DEFAULT '',
    run TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (job, chunk)
);
-- A job's results are counted (and a command job's failures summed) after every completion:
-- this index answers that alone, without reading the result rows and their payloads.
CREATE INDEX IF NOT EXISTS results_done ON results (job, matches);

-- Parts of large result payloads, staged per delivery before their result is committed.
CREATE TABLE IF NOT EXISTS result_parts (
    job TEXT NOT NULL,
    chunk INTEGER NOT NULL,
    token TEXT NOT NULL,
    part INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    PRIMARY KEY (job, chunk, token, part)
);

CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS worker_metrics (
    worker TEXT PRIMARY KEY,
    metrics TEXT NOT NULL,
    expires_at REAL NOT NULL
);

-- Per worker and job kind: tasks completed ever, and the recent tasks' times (trimmed to the
-- newest few per worker and kind). Not job data: a prune leaves them.
CREATE TABLE IF NOT EXISTS task_counts (
    worker TEXT NOT NULL,
    kind TEXT NOT NULL,
    completed INTEGER NOT NULL,
    PRIMARY KEY (worker, kind)
);
CREATE TABLE IF NOT EXISTS task_times (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    worker TEXT NOT NULL,
    kind TEXT NOT NULL,
    elapsed_secs REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS task_times_by_worker ON task_times (worker, kind, id);

-- Genomes stored once for any number of searches: the decoded sequence is the file
-- spool/genomes/<storage>.packed (or .seq, see format), written before its row exists (a row means
-- a complete file).
-- records: JSON list of {name, length}. last_used: when a job last started using it.
CREATE TABLE IF NOT EXISTS genomes (
    hash TEXT PRIMARY KEY,
    size_bytes INTEGER NOT NULL,
    bases INTEGER NOT NULL,
    records TEXT NOT NULL,
    filename TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_used REAL NOT NULL,
    -- 'genome' (decoded bases) or 'input' (a command input's bytes as uploaded).
    kind TEXT NOT NULL DEFAULT 'genome',
    -- 'packed' (<storage>.packed, two bits a base) or 'raw' (<storage>.seq, byte for byte).
    format TEXT NOT NULL DEFAULT 'raw',
    -- The storage id the upload chose; NULL for rows written before storage ids (kept under
    -- their hash).
    storage TEXT
);

-- Copies of a genome uploaded while the same genome was stored by another upload: kept under
-- their storage id until their job ends (its tasks read them), then deleted.
CREATE TABLE IF NOT EXISTS spare_copies (
    storage TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    format TEXT NOT NULL
);

-- Which jobs use which genome; a genome used by an unfinished job is never deleted.
CREATE TABLE IF NOT EXISTS genome_jobs (
    hash TEXT NOT NULL,
    job TEXT NOT NULL,
    PRIMARY KEY (hash, job)
);
CREATE INDEX IF NOT EXISTS genome_jobs_by_job ON genome_jobs (job);

-- The result cache: each job under the key of what determines its answer (its kind computes the
-- key); a completed job answers a later job with the same key. A job's row goes with the job.
CREATE TABLE IF NOT EXISTS result_cache (
    job TEXT PRIMARY KEY,
    key TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS result_cache_by_key ON result_cache (key);
