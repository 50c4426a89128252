//! Genomes are uploaded once and searched many times, on both backends, against real master and
//! worker processes (and a real `redis-server`): a repeat submit uploads nothing and still counts
//! exactly what a naive scan counts; an edited file is uploaded again; a client lying about the
//! hash cannot poison the store; a genome in use survives `genomes rm` and a retention sweep; a
//! client that has not hashed a file uploads it once, hashing it as it goes, and reuses it next.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use crate::support::grid::{naive_hits, parse_total, parse_tsv, write_fasta, Bases, Grid, Records};
use crate::support::redis::RedisServer;
use crate::support::{gridwatch_bin, wait_for};
use gridwatch::protocol::{Connection, ErrorCode, Message, Role, PROTOCOL_VERSION};
use tokio::net::TcpStream;

const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// Which backend a scenario runs on (the result cache's tests share it).
pub(crate) enum Backend {
    Embedded,
    Redis(RedisServer),
}

impl Backend {
    fn redis() -> Self {
        Backend::Redis(RedisServer::start())
    }
}

/// A master (with `flags`) on `backend`, its workers configured alike; no worker yet.
pub(crate) fn grid_on(backend: &Backend, flags: &[&str]) -> Grid {
    let mut all = vec!["--jobs-per-minute", "1000"];
    all.extend_from_slice(flags);
    match backend {
        Backend::Embedded => Grid::start(&all),
        Backend::Redis(redis) => Grid::start_on(Some(&redis.url()), &all),
    }
}

/// Runs a client command with its own hash cache (so tests never share or keep one).
pub(crate) fn cli(grid: &Grid, args: &[&str]) -> Output {
    Command::new(gridwatch_bin())
        .args(args)
        .arg("--master")
        .arg(&grid.addr)
        .env("XDG_CACHE_HOME", grid.path("cache"))
        .output()
        .expect("running the gridwatch client")
}

