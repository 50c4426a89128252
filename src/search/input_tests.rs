//! Unit tests of the streaming chunker: records, chunk boundaries, gzip, refused inputs.

use super::*;
use std::io::Write;

fn chunk_all(
    input: &[u8],
    chunk_len: usize,
    overlap: usize,
    piece: usize,
) -> (Vec<SequenceChunk>, Vec<RecordInfo>) {
    let mut chunker = Chunker::new(chunk_len, overlap);
    let mut chunks = Vec::new();
    for part in input.chunks(piece.max(1)) {
        chunker.push(part, &mut |c| chunks.push(c)).unwrap();
    }
    let records = chunker.finish(&mut |c| chunks.push(c)).unwrap();
    (chunks, records)
}

#[test]
fn records_and_chunks_of_a_two_record_fasta() {
    let input = b">one desc\nACGTA\nCG\r\n>two\nTTTT\n";
    for piece in [1, 2, 3, 7, 100] {
        let (chunks, records) = chunk_all(input, 3, 2, piece);
        assert_eq!(
            records,
            vec![
                RecordInfo {
                    name: "one".into(),
                    length: 7
                },
                RecordInfo {
                    name: "two".into(),
                    length: 4
                }
            ]
        );
        let view: Vec<(u32, u64, usize, &[u8])> = chunks
            .iter()
            .map(|c| (c.record, c.record_offset, c.owned_len, c.bases.as_slice()))
            .collect();
        assert_eq!(
            view,
            vec![
                (0, 0, 3, &b"ACGTA"[..]),
                (0, 3, 3, &b"TACG"[..]),
                (0, 6, 1, &b"G"[..]),
                (1, 0, 3, &b"TTTT"[..]),
                (1, 3, 1, &b"T"[..]),
            ],
            "piece size {piece}"
        );
        let indices: Vec<u32> = chunks.iter().map(|c| c.index).collect();
        assert_eq!(indices, (0..5).collect::<Vec<_>>());
    }
}

#[test]
fn gzip_is_sniffed_and_decoded_in_small_pushes() {
    use flate2::{write::GzEncoder, Compression};
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder
        .write_all(b">one desc\r\nACGTA\r\nCG\r\n>two\nTTTT\n")
        .unwrap();
    let gz = encoder.finish().unwrap();
    let (chunks, records) = chunk_all(&gz, 3, 2, 1);
    assert_eq!(
        records[0],
        RecordInfo {
            name: "one".into(),
            length: 7
        }
    );
    assert_eq!(
        records[1],
        RecordInfo {
            name: "two".into(),
            length: 4
        }
    );
    assert_eq!(chunks[0].bases, b"ACGTA");
    let truncated = &gz[..gz.len() / 2];
    let mut chunker = Chunker::new(3, 2);
    let result = chunker
        .push(truncated, &mut |_| {})
        .and_then(|()| chunker.finish(&mut |_| {}));
    assert!(result.is_err(), "a truncated gzip stream is an error");
}

#[test]
fn plain_sequence_gets_the_plain_name() {
    let mut chunker = Chunker::new(10, 0).plain_name("reads.txt");
    let mut chunks = Vec::new();
    chunker
        .push(b"acgt\nacgt", &mut |c| chunks.push(c))
        .unwrap();
    let records = chunker.finish(&mut |c| chunks.push(c)).unwrap();
    assert_eq!(records[0].name, "reads.txt");
    assert_eq!(chunks[0].bases, b"acgtacgt");
}

#[test]
fn empty_and_binary_inputs_are_refused() {
    let finish = |input: &[u8]| {
        let mut chunker = Chunker::new(10, 0);
        chunker.push(input, &mut |_| {})?;
        chunker.finish(&mut |_| {})
    };
    assert!(matches!(finish(b""), Err(InputError::Empty)));
    assert!(matches!(finish(b">only\n\n"), Err(InputError::Empty)));
    assert!(matches!(
        finish(b"AC\0GT"),
        Err(InputError::NotSequence { .. })
    ));
    assert!(matches!(
        finish(b"12345 678, 90;"),
        Err(InputError::NotSequence { .. })
    ));
}

