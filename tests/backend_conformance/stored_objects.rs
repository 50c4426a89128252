//! Stored-object cases: a command input is kept byte for byte beside genomes, in the same store
//! under the same kind of hash, and a worker reads it back in bounded pieces (straight from the
//! backend, or through the master); what is not a stored input's hash gets an error, not bytes.
//! A genome, however it is packed, reads back exactly from any range: every IUPAC letter in
//! either case, N and lower-case runs across block boundaries.

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
        storage: String::new(),
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

/// A deterministic stream of numbers (splitmix64), so a failing range can be replayed.
struct Numbers(u64);

impl Numbers {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % bound
    }
}

/// Block boundaries of both backends' packed layouts (4 Mi bases, and 64 bytes of packing
/// short of it), so runs written across them cross a block boundary whichever backend runs.
const BOUNDARIES: [usize; 4] = [4_194_048, 4_194_304, 8_388_096, 8_388_608];

/// About nine million bases: mostly A, C, G, T, with every IUPAC letter in both cases scattered
/// through, N runs and lower-case runs (of A, C, G, T, of N, and of other letters) laid across
/// block boundaries, and long runs of each.
fn awkward_genome() -> Vec<u8> {
    let mut numbers = Numbers(24);
    let len = 9_000_001;
    let mut bases: Vec<u8> = (0..len)
        .map(|_| b"ACGT"[numbers.below(4) as usize])
        .collect();
    let iupac = b"ACGTRYSWKMBDHVNacgtryswkmbdhvn";
    for _ in 0..20_000 {
        let at = numbers.below(len as u64) as usize;
        bases[at] = iupac[numbers.below(iupac.len() as u64) as usize];
    }
    for (i, &boundary) in BOUNDARIES.iter().enumerate() {
        // An N run over the boundary, then a lower-case run over the next one a few bases on.
        let n_run = 1000 + 77 * i;
        bases[boundary - 333..boundary - 333 + n_run].fill(b'N');
        for base in &mut bases[boundary - 5000..boundary + 3001] {
            base.make_ascii_lowercase();
        }
        bases[boundary + 10..boundary + 13].copy_from_slice(b"nRy");
    }
    // Long runs: a megabase of N, and half a megabase of lower case with N inside.
    bases[5_000_000..6_000_000].fill(b'N');
    for base in &mut bases[6_500_000..7_000_000] {
        base.make_ascii_lowercase();
    }
    bases[6_700_000..6_701_000].fill(b'n');
    bases
}

pub async fn a_genome_reads_back_exactly_from_any_range(s: &Subject) {
    let bases = awkward_genome();
    let mut genome = record(StoredKind::Genome, &bases, "awkward.fa");
    genome.records = serde_json::json!([{"name": "awkward", "length": bases.len()}]);
    let mut writer = s.genomes.begin_genome(StoredKind::Genome).await.unwrap();
    // Uneven pieces, so blocks and bytes fill across appends.
    let mut at = 0;
    let mut numbers = Numbers(7);
    while at < bases.len() {
        let take = (1 + numbers.below(700_000) as usize).min(bases.len() - at);
        writer
            .append(Bytes::copy_from_slice(&bases[at..at + take]))
            .await
            .unwrap();
        at += take;
    }
    writer.commit(&genome, "j1").await.unwrap();
    let total = bases.len() as u64;
    let mut ranges: Vec<(u64, u64)> = vec![(0, total), (0, 1), (total - 1, 1), (total - 3, 3)];
    for &boundary in &BOUNDARIES {
        let boundary = boundary as u64;
        for (before, after) in [(1, 1), (3, 5), (333, 700), (5001, 3002), (4097, 0)] {
            ranges.push((boundary - before, before + after));
        }
    }
    let mut numbers = Numbers(42);
    for _ in 0..400 {
        let offset = numbers.below(total);
        let len = (1 + numbers.below(300_000)).min(total - offset);
        ranges.push((offset, len));
    }
    for (offset, len) in ranges {
        let read = s.genomes.read_genome(&genome.hash, offset, len).await;
        let read = read.unwrap_or_else(|err| panic!("bases {offset}+{len}: {err}"));
        let expected = &bases[offset as usize..(offset + len) as usize];
        assert!(
            read[..] == expected[..],
            "bases {offset}+{len} differ from those appended"
        );
    }
    // A worker reading the stored genome as an input sees the same bases.
    let piece = s.inputs.read_input(&genome.hash, 4_194_000, 1001).await;
    assert_eq!(&piece.unwrap()[..], &bases[4_194_000..4_195_001]);
    let past_end = s.genomes.read_genome(&genome.hash, total - 2, 3).await;
    assert!(past_end.is_err(), "a range past the end: {past_end:?}");
}
