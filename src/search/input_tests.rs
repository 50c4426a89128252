//! Unit tests of the streaming chunker: records, chunk boundaries, gzip, refused inputs.

use super::*;

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