const MIB: usize = 1024 * 1024;

fn gzip(data: &[u8]) -> Vec<u8> {
    use flate2::{write::GzEncoder, Compression};
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// A FASTA of exactly `size` bytes: 60-column lines of varied bases under one header.
fn fasta_of_size(size: usize) -> Vec<u8> {
    let mut text = b">chr1 made for the size limit\n".to_vec();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    while text.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let byte = if text.len() % 61 == 60 {
            b'\n'
        } else {
            b"ACGTacgtN"[(state % 9) as usize]
        };
        text.push(byte);
    }
    text
}

/// Pushes `input` in `piece`-byte pushes; returns the chunks, the outcome, and the raw bytes
/// pushed before the first error.
fn chunk_limited(
    input: &[u8],
    limit: u64,
    piece: usize,
) -> (
    Vec<SequenceChunk>,
    Result<Vec<RecordInfo>, InputError>,
    usize,
) {
    let mut chunker = Chunker::new(MIB, 7).with_max_decompressed(limit);
    let mut chunks = Vec::new();
    let mut pushed = 0;
    for part in input.chunks(piece) {
        pushed += part.len();
        if let Err(err) = chunker.push(part, &mut |c| chunks.push(c)) {
            return (chunks, Err(err), pushed);
        }
    }
    let outcome = chunker.finish(&mut |c| chunks.push(c));
    (chunks, outcome, pushed)
}

#[test]
fn gzip_bomb_is_refused_after_about_the_limit() {
    let limit = 8 * MIB as u64;
    let bomb = gzip(&vec![b'A'; 64 * MIB]);
    assert!(bomb.len() < 256 * 1024, "bomb is {} bytes", bomb.len());

    // All at once, as one large upload frame: the chunker must stop inflating at the limit.
    let mut chunker = Chunker::new(MIB, 7).with_max_decompressed(limit);
    let mut owned = 0u64;
    let err = chunker
        .push(&bomb, &mut |c| owned += c.owned_len as u64)
        .unwrap_err();
    // Stopped a fraction of the way in: the rest of the bomb was never inflated.
    assert!(
        matches!(err, InputError::ExpandsPastLimit { limit: l, compressed }
            if l == limit && compressed < bomb.len() as u64 / 4),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("after decompression"), "{message}");
    assert!(message.contains("the limit is 8388608 bytes"), "{message}");
    assert!(chunker.decompressed_len() <= limit);
    assert!(owned <= limit);
    assert!(chunker.buffered_len() <= MIB + 7 + 64 * 1024);

    // In 1 KiB pushes: what was pushed before the refusal decompresses to at most the limit
    // plus the expansion of one push.
    let (_, outcome, pushed) = chunk_limited(&bomb, limit, 1024);
    assert!(matches!(outcome, Err(InputError::ExpandsPastLimit { .. })));
    let mut prefix = flate2::read::GzDecoder::new(&bomb[..pushed]);
    let mut expanded = 0usize;
    let mut buffer = vec![0u8; 64 * 1024];
    while let Ok(n @ 1..) = std::io::Read::read(&mut prefix, &mut buffer) {
        expanded += n;
    }
    assert!(expanded as u64 > limit, "refused too early: {expanded}");
    assert!(
        expanded as u64 <= limit + 2 * MIB as u64,
        "refused only after {expanded} decompressed bytes"
    );
}

