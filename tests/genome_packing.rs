//! How each backend keeps a stored genome: packed, Redis holds about a quarter of a byte per
//! base (counted in Redis's own figures), and so does the embedded backend's file; genomes stored
//! byte for byte by an earlier version still read after the upgrade, on both backends; a format
//! this version does not know is refused with what to do.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use gridwatch::backend::embedded::{EmbeddedBackend, EmbeddedConfig};
use gridwatch::backend::redis::keys::{GENOME_BLOCK_BASES, GENOME_BLOCK_BYTES};
use gridwatch::backend::redis::{RedisBackend, RedisOptions};
use gridwatch::backend::{GenomeRecord, GenomeStore};
use redis::AsyncCommands;

use crate::support::redis::{info_number, RedisServer};

/// Plain A, C, G, T, from a fixed linear congruential sequence.
fn plain_bases(len: usize) -> Vec<u8> {
    let mut state = 12345u64;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            b"ACGT"[(state >> 62) as usize]
        })
        .collect()
}

async fn store(genomes: &dyn GenomeStore, genome: &GenomeRecord, bases: &[u8]) {
    let mut writer = genomes.begin_genome(genome.kind).await.expect("begin");
    for piece in bases.chunks(1 << 20) {
        writer
            .append(Bytes::copy_from_slice(piece))
            .await
            .expect("append");
    }
    writer.commit(genome, "j1").await.expect("commit");
}

async fn inspector(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("inspector connection")
}

async fn redis_backend(server: &RedisServer) -> RedisBackend {
    RedisBackend::connect(&server.url(), RedisOptions::default())
        .await
        .expect("connecting to the test redis-server")
}

