//! Stored-object cases: a command input is kept byte for byte beside genomes, in the same store
//! under the same kind of hash, and a worker reads it back in bounded pieces (straight from the
//! backend, or through the master); what is not a stored input's hash gets an error, not bytes.

use bytes::Bytes;
use gridwatch::backend::{GenomeRecord, StoredKind, INPUT_PIECE_BYTES};

use super::fixtures::*;

/// Bytes a FASTA decoder would change: a header line, CRLF, lower case, NUL, high bytes.
fn raw_bytes() -> Vec<u8> {
    let mut bytes = b">chr1 not a header here\r\nacgtNNxx\0\xff\xfe".to_vec();
    bytes.extend((0..5000u32).map(|i| (i * 7 % 251) as u8));
    bytes
}

fn record(kind: StoredKind, bytes: &[u8], name: &str) -> GenomeRecord {
    GenomeRecord {
        kind,
        hash: blake3::hash(bytes).to_hex().to_string(),
        size_bytes: bytes.len() as u64,
        bases: bytes.len() as u64,
        records: serde_json::Value::Null,
        filename: name.to_string(),
        created_at: 0.0,
        last_used: 0.0,
        jobs: 0,
    }
}

/// Stores `bytes` under `stored` for job `job`, appended in uneven pieces.
async fn store(s: &Subject, stored: &GenomeRecord, bytes: &[u8], job: &str) {
    let mut writer = s.genomes.begin_genome(stored.kind).await.unwrap();
    for piece in bytes.chunks(777) {
        writer.append(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    writer.commit(stored, job).await.unwrap();
}

pub async fn a_command_input_is_stored_byte_for_byte_and_read_in_pieces(s: &Subject) {
    let bytes = raw_bytes();
    let input = record(StoredKind::Input, &bytes, "data.bin");
    store(s, &input, &bytes, "j1").await;
    let used = s.genomes.use_genome(&input.hash, "j2").await.unwrap();
    let used = used.expect("the input is stored");
    assert_eq!(used.kind, StoredKind::Input);
    assert_eq!(used.size_bytes, bytes.len() as u64);
    let mut read = Vec::new();
    let mut offset = 0u64;
    while offset < bytes.len() as u64 {
        let want = (bytes.len() as u64 - offset).min(1000);
        let piece = s
            .inputs
            .read_input(&input.hash, offset, want)
            .await
            .unwrap();
        assert_eq!(piece.len() as u64, want);
        read.extend_from_slice(&piece);
        offset += want;
    }
    assert_eq!(read, bytes, "read back byte for byte");
}

pub async fn reading_what_is_not_a_stored_input_fails(s: &Subject) {
    let bytes = raw_bytes();
    let input = record(StoredKind::Input, &bytes, "data.bin");
    store(s, &input, &bytes, "j1").await;
    let missing = "cd".repeat(32);
    assert!(s.inputs.read_input(&missing, 0, 10).await.is_err());
    assert!(s
        .inputs
        .read_input("../../etc/passwd", 0, 10)
        .await
        .is_err());
    assert!(s
        .inputs
        .read_input(&input.hash.to_uppercase(), 0, 10)
        .await
        .is_err());
    let past_end = s
        .inputs
        .read_input(&input.hash, bytes.len() as u64 - 5, 10)
        .await;
    assert!(past_end.is_err(), "a range past the end: {past_end:?}");
    let too_big = s
        .inputs
        .read_input(&input.hash, 0, INPUT_PIECE_BYTES + 1)
        .await;
    // Through the master the piece is cut to the bound; elsewhere it is refused.
    if let Ok(piece) = too_big {
        assert!(piece.len() as u64 <= INPUT_PIECE_BYTES);
    }
}

pub async fn genomes_and_inputs_are_listed_with_their_kinds(s: &Subject) {
    let genome_bases = b"ACGTACGTNNNN".to_vec();
    let mut genome = record(StoredKind::Genome, b">g\nACGTACGT\nNNNN\n", "g.fa");
    genome.bases = genome_bases.len() as u64;
    genome.records = serde_json::json!([{"name": "g", "length": 12}]);
    store(s, &genome, &genome_bases, "j1").await;
    let bytes = raw_bytes();
    let input = record(StoredKind::Input, &bytes, "");
    store(s, &input, &bytes, "j2").await;
    let mut listed: Vec<(String, StoredKind, u64)> = s
        .genomes
        .genomes()
        .await
        .unwrap()
        .into_iter()
        .map(|g| (g.hash, g.kind, g.size_bytes))
        .collect();
    listed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected = vec![
        (genome.hash.clone(), StoredKind::Genome, genome.size_bytes),
        (input.hash.clone(), StoredKind::Input, input.size_bytes),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(listed, expected);
    let bases = s.genomes.read_genome(&genome.hash, 0, 12).await.unwrap();
    assert_eq!(&bases[..], &genome_bases[..]);
}