pub(crate) fn cli_ok(grid: &Grid, args: &[&str]) -> String {
    let output = cli(grid, args);
    assert!(
        output.status.success(),
        "gridwatch {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Three records of uneven lengths, so chunks of any size end inside and at record ends.
fn genome(seed: u64) -> Records {
    let mut bases = Bases::new(seed);
    vec![
        ("chrA".to_string(), bases.take(61_237)),
        ("chrB".to_string(), bases.take(9_001)),
        ("chrC".to_string(), bases.take(40_000)),
    ]
}

/// Submits a search of `file` and waits for it; returns the job's total count.
fn search(grid: &Grid, job: &str, file: &Path, pattern: &str, extra: &[&str]) -> u64 {
    let file = file.display().to_string();
    let mut args = vec!["submit", &file, "-p", pattern, "--job-id", job, "--wait"];
    args.extend_from_slice(extra);
    parse_total(&cli_ok(grid, &args))
}

/// The job's `status --json` record.
fn job_record(grid: &Grid, job: &str) -> serde_json::Value {
    let out = cli_ok(grid, &["status", job, "--json"]);
    let status: serde_json::Value = serde_json::from_str(&out).expect("status --json is JSON");
    status["job"].clone()
}

/// `gridwatch_upload_bytes_total` on the master's `/metrics`.
fn upload_metric(grid: &Grid) -> u64 {
    let (code, _, body) =
        crate::support::http::request(&grid.http_addr(), "GET", "/metrics", None, "");
    assert_eq!(code, 200);
    let text = String::from_utf8_lossy(&body).into_owned();
    assert!(
        text.contains("# HELP gridwatch_upload_bytes_total "),
        "the metric has HELP text"
    );
    text.lines()
        .find_map(|line| line.strip_prefix("gridwatch_upload_bytes_total "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
        .unwrap_or_else(|| panic!("no gridwatch_upload_bytes_total in {text}"))
}

/// The stored genomes' full hashes, from `genomes --json`.
fn stored(grid: &Grid) -> Vec<String> {
    let listed: serde_json::Value =
        serde_json::from_str(&cli_ok(grid, &["genomes", "--json"])).expect("genomes --json");
    listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|genome| genome["hash"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn hash_of(path: &Path) -> String {
    blake3::hash(&std::fs::read(path).expect("reading a fixture"))
        .to_hex()
        .to_string()
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).expect("fixture").len()
}

fn repeat_search_uploads_nothing(backend: Backend) {
    let mut grid = grid_on(&backend, &[]);
    grid.start_worker("w1", 2);
    let records = genome(3);
    let file = grid.path("g.fa");
    write_fasta(&file, &records, 60, "\n");
    let size = file_len(&file);

    let first = search(&grid, "first", &file, "ACGTAC", &["--chunk-size", "10000"]);
    assert_eq!(first, naive_hits(&records, "ACGTAC", false).len() as u64);
    let record = job_record(&grid, "first");
    assert_eq!(record["uploaded_bytes"], size);
    assert_eq!(record["genome_reused"], false);
    assert_eq!(upload_metric(&grid), size);
    assert_eq!(stored(&grid), vec![hash_of(&file)]);

    // Other patterns, both strands, another chunk size: straight to tasks.
    let expected = naive_hits(&records, "GATTACA", true);
    let second = search(
        &grid,
        "second",
        &file,
        "GATTACA",
        &["--strand", "both", "--chunk-size", "7000"],
    );
    assert_eq!(second, expected.len() as u64);
    let record = job_record(&grid, "second");
    assert_eq!(record["uploaded_bytes"], 0);
    assert_eq!(record["genome_reused"], true);
    assert_eq!(upload_metric(&grid), size, "the repeat uploaded bytes");
    let tsv = cli_ok(&grid, &["results", "second", "--format", "tsv"]);
    assert_eq!(parse_tsv(&tsv), expected);

    // What the grid prints for a reused genome is what a local search of the file prints.
    let path = file.display().to_string();
    let local = Command::new(gridwatch_bin())
        .args(["search", &path, "-p", "GATTACA", "--strand", "both"])
        .args(["--format", "tsv"])
        .output()
        .expect("local search");
    assert!(local.status.success());
    assert_eq!(tsv.as_bytes(), local.stdout.as_slice());
}

#[test]
fn a_repeat_search_uploads_nothing_and_counts_exactly_embedded() {
    repeat_search_uploads_nothing(Backend::Embedded);
}

#[test]
fn a_repeat_search_uploads_nothing_and_counts_exactly_redis() {
    repeat_search_uploads_nothing(Backend::redis());
}

fn edited_file_uploads_again(backend: Backend) {
    let mut grid = grid_on(&backend, &[]);
    grid.start_worker("w1", 1);
    let mut records = genome(5);
    let file = grid.path("g.fa");
    write_fasta(&file, &records, 60, "\n");
    let size = file_len(&file);
    let pattern = "CCGGA";
    let before = search(&grid, "before", &file, pattern, &[]);
    assert_eq!(before, naive_hits(&records, pattern, false).len() as u64);

    // One base edited so that a new match appears; same size, a new modification time.
    let at = 20_000;
    records[0].1[at..at + pattern.len()].copy_from_slice(pattern.as_bytes());
    write_fasta(&file, &records, 60, "\n");
    assert_eq!(file_len(&file), size);
    let later = SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&file)
        .and_then(|f| f.set_modified(later))
        .expect("setting the modification time");
    let expected = naive_hits(&records, pattern, false).len() as u64;
    assert_ne!(expected, before, "the edit should change the count");

    let after = search(&grid, "after", &file, pattern, &[]);
    assert_eq!(after, expected);
    let record = job_record(&grid, "after");
    assert_eq!(record["uploaded_bytes"], size);
    assert_eq!(record["genome_reused"], false);
    assert_eq!(upload_metric(&grid), 2 * size);
    assert_eq!(stored(&grid).len(), 2);
}

#[test]
fn an_edited_file_is_uploaded_again_and_counted_anew_embedded() {
    edited_file_uploads_again(Backend::Embedded);
}

#[test]
fn an_edited_file_is_uploaded_again_and_counted_anew_redis() {
    edited_file_uploads_again(Backend::redis());
}

/// Says hello as a client and submits a search of `spec` announcing an upload of `size` bytes;
/// returns the connection once the master is ready for the bytes.
pub async fn begin_upload(
    grid: &Grid,
    job: &str,
    spec: serde_json::Value,
    size: u64,
) -> Connection<TcpStream> {
    let stream = TcpStream::connect(&grid.addr).await.expect("connect");
    let mut conn = Connection::new(stream);
    conn.write_message(&Message::Hello {
        role: Role::Client,
        version: PROTOCOL_VERSION,
        token: None,
        id: None,
        instance: None,
    })
    .await
    .expect("hello");
    conn.expect_message().await.expect("welcome");
    conn.write_message(&Message::SubmitJob {
        job_id: job.into(),
        kind: "search".into(),
        spec: Some(spec),
        file_size: Some(size),
        priority: Default::default(),
        top_level: Default::default(),
    })
    .await
    .expect("submit");
    match conn.expect_message().await.expect("a reply") {
        Message::Ready { .. } => {}
        other => panic!("the master should take the upload, got {other:?}"),
    }
    conn
}

/// Submits `upload` over a raw connection, announcing `claimed` as its hash (or no hash, as
/// clients did before genomes were stored); returns the reply to the last upload frame.
async fn raw_submit(grid: &Grid, job: &str, claimed: Option<&str>, upload: &[u8]) -> Message {
    let mut spec = serde_json::json!({
        "filename": "g.fa",
        "patterns": [{ "name": "p", "sequence": "ACGTAC" }],
    });
    if let Some(claimed) = claimed {
        spec["genome_hash"] = claimed.into();
    }
    let mut conn = begin_upload(grid, job, spec, upload.len() as u64).await;
    for piece in upload.chunks(64 * 1024) {
        conn.send_frame(piece).await.expect("upload frame");
    }
    conn.flush().await.expect("flush");
    conn.expect_message().await.expect("a reply")
}

fn lying_client_cannot_poison(backend: Backend) {
    let mut grid = grid_on(&backend, &[]);
    let records = genome(7);
    let file = grid.path("g.fa");
    write_fasta(&file, &records, 60, "\n");
    let real_hash = hash_of(&file);
    // Other bases of the very same size, announced under the real file's hash.
    let mut fake = std::fs::read(&file).expect("fixture");
    for byte in fake
        .iter_mut()
        .filter(|b| b.is_ascii_uppercase() && **b != b'N')
    {
        *byte = b'A';
    }
    let header_end = fake.iter().position(|&b| b == b'\n').unwrap_or(0);
    fake[..header_end].copy_from_slice(&std::fs::read(&file).expect("fixture")[..header_end]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let reply = runtime.block_on(raw_submit(&grid, "liar", Some(&real_hash), &fake));
    match reply {
        Message::Error { code, message, .. } => {
            assert_eq!(code, ErrorCode::BadInput, "{message}");
            assert!(message.contains(&real_hash), "{message}");
        }
        other => panic!("a lying upload must fail, got {other:?}"),
    }
    assert_eq!(job_record(&grid, "liar")["status"], "failed");
    assert!(stored(&grid).is_empty(), "nothing stored under a lie");

    grid.start_worker("w1", 1);
    let honest = search(&grid, "honest", &file, "ACGTAC", &[]);
    assert_eq!(honest, naive_hits(&records, "ACGTAC", false).len() as u64);
    assert_eq!(
        job_record(&grid, "honest")["uploaded_bytes"],
        file_len(&file)
    );
    assert_eq!(stored(&grid), vec![real_hash]);
    let again = search(&grid, "again", &file, "ACGTAC", &[]);
    assert_eq!(again, honest);
    assert_eq!(job_record(&grid, "again")["genome_reused"], true);
}

#[test]
fn a_client_lying_about_the_hash_cannot_poison_the_store_embedded() {
    lying_client_cannot_poison(Backend::Embedded);
}

#[test]
fn a_client_lying_about_the_hash_cannot_poison_the_store_redis() {
    lying_client_cannot_poison(Backend::redis());
}

/// Submits without waiting (no worker runs: the job stays queued).
fn submit_queued(grid: &Grid, job: &str, file: &Path, pattern: &str) {
    let file = file.display().to_string();
    cli_ok(grid, &["submit", &file, "-p", pattern, "--job-id", job]);
}

fn genome_in_use_survives_a_prune(backend: Backend) {
    let mut grid = grid_on(&backend, &["--keep-genomes", "0"]);
    let records = genome(11);
    let used = grid.path("used.fa");
    write_fasta(&used, &records, 60, "\n");
    let unused = grid.path("unused.fa");
    write_fasta(&unused, &genome(12), 60, "\n");
    let (used_hash, unused_hash) = (hash_of(&used), hash_of(&unused));

    submit_queued(&grid, "queued", &used, "TTGCA");
    // A cancelled job leaves its genome unused: seeing it pruned proves a sweep ran after.
    submit_queued(&grid, "dropped", &unused, "TTGCA");
    cli_ok(&grid, &["cancel", "dropped"]);
    wait_for("a sweep to prune the unused genome", JOB_TIMEOUT, || {
        (!stored(&grid).contains(&unused_hash)).then_some(())
    });
    assert_eq!(stored(&grid), vec![used_hash.clone()]);

    grid.start_worker("w1", 1);
    let done = grid.wait_finished("queued", JOB_TIMEOUT);
    assert_eq!(done["job"]["status"], "completed");
    let count = parse_total(&cli_ok(&grid, &["results", "queued"]));
    assert_eq!(count, naive_hits(&records, "TTGCA", false).len() as u64);
    // Unused now: the next sweep prunes it.
    wait_for(
        "a sweep to prune the finished job's genome",
        JOB_TIMEOUT,
        || stored(&grid).is_empty().then_some(()),
    );
}

#[test]
fn a_genome_in_use_survives_a_prune_embedded() {
    genome_in_use_survives_a_prune(Backend::Embedded);
}

#[test]
fn a_genome_in_use_survives_a_prune_redis() {
    genome_in_use_survives_a_prune(Backend::redis());
}

fn genome_in_use_survives_rm(backend: Backend) {
    let mut grid = grid_on(&backend, &[]);
    let records = genome(13);
    let file = grid.path("g.fa");
    write_fasta(&file, &records, 60, "\n");
    let hash = hash_of(&file);
    submit_queued(&grid, "queued", &file, "GGATC");

    let refused = cli(&grid, &["genomes", "rm", &hash[..10]]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("queued") && stderr.contains(&hash),
        "{stderr}"
    );
    assert_eq!(stored(&grid), vec![hash.clone()]);
    let table = cli_ok(&grid, &["genomes"]);
    assert!(
        table.contains(&hash[..12]) && table.contains("g.fa"),
        "{table}"
    );

    grid.start_worker("w1", 1);
    let done = grid.wait_finished("queued", JOB_TIMEOUT);
    assert_eq!(done["job"]["status"], "completed");
    let count = parse_total(&cli_ok(&grid, &["results", "queued"]));
    assert_eq!(count, naive_hits(&records, "GGATC", false).len() as u64);

    let removed = cli_ok(&grid, &["genomes", "rm", &hash[..10]]);
    assert!(removed.contains(&hash), "{removed}");
    assert!(stored(&grid).is_empty());
    // The next search of the file uploads it again (run, not answered from the result cache,
    // which needs no genome at all).
    let again = search(&grid, "again", &file, "GGATC", &["--no-cache"]);
    assert_eq!(again, count);
    assert_eq!(
        job_record(&grid, "again")["uploaded_bytes"],
        file_len(&file)
    );
}

#[test]
fn a_genome_in_use_survives_rm_embedded() {
    genome_in_use_survives_rm(Backend::Embedded);
}

#[test]
fn a_genome_in_use_survives_rm_redis() {
    genome_in_use_survives_rm(Backend::redis());
}

fn concurrent_first_uploads_store_once(backend: Backend) {
    let mut grid = grid_on(&backend, &[]);
    grid.start_worker("w1", 2);
    let records = genome(17);
    let file = grid.path("g.fa");
    write_fasta(&file, &records, 60, "\n");
    let path = file.display().to_string();
    let expected = naive_hits(&records, "TGCA", false).len() as u64;
    let submits: Vec<_> = ["one", "two"]
        .into_iter()
        .map(|job| {
            Command::new(gridwatch_bin())
                .args(["submit", &path, "-p", "TGCA", "--job-id", job, "--wait"])
                .args(["--master", &grid.addr])
                .env("XDG_CACHE_HOME", grid.path(job))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("a concurrent submit")
        })
        .collect();
    for submit in submits {
        let output = submit.wait_with_output().expect("submit output");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            parse_total(&String::from_utf8_lossy(&output.stdout)),
            expected
        );
    }
    assert_eq!(stored(&grid), vec![hash_of(&file)]);
    if let Backend::Embedded = backend {
        // The copy uploaded second was a spare for its job's tasks; the master deletes it once
        // that job has ended, leaving the genome's own copy.
        let listed: serde_json::Value =
            serde_json::from_str(&cli_ok(&grid, &["genomes", "--json"])).expect("genomes --json");
        let storage = listed[0]["storage"]
            .as_str()
            .expect("a storage id")
            .to_string();
        let dir = grid.data_dir().join("spool").join("genomes");
        wait_for("the spare copy to be deleted", JOB_TIMEOUT, || {
            let files: Vec<String> = std::fs::read_dir(&dir)
                .expect("the genomes directory")
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                // The directory's id, which workers reading it in place check.
                .filter(|name| name != "store-id")
                .collect();
            (files == vec![format!("{storage}.packed")]).then_some(())
        });
    }
}

#[test]
fn concurrent_first_uploads_both_succeed_and_store_the_genome_once_embedded() {
    concurrent_first_uploads_store_once(Backend::Embedded);
}

#[test]
fn concurrent_first_uploads_both_succeed_and_store_the_genome_once_redis() {
    concurrent_first_uploads_store_once(Backend::redis());
}

fn hashless_upload_is_stored(backend: Backend) {
    let mut grid = grid_on(&backend, &[]);
    grid.start_worker("w1", 1);
    let records = genome(19);
    let file = grid.path("g.fa");
    write_fasta(&file, &records, 60, "\n");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let bytes = std::fs::read(&file).expect("fixture");
    let reply = runtime.block_on(raw_submit(&grid, "old-client", None, &bytes));
    assert!(matches!(reply, Message::Accepted { .. }), "{reply:?}");
    assert_eq!(stored(&grid), vec![hash_of(&file)]);
    // A client whose hash cache does not know the file uploads it unannounced (hashing it as
    // it is sent rather than reading it twice) and remembers the hash; the genome stays stored
    // once, and that client's next search of the file uploads nothing.
    let count = search(&grid, "new-client", &file, "ACGTAC", &[]);
    assert_eq!(count, naive_hits(&records, "ACGTAC", false).len() as u64);
    assert_eq!(
        job_record(&grid, "new-client")["uploaded_bytes"],
        file_len(&file)
    );
    assert_eq!(stored(&grid), vec![hash_of(&file)]);
    let again = search(&grid, "cached-client", &file, "GGATC", &[]);
    assert_eq!(again, naive_hits(&records, "GGATC", false).len() as u64);
    assert_eq!(job_record(&grid, "cached-client")["uploaded_bytes"], 0);
}

#[test]
fn an_upload_without_a_hash_is_stored_for_later_submits_embedded() {
    hashless_upload_is_stored(Backend::Embedded);
}

#[test]
fn an_upload_without_a_hash_is_stored_for_later_submits_redis() {
    hashless_upload_is_stored(Backend::redis());
}

/// Task input the embedded master has enqueued, sent with leases, and left to workers reading
/// its genome files: `/metrics`' three counters.
pub(crate) fn input_counters(grid: &Grid) -> [f64; 3] {
    let http = grid.http_addr();
    [
        "gridwatch_uploaded_bytes_total",
        "gridwatch_task_input_sent_bytes_total",
        "gridwatch_task_input_read_in_place_bytes_total",
    ]
    .map(|name| crate::support::http::metric(&http, name).unwrap_or_else(|| panic!("no {name}")))
}

/// Searches a genome, then searches it again, with one worker started with `--genome-dir
/// dir`; returns how each search's task input reached it: (enqueued, sent, read in place) of the
/// first search, whose tasks run while the upload is stored or once it is, then of the repeat.
fn repeat_with_genome_dir(grid: &mut Grid, dir: &Path) -> [[f64; 3]; 2] {
    grid.start_worker_with("w1", 2, &["--genome-dir", &dir.display().to_string()]);
    let records = genome(8);
    let file = grid.path("g.fa");
    write_fasta(&file, &records, 60, "\n");
    let start = input_counters(grid);
    let first = search(grid, "first", &file, "ACGTAC", &["--chunk-size", "10000"]);
    assert_eq!(first, naive_hits(&records, "ACGTAC", false).len() as u64);

    let before = input_counters(grid);
    let first = [0, 1, 2].map(|i| before[i] - start[i]);
    let expected = naive_hits(&records, "GATTACA", true);
    let args = ["--strand", "both", "--chunk-size", "7000"];
    let second = search(grid, "second", &file, "GATTACA", &args);
    assert_eq!(second, expected.len() as u64);
    let tsv = cli_ok(grid, &["results", "second", "--format", "tsv"]);
    assert_eq!(parse_tsv(&tsv), expected);
    let after = input_counters(grid);
    let delta = [0, 1, 2].map(|i| after[i] - before[i]);
    // Every base once, plus each chunk's overlap into the next.
    for counters in [first, delta] {
        assert!(counters[0] >= 110_238.0, "enqueued {counters:?}");
    }
    [first, delta]
}

#[test]
fn a_worker_on_the_masters_host_reads_a_stored_genome_from_its_files() {
    let mut grid = grid_on(&Backend::Embedded, &[]);
    let dir = grid.data_dir().join("spool").join("genomes");
    for (search, [enqueued, sent, in_place]) in ["first", "repeat"]
        .into_iter()
        .zip(repeat_with_genome_dir(&mut grid, &dir))
    {
        assert_eq!(
            in_place, enqueued,
            "every base of the {search} search read by the worker"
        );
        assert_eq!(
            sent, 0.0,
            "no base of the {search} search sent by the master"
        );
    }
}

#[test]
fn a_worker_given_another_stores_directory_is_sent_the_bases() {
    let mut grid = grid_on(&Backend::Embedded, &[]);
    // Another grid's directory: a store id that is not this master's.
    let other = grid.path("other-genomes");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("store-id"), "0123456789abcdef0123456789abcdef\n").unwrap();
    for (search, [enqueued, sent, in_place]) in ["first", "repeat"]
        .into_iter()
        .zip(repeat_with_genome_dir(&mut grid, &other))
    {
        assert_eq!(
            sent, enqueued,
            "every base of the {search} search sent by the master"
        );
        assert_eq!(in_place, 0.0);
    }

    // A directory that is no store's is refused before the worker starts.
    let empty = grid.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let refused = Command::new(gridwatch_bin())
        .args(["worker", "--master", &grid.addr, "--genome-dir"])
        .arg(&empty)
        .output()
        .expect("running a worker");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("holds no stored genomes' id") && stderr.contains("spool/genomes"),
        "{stderr}"
    );
}