#[test]
fn gzip_at_the_limit_passes_and_chunks_like_the_plain_input() {
    let limit = 8 * MIB;
    let plain = fasta_of_size(limit);
    let compressed = gzip(&plain);
    let (plain_chunks, plain_records, _) = chunk_limited(&plain, limit as u64, 64 * 1024);
    let (gz_chunks, gz_records, _) = chunk_limited(&compressed, limit as u64, 4096);
    assert_eq!(plain_records.unwrap(), gz_records.unwrap());
    assert!(plain_chunks.len() >= 8);
    assert!(
        plain_chunks == gz_chunks,
        "gzip chunks differ from plain ones"
    );

    // One byte more and it is refused, compressed or not.
    let mut over = plain;
    over.push(b'A');
    let (_, outcome, _) = chunk_limited(&gzip(&over), limit as u64, 4096);
    assert!(matches!(outcome, Err(InputError::ExpandsPastLimit { .. })));
    let (_, outcome, _) = chunk_limited(&over, limit as u64, 64 * 1024);
    let err = outcome.unwrap_err();
    assert!(
        matches!(err, InputError::TooLarge { limit: l } if l == limit as u64),
        "{err}"
    );
}

#[test]
fn plain_input_counts_against_the_same_limit_even_in_one_push() {
    let limit = 100u64;
    let finish = |input: &[u8]| {
        let mut chunker = Chunker::new(16, 3).with_max_decompressed(limit);
        chunker.push(input, &mut |_| {})?;
        chunker.finish(&mut |_| {})
    };
    assert!(finish(&[b'C'; 100]).is_ok());
    assert!(matches!(
        finish(&[b'C'; 101]),
        Err(InputError::TooLarge { limit: 100 })
    ));
    // Inputs shorter than the gzip magic are decided at `finish`, and still counted.
    let mut tiny = Chunker::new(16, 3).with_max_decompressed(0);
    tiny.push(b"A", &mut |_| {}).unwrap();
    assert!(matches!(
        tiny.finish(&mut |_| {}),
        Err(InputError::TooLarge { limit: 0 })
    ));
}

#[test]
fn bases_over_the_limit_are_refused() {
    let finish = |max_bases: u64| {
        let mut chunker = Chunker::new(3, 1).with_max_bases(max_bases);
        chunker.push(b">a\nACGT\n>b\nACGT\n", &mut |_| {})?;
        chunker.finish(&mut |_| {})
    };
    assert!(finish(8).is_ok());
    assert!(matches!(
        finish(7),
        Err(InputError::TooManyBases { limit: 7 })
    ));
}

#[test]
fn headerless_text_whose_letters_are_mostly_not_bases_is_refused() {
    let list = b"milk\neggs\nbread\nolive oil\ncoffee\npotatoes\nlemons\n";
    let mut chunker = Chunker::new(1000, 0);
    let outcome = chunker
        .push(list, &mut |_| {})
        .and_then(|()| chunker.finish(&mut |_| {}));
    let err = outcome.expect_err("a shopping list is not DNA");
    assert!(err.to_string().contains("reads as text, not DNA"), "{err}");
    // The same letters under a FASTA header were declared a sequence: taken as written.
    let mut fasta = b">list\n".to_vec();
    fasta.extend_from_slice(list);
    let mut chunker = Chunker::new(1000, 0);
    chunker.push(&fasta, &mut |_| {}).expect("declared FASTA");
    chunker.finish(&mut |_| {}).expect("declared FASTA");
    // A plain sequence of ambiguity codes alone is DNA too, however short.
    for codes in [&b"D\n"[..], b"RYKMSWBDHVN\n"] {
        let mut chunker = Chunker::new(1000, 0);
        chunker.push(codes, &mut |_| {}).expect("codes");
        chunker.finish(&mut |_| {}).expect("codes");
    }
    // Mostly bases with a word of text mixed in: one letter in ten that is no code is refused.
    let mut chunker = Chunker::new(1000, 0);
    let outcome = chunker
        .push(b"ACGTACGTACGThello\n", &mut |_| {})
        .and_then(|()| chunker.finish(&mut |_| {}));
    assert!(outcome.is_err(), "e, l, l, o are no nucleotide codes");
    // Soft-masked bases with a few ambiguity codes pass.
    let mut chunker = Chunker::new(1000, 0);
    chunker
        .push(b"acgtnnACGTRYacgt\n", &mut |_| {})
        .expect("bases");
    chunker.finish(&mut |_| {}).expect("bases");
}