async fn start_redis() -> RedisServer {
    tokio::task::spawn_blocking(RedisServer::start)
        .await
        .expect("starting redis-server")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_a_quarter_byte_a_base_of_a_plain_genome() {
    let server = start_redis().await;
    let backend = redis_backend(&server).await;
    let mut conn = inspector(&server).await;
    // Ten blocks and a half: 42 million bases, 10.5 MB packed.
    let bases = plain_bases((GENOME_BLOCK_BASES * 10 + GENOME_BLOCK_BASES / 2) as usize);
    let genome = crate::support::genome_record(&bases);
    let before = info_number(&mut conn, "memory", "used_memory").await;
    store(&backend, &genome, &bases).await;
    let quarter = bases.len() as u64 / 4;
    let storage = backend
        .use_genome(&genome.hash, "j1")
        .await
        .expect("lookup")
        .expect("stored")
        .storage;
    let keys: Vec<String> = conn
        .keys(format!("genome:{storage}:*"))
        .await
        .expect("KEYS");
    let (mut lengths, mut allocated) = (0u64, 0u64);
    for key in keys.iter().filter(|key| !key.ends_with(":jobs")) {
        let len: u64 = conn.strlen(key).await.expect("STRLEN");
        let usage: u64 = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("MEMORY USAGE");
        lengths += len;
        allocated += usage;
    }
    // Eleven blocks and their exceptions (12 bytes each for a genome without any).
    assert_eq!(keys.len(), 2 * 11, "{keys:?}");
    assert_eq!(lengths, quarter + 11 * 12, "bytes held, against bases / 4");
    // What the allocator gives the values: within 2 % of a quarter byte a base (a value of
    // exactly 1 MiB would be given 1.25 MiB).
    assert!(
        allocated <= quarter + quarter / 50,
        "{allocated} bytes allocated for {quarter} packed bytes"
    );
    let grown = info_number(&mut conn, "memory", "used_memory")
        .await
        .saturating_sub(before);
    eprintln!(
        "{} bases: {lengths} bytes held, {allocated} allocated, used_memory +{grown}",
        bases.len()
    );
    // Redis's own total may also keep the 1 MiB input buffer of the connection that wrote the
    // last block.
    assert!(
        grown <= quarter + quarter / 20 + (2 << 20),
        "used_memory grew by {grown} bytes for {quarter} packed bytes"
    );
    let back = backend
        .read_genome(&genome.hash, 0, bases.len() as u64)
        .await
        .expect("read");
    assert!(back[..] == bases[..], "the whole genome reads back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_genome_stored_raw_in_redis_by_an_earlier_version_still_reads() {
    let server = start_redis().await;
    let backend = redis_backend(&server).await;
    let mut conn = inspector(&server).await;
    let mut bases = plain_bases(GENOME_BLOCK_BYTES as usize * 2 + 1234);
    bases[100..200].fill(b'N');
    bases[5_000_000..5_000_010].copy_from_slice(b"acgtRYnnkM");
    let genome = crate::support::genome_record(&bases);
    // As an earlier version stored it: raw blocks, a record without a format.
    let record = format!("genome:{}", genome.hash);
    let blocks = bases
        .chunks(GENOME_BLOCK_BYTES as usize)
        .collect::<Vec<_>>();
    for (index, block) in blocks.iter().enumerate() {
        let _: () = conn
            .set(format!("{record}:{index}"), *block)
            .await
            .expect("SET");
    }
    let _: () = redis::cmd("HSET")
        .arg(&record)
        .arg(&[
            ("hash", genome.hash.clone()),
            ("size_bytes", bases.len().to_string()),
            ("bases", bases.len().to_string()),
            ("records", genome.records.to_string()),
            ("filename", "old.fa".into()),
            ("created_at", "1".into()),
            ("last_used", "1".into()),
            ("blocks", blocks.len().to_string()),
            ("kind", "genome".into()),
        ])
        .query_async(&mut conn)
        .await
        .expect("HSET");
    let _: () = conn.sadd("genomes", &genome.hash).await.expect("SADD");
    let earlier = backend
        .use_genome(&genome.hash, "j0")
        .await
        .expect("lookup")
        .expect("the old genome is listed");
    assert_eq!(earlier.storage, genome.hash, "kept under its hash");
    for (offset, len) in [
        (0u64, bases.len() as u64),
        (GENOME_BLOCK_BYTES - 3, 7),
        (4_999_999, 13),
        (150, 3),
    ] {
        let read = backend
            .read_genome(&genome.hash, offset, len)
            .await
            .expect("a raw genome reads");
        assert!(
            read[..] == bases[offset as usize..(offset + len) as usize],
            "bases {offset}+{len}"
        );
        let by_storage = backend
            .read_stored(&genome.hash, offset, len)
            .await
            .expect("read by its storage id, its hash");
        assert!(by_storage == read, "bases {offset}+{len} by storage id");
    }
    let _: () = conn
        .hset(&record, "format", "packed9")
        .await
        .expect("HSET format");
    let refused = backend
        .read_genome(&genome.hash, 0, 10)
        .await
        .expect_err("an unknown format");
    assert!(refused.to_string().contains("upload it again"), "{refused}");
}

/// Rewrites the embedded database in `dir` as an earlier version left it: its `genomes` table
/// as that version made it, without a `format` column.
fn drop_format_column(dir: &Path) {
    let conn = rusqlite::Connection::open(dir.join("gridwatch.db")).expect("database");
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .expect("busy timeout");
    conn.execute_batch(
        "DROP TABLE genomes;
         CREATE TABLE genomes (
             hash TEXT PRIMARY KEY,
             size_bytes INTEGER NOT NULL,
             bases INTEGER NOT NULL,
             records TEXT NOT NULL,
             filename TEXT NOT NULL,
             created_at REAL NOT NULL,
             last_used REAL NOT NULL,
             kind TEXT NOT NULL DEFAULT 'genome'
         );",
    )
    .expect("the earlier table");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_genome_stored_raw_on_disk_by_an_earlier_version_still_reads() {
    let dir = tempfile::tempdir().expect("data dir");
    let open =
        || Arc::new(EmbeddedBackend::open(dir.path(), EmbeddedConfig::default()).expect("open"));
    let mut bases = plain_bases(9_000_000);
    bases[4_194_000..4_195_000].fill(b'n');
    bases[17..20].copy_from_slice(b"RyB");
    let old = crate::support::genome_record(&bases);
    let packed = crate::support::genome_record(&bases[..5_000_000]);
    drop(open());
    drop_format_column(dir.path());
    // As an earlier version stored it: the sequence as it is, a row without a format.
    let genomes_dir = dir.path().join("spool").join("genomes");
    std::fs::write(genomes_dir.join(format!("{}.seq", old.hash)), &bases).expect("write");
    let conn = rusqlite::Connection::open(dir.path().join("gridwatch.db")).expect("database");
    conn.execute(
        "INSERT INTO genomes (hash, size_bytes, bases, records, filename, created_at, last_used,
             kind)
         VALUES (?1, ?2, ?2, '[]', 'old.fa', 1, 1, 'genome')",
        rusqlite::params![old.hash, bases.len() as i64],
    )
    .expect("insert the old row");
    drop(conn);
    let backend = open();
    // A row without a storage id is kept under its hash: read by either, and a task queued by
    // the earlier version (naming the hash) reads it too.
    let earlier = backend
        .use_genome(&old.hash, "j0")
        .await
        .expect("lookup")
        .expect("the old genome is listed");
    assert_eq!(earlier.storage, old.hash);
    for (offset, len) in [(0u64, bases.len() as u64), (4_193_999, 1002), (16, 5)] {
        let read = backend
            .read_genome(&old.hash, offset, len)
            .await
            .expect("a raw genome reads");
        assert!(
            read[..] == bases[offset as usize..(offset + len) as usize],
            "bases {offset}+{len}"
        );
        let by_storage = backend
            .read_stored(&old.hash, offset, len)
            .await
            .expect("read by its storage id, its hash");
        assert!(by_storage == read, "bases {offset}+{len} by storage id");
    }
    // A genome stored now sits beside it packed: a quarter of a byte a base, and a little.
    store(backend.as_ref(), &packed, &bases[..5_000_000]).await;
    let storage = backend
        .use_genome(&packed.hash, "j1")
        .await
        .expect("lookup")
        .expect("stored")
        .storage;
    assert_ne!(
        storage, packed.hash,
        "a new genome is kept under its own storage id"
    );
    let file = genomes_dir.join(format!("{storage}.packed"));
    let size = std::fs::metadata(&file).expect("the packed file").len();
    assert!(
        (1_250_000..1_250_000 + 4096).contains(&size),
        "{size} bytes for 5,000,000 bases"
    );
    let read = backend
        .read_genome(&packed.hash, 4_193_990, 20)
        .await
        .expect("a packed genome reads");
    assert_eq!(&read[..], &bases[4_193_990..4_194_010]);
    let conn = rusqlite::Connection::open(dir.path().join("gridwatch.db")).expect("database");
    let formats: Vec<(String, String)> = conn
        .prepare("SELECT hash, format FROM genomes ORDER BY format")
        .and_then(|mut select| {
            select
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect()
        })
        .expect("formats");
    assert_eq!(
        formats,
        vec![
            (packed.hash.clone(), "packed".to_string()),
            (old.hash.clone(), "raw".to_string())
        ]
    );
    conn.execute(
        "UPDATE genomes SET format = 'packed9' WHERE hash = ?1",
        [&packed.hash],
    )
    .expect("an unknown format");
    let refused = backend
        .read_genome(&packed.hash, 0, 10)
        .await
        .expect_err("an unknown format");
    assert!(refused.to_string().contains("upload it again"), "{refused}");
}
