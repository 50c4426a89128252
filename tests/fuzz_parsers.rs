//! Property-based fuzzing of every parser that reads bytes from outside: the frame decoder, the
//! message parser and the FASTA/gzip chunker. Random and structure-aware garbage must never panic,
//! never grow memory past the documented bounds, and valid input must still read exactly as a
//! naive reference written here says it should.

use std::collections::VecDeque;
use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use gridwatch::protocol::{
    classify_decode_error, Connection, ErrorCode, Message, ProtocolError, DEFAULT_MAX_FRAME,
};
use gridwatch::search::{Chunker, InputError, RecordInfo, SequenceChunk};
use proptest::prelude::*;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

// ---------------------------------------------------------------------------------------------
// Frame decoder
// ---------------------------------------------------------------------------------------------

/// A peer that delivers a byte stream in fixed pieces, then closes, and records the largest read
/// buffer the connection ever offered it (how much memory the decoder set aside for a frame).
struct ScriptedPeer {
    pieces: VecDeque<Vec<u8>>,
    largest_offer: usize,
}

impl ScriptedPeer {
    /// Cuts `stream` at `cuts` (positions, in any order; out-of-range ones are ignored).
    fn new(stream: &[u8], cuts: &[usize]) -> Self {
        let mut at: Vec<usize> = cuts
            .iter()
            .copied()
            .filter(|&c| c > 0 && c < stream.len())
            .collect();
        at.sort_unstable();
        at.dedup();
        let mut pieces = VecDeque::new();
        let mut start = 0;
        for end in at.into_iter().chain(std::iter::once(stream.len())) {
            if end > start {
                pieces.push_back(stream[start..end].to_vec());
            }
            start = end;
        }
        Self {
            pieces,
            largest_offer: 0,
        }
    }
}

impl AsyncRead for ScriptedPeer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.largest_offer = self.largest_offer.max(buf.remaining());
        if let Some(mut piece) = self.pieces.pop_front() {
            let n = piece.len().min(buf.remaining());
            buf.put_slice(&piece[..n]);
            if n < piece.len() {
                piece.drain(..n);
                self.pieces.push_front(piece);
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ScriptedPeer {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// How a stream of frames ends.
#[derive(Debug, PartialEq, Eq)]
enum StreamEnd {
    /// Closed between frames.
    Clean,
    /// Closed inside a length prefix or a payload.
    Truncated,
    /// A length prefix announced this many bytes, over the limit.
    TooLarge(usize),
}

/// The framing rule, written independently: 4-byte big-endian length, then the payload.
fn reference_frames(mut stream: &[u8], max_frame: usize) -> (Vec<Vec<u8>>, StreamEnd) {
    let mut frames = Vec::new();
    loop {
        if stream.is_empty() {
            return (frames, StreamEnd::Clean);
        }
        if stream.len() < 4 {
            return (frames, StreamEnd::Truncated);
        }
        let size = u32::from_be_bytes([stream[0], stream[1], stream[2], stream[3]]) as usize;
        if size > max_frame {
            return (frames, StreamEnd::TooLarge(size));
        }
        if stream.len() < 4 + size {
            return (frames, StreamEnd::Truncated);
        }
        frames.push(stream[4..4 + size].to_vec());
        stream = &stream[4 + size..];
    }
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
        .block_on(future)
}

/// Reads every frame the connection yields and how the stream ended; any other error fails.
fn decode_frames(
    stream: &[u8],
    cuts: &[usize],
    max_frame: usize,
) -> (Vec<Vec<u8>>, StreamEnd, usize) {
    block_on(async {
        let mut conn = Connection::new(ScriptedPeer::new(stream, cuts)).with_max_frame(max_frame);
        let mut frames = Vec::new();
        let end = loop {
            match conn.read_frame().await {
                Ok(Some(frame)) => frames.push(frame.to_vec()),
                Ok(None) => break StreamEnd::Clean,
                Err(ProtocolError::Truncated) => break StreamEnd::Truncated,
                Err(err @ ProtocolError::FrameTooLarge { size, limit }) => {
                    assert_eq!(limit, max_frame);
                    assert_eq!(err.code(), ErrorCode::FrameTooLarge);
                    break StreamEnd::TooLarge(size);
                }
                Err(other) => panic!("unexpected error {other}"),
            }
        };
        (frames, end, conn.get_ref().largest_offer)
    })
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    frame
}

/// A frame payload: random bytes, or a real message.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..80),
        "[a-z0-9-]{0,20}"
            .prop_map(|id| { serde_json::to_vec(&Message::QueryStatus { job_id: id }).unwrap() }),
        Just(br#"{"v":1,"type":"list_jobs"}"#.to_vec()),
    ]
}

/// Whole frames, then an ending that may cut, corrupt or extend the stream.
fn frame_stream() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(payload(), 0..6),
        0usize..4,
        any::<prop::sample::Index>(),
        prop::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(|(payloads, ending, cut, garbage)| {
            let mut stream: Vec<u8> = payloads.iter().flat_map(|p| framed(p)).collect();
            match ending {
                0 => {}
                1 if !stream.is_empty() => stream.truncate(cut.index(stream.len())),
                2 => stream.extend_from_slice(&garbage),
                _ => {
                    let at = cut.index(stream.len() + 1);
                    stream.splice(at..at, garbage);
                }
            }
            stream
        })
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..600, 0..12)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Random bytes, in random pieces, read exactly as the reference framing says.
    #[test]
    fn random_bytes_frame_like_the_reference(
        stream in prop::collection::vec(any::<u8>(), 0..600),
        cuts in cuts(),
        max_frame in prop_oneof![0usize..64, Just(DEFAULT_MAX_FRAME)],
    ) {
        let (frames, end, _) = decode_frames(&stream, &cuts, max_frame);
        let (expected, expected_end) = reference_frames(&stream, max_frame);
        prop_assert_eq!(frames, expected);
        prop_assert_eq!(end, expected_end);
    }

    /// Real frames, truncated, spliced with garbage or followed by it: the decoder yields the
    /// frames the reference sees, never a frame shifted by the garbage.
    #[test]
    fn structured_streams_frame_like_the_reference(
        stream in frame_stream(),
        cuts in cuts(),
        max_frame in prop_oneof![0usize..100, Just(DEFAULT_MAX_FRAME)],
    ) {
        let (frames, end, _) = decode_frames(&stream, &cuts, max_frame);
        let (expected, expected_end) = reference_frames(&stream, max_frame);
        prop_assert_eq!(frames, expected);
        prop_assert_eq!(end, expected_end);
    }

    /// A length over the limit is refused with `FrameTooLarge`, and the decoder never offers a
    /// read buffer anywhere near the announced size.
    #[test]
    fn huge_announced_length_is_refused_without_allocating_it(
        before in prop::collection::vec(payload(), 0..4),
        size in (DEFAULT_MAX_FRAME as u32 + 1)..=u32::MAX,
        tail in prop::collection::vec(any::<u8>(), 0..64),
        cuts in cuts(),
    ) {
        let mut stream: Vec<u8> = before.iter().flat_map(|p| framed(p)).collect();
        stream.extend_from_slice(&size.to_be_bytes());
        stream.extend_from_slice(&tail);
        let (frames, end, largest_offer) = decode_frames(&stream, &cuts, DEFAULT_MAX_FRAME);
        prop_assert_eq!(frames, before);
        prop_assert_eq!(end, StreamEnd::TooLarge(size as usize));
        prop_assert!(largest_offer <= 64 * 1024, "offered a {}-byte read buffer", largest_offer);
    }

    /// A garbage frame is refused (or, by chance, parsed) on its own; the valid message after it
    /// is read intact.
    #[test]
    fn valid_message_after_a_garbage_frame_reads_intact(
        garbage in prop::collection::vec(any::<u8>(), 0..200),
        job_id in "[a-zA-Z0-9_-]{1,40}",
        cuts in cuts(),
    ) {
        let valid = Message::QueryStatus { job_id };
        let mut stream = framed(&garbage);
        stream.extend(framed(&serde_json::to_vec(&valid).unwrap()));
        let outcome = block_on(async {
            let mut conn = Connection::new(ScriptedPeer::new(&stream, &cuts));
            let first = conn.read_message().await;
            let second = conn.read_message().await;
            (first, second)
        });
        match outcome.0 {
            Ok(Some(_)) => {}
            Err(ProtocolError::Decode { code, .. }) => prop_assert!(matches!(
                code,
                ErrorCode::BadJson | ErrorCode::UnknownType | ErrorCode::BadMessage
            )),
            other => prop_assert!(false, "garbage frame gave {:?}", other),
        }
        prop_assert_eq!(outcome.1.unwrap(), Some(valid));
    }
}

// ---------------------------------------------------------------------------------------------
// Message parser
// ---------------------------------------------------------------------------------------------

/// Message types the protocol has had; a random one of these with random fields probes each
/// variant's field checks.
const TYPE_NAMES: &[&str] = &[
    "hello",
    "welcome",
    "submit_job",
    "ready",
    "accepted",
    "query_status",
    "job_status",
    "get_results",
    "results_header",
    "result_chunk",
    "cancel",
    "cancelled",
    "list_jobs",
    "jobs",
    "lease",
    "task",
    "no_task",
    "extend",
    "extended",
    "put_result",
    "result_stored",
    "ack",
    "acked",
    "nack",
    "nacked",
    "error",
    "heartbeat",
    "goodbye",
    "lease_advice",
    "metrics",
    "metrics_ack",
    "worker_down",
    "worker_down_ack",
    "record_alert",
    "record_worker",
    "recorded",
    "list_workers",
    "workers",
    "list_alerts",
    "alerts",
    "forget_worker",
    "worker_forgotten",
];

/// Field names the messages use, plus random ones.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "v",
            "job_id",
            "role",
            "version",
            "token",
            "id",
            "patterns",
            "file_size",
            "chunk",
            "chunk_size",
            "priority",
            "wait_ms",
            "result",
            "code",
            "message",
            "timestamp",
            "pid",
            "outcome",
            "limit",
            "spec",
            "data",
            "job",
            "filename",
            "options",
            "attempt",
        ])
        .prop_map(String::from),
        "[a-z_]{1,10}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        prop::sample::select(vec!["client", "worker", "ACGT", "bad_json", "high", ""])
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(field_name(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// An object with a random or real `type` (or a non-string one) and random fields.
fn message_object() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        4 => prop::sample::select(TYPE_NAMES).prop_map(Value::from),
        1 => ".{0,16}".prop_map(Value::from),
        1 => json_value(),
    ];
    (
        kind,
        prop::collection::btree_map(field_name(), json_value(), 0..6),
        any::<bool>(),
    )
        .prop_map(|(kind, fields, with_type)| {
            let mut object: serde_json::Map<String, Value> = fields.into_iter().collect();
            if with_type {
                object.insert("type".into(), kind);
            } else {
                object.remove("type");
            }
            Value::Object(object)
        })
}

/// Parses like the server does and checks the refusal's classification.
fn parse_and_classify(frame: &[u8]) -> Result<Message, ErrorCode> {
    serde_json::from_slice::<Message>(frame).map_err(|err| {
        let (code, message) = classify_decode_error(frame, &err);
        assert!(!message.is_empty());
        code
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Arbitrary bytes: no panic; bytes that are not JSON are `bad_json`.
    #[test]
    fn random_bytes_are_refused_or_parsed(frame in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Err(code) = parse_and_classify(&frame) {
            let is_json = serde_json::from_slice::<Value>(&frame).is_ok();
            prop_assert_eq!(code == ErrorCode::BadJson, !is_json);
        }
    }

    /// Random objects with random types and fields: never `bad_json`; whatever parses survives a
    /// round trip; a missing or non-string type is `bad_message`.
    #[test]
    fn random_messages_are_classified(object in message_object()) {
        let frame = serde_json::to_vec(&object).unwrap();
        match parse_and_classify(&frame) {
            Ok(message) => {
                let again = serde_json::to_vec(&message).unwrap();
                prop_assert_eq!(serde_json::from_slice::<Message>(&again).unwrap(), message);
            }
            Err(code) => {
                prop_assert_ne!(code, ErrorCode::BadJson);
                if !object.get("type").is_some_and(Value::is_string) {
                    prop_assert_eq!(code, ErrorCode::BadMessage);
                }
            }
        }
    }

    /// A type no variant has, spelled with any characters (quotes, backticks, unicode), is
    /// `unknown_type` whatever fields come with it.
    #[test]
    fn unknown_types_are_unknown_type(
        suffix in ".{0,16}",
        fields in prop::collection::btree_map(field_name(), json_value(), 0..4),
    ) {
        let mut object: serde_json::Map<String, Value> = fields.into_iter().collect();
        object.insert("type".into(), Value::from(format!("zz{suffix}")));
        let frame = serde_json::to_vec(&object).unwrap();
        prop_assert_eq!(parse_and_classify(&frame).unwrap_err(), ErrorCode::UnknownType);
    }

    /// Nesting far past serde_json's recursion limit, bare or inside a real message, closed or
    /// not: an error (`bad_json`), never a stack overflow.
    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow(
        depth in 129usize..200_000,
        opener in prop::sample::select(vec![("[", "]"), ("{\"a\":", "}")]),
        wrapped in any::<bool>(),
        closed in any::<bool>(),
    ) {
        let mut nested = opener.0.repeat(depth);
        nested.push('1');
        if closed {
            nested.push_str(&opener.1.repeat(depth));
        }
        let frame = if wrapped {
            format!(r#"{{"type":"lease","wait_ms":{nested}}}"#)
        } else {
            nested
        };
        let err = serde_json::from_slice::<Message>(frame.as_bytes()).unwrap_err();
        let (code, message) = classify_decode_error(frame.as_bytes(), &err);
        prop_assert_eq!(code, ErrorCode::BadJson);
        prop_assert!(message.contains("recursion limit"), "{}", message);
    }
}

// ---------------------------------------------------------------------------------------------
// FASTA / gzip chunker
// ---------------------------------------------------------------------------------------------

/// Longest record name the chunker keeps.
const MAX_NAME_BYTES: usize = 4096;

/// A FASTA-like file: optional leading plain sequence, records with headers, lines of random
/// lengths ending in `\n` or `\r\n`, lowercase, N runs, blank lines.
fn fasta_text() -> impl Strategy<Value = Vec<u8>> {
    let sequence_line = prop_oneof![
        4 => "[ACGT]{0,40}",
        2 => "[acgtnACGTN]{0,40}",
        1 => "N{1,30}",
        1 => "[RYKMSWBDHVacgt-]{0,20}",
    ];
    let header = prop_oneof!["[a-zA-Z0-9_.|]{0,12}", "[a-zA-Z0-9]{1,8}[ \t][ -~]{0,20}",]
        .prop_map(|name| format!(">{name}"));
    let line = prop_oneof![
        6 => sequence_line,
        1 => header,
        1 => Just(String::new()),
    ];
    (
        prop::collection::vec(line, 0..40),
        prop::collection::vec(any::<bool>(), 40),
        any::<bool>(),
    )
        .prop_map(|(lines, crlf, final_newline)| {
            let mut text = Vec::new();
            for (i, line) in lines.iter().enumerate() {
                if i > 0 {
                    text.extend_from_slice(if crlf[i] { b"\r\n" } else { b"\n" });
                }
                text.extend_from_slice(line.as_bytes());
            }
            if final_newline && !text.is_empty() {
                text.push(b'\n');
            }
            text
        })
}

/// The FASTA rules, written independently: a line (split at `\n`, leading `\r`s skipped) that
/// starts with `>` is a header whose name ends at the first whitespace; other lines are sequence,
/// with every `\r` dropped; sequence before any header belongs to a record named `plain`.
fn reference_records(text: &[u8], plain: &str) -> Vec<(String, Vec<u8>)> {
    let mut records: Vec<(String, Vec<u8>)> = Vec::new();
    for raw in text.split(|&b| b == b'\n') {
        let start = raw.iter().position(|&b| b != b'\r').unwrap_or(raw.len());
        let line = &raw[start..];
        if line.is_empty() {
            continue;
        }
        if let Some(header) = line.strip_prefix(b">") {
            let end = header
                .iter()
                .position(|b| b.is_ascii_whitespace())
                .unwrap_or(header.len());
            let name = &header[..end.min(MAX_NAME_BYTES)];
            records.push((String::from_utf8_lossy(name).into_owned(), Vec::new()));
        } else {
            if records.is_empty() {
                records.push((plain.to_string(), Vec::new()));
            }
            let bases = records.last_mut().map(|r| &mut r.1).expect("a record");
            bases.extend(line.iter().filter(|&&b| b != b'\r'));
        }
    }
    records
}

/// Pushes `input` cut at `cuts` and returns every chunk and the outcome.
fn chunk_pieces(
    chunker: Chunker,
    input: &[u8],
    cuts: &[usize],
) -> (Vec<SequenceChunk>, Result<Vec<RecordInfo>, InputError>) {
    let mut chunker = chunker;
    let mut chunks = Vec::new();
    let peer = ScriptedPeer::new(input, cuts);
    for piece in peer.pieces {
        if let Err(err) = chunker.push(&piece, &mut |c| chunks.push(c)) {
            return (chunks, Err(err));
        }
    }
    let outcome = chunker.finish(&mut |c| chunks.push(c));
    (chunks, outcome)
}

/// Chunks must tile each reference record exactly once, in order, with the right overlap.
fn assert_tiles(
    chunks: &[SequenceChunk],
    records: &[RecordInfo],
    reference: &[(String, Vec<u8>)],
    chunk_len: usize,
    overlap: usize,
) -> Result<(), TestCaseError> {
    let expected: Vec<RecordInfo> = reference
        .iter()
        .map(|(name, bases)| RecordInfo {
            name: name.clone(),
            length: bases.len() as u64,
        })
        .collect();
    prop_assert_eq!(records, &expected[..]);
    let mut next = chunks.iter().peekable();
    let mut index = 0u32;
    for (record, (_, bases)) in reference.iter().enumerate() {
        let mut offset = 0usize;
        while offset < bases.len() {
            let chunk = next.next().ok_or_else(|| {
                TestCaseError::fail(format!("record {record} uncovered from {offset}"))
            })?;
            let owned = chunk_len.min(bases.len() - offset);
            let end = (offset + owned + overlap).min(bases.len());
            prop_assert_eq!(chunk.index, index);
            prop_assert_eq!(chunk.record as usize, record);
            prop_assert_eq!(chunk.record_offset, offset as u64);
            prop_assert_eq!(chunk.owned_len, owned);
            prop_assert_eq!(&chunk.bases[..], &bases[offset..end]);
            offset += owned;
            index += 1;
        }
    }
    prop_assert!(next.peek().is_none(), "chunks past the last record");
    Ok(())
}

fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Arbitrary bytes, plain or behind a gzip magic, in random pieces: an error or chunks,
    /// never a panic.
    #[test]
    fn random_bytes_never_panic_the_chunker(
        mut input in prop::collection::vec(any::<u8>(), 0..600),
        gzip_magic in any::<bool>(),
        cuts in cuts(),
        chunk_len in 0usize..50,
        overlap in 0usize..10,
    ) {
        if gzip_magic {
            input.splice(0..0, [0x1f, 0x8b]);
        }
        let chunker = Chunker::new(chunk_len, overlap).with_max_decompressed(1 << 20);
        let _ = chunk_pieces(chunker, &input, &cuts);
    }

    /// FASTA-like text, plain or gzip-compressed, in random pieces: the owned ranges tile every
    /// record exactly once and the overlap is the next bases of the same record.
    #[test]
    fn fasta_chunks_tile_each_record_exactly_once(
        text in fasta_text(),
        compressed in any::<bool>(),
        level in 0u32..10,
        cuts in cuts(),
        chunk_len in 1usize..50,
        overlap in 0usize..10,
    ) {
        let input = if compressed { gzip(&text, level) } else { text.clone() };
        let chunker = Chunker::new(chunk_len, overlap).plain_name("plain");
        let (chunks, outcome) = chunk_pieces(chunker, &input, &cuts);
        let reference = reference_records(&text, "plain");
        if reference.iter().all(|(_, bases)| bases.is_empty()) {
            prop_assert!(matches!(outcome, Err(InputError::Empty)), "{:?}", outcome);
        } else {
            let records = outcome.map_err(|e| TestCaseError::fail(e.to_string()))?;
            assert_tiles(&chunks, &records, &reference, chunk_len, overlap)?;
        }
    }

    /// A gzip stream cut short is an error, wherever the cut falls.
    #[test]
    fn truncated_gzip_is_an_error(
        text in fasta_text(),
        cut in any::<prop::sample::Index>(),
        cuts in cuts(),
    ) {
        let compressed = gzip(&text, 6);
        let truncated = &compressed[..cut.index(compressed.len())];
        let (_, outcome) = chunk_pieces(Chunker::new(16, 3), truncated, &cuts);
        prop_assert!(outcome.is_err(), "a truncated gzip stream was accepted");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// One record on one 2 MiB line, plain or gzip, in random pieces: between pushes the chunker
    /// holds at most a chunk, its overlap and a record name, however long the line.
    #[test]
    fn long_single_line_record_keeps_memory_bounded(
        compressed in any::<bool>(),
        chunk_len in 64usize..100_000,
        overlap in 0usize..64,
        piece_sizes in prop::collection::vec(1usize..300_000, 1..20),
        name_len in 1usize..10_000,
    ) {
        let mut text = format!(">{} description\n", "n".repeat(name_len)).into_bytes();
        text.extend((0..2usize << 20).map(|i| b"ACGT"[(i * 7 + i / 13) % 4]));
        let input = if compressed { gzip(&text, 1) } else { text };
        let bound = chunk_len + overlap + MAX_NAME_BYTES;
        let mut chunker = Chunker::new(chunk_len, overlap);
        let mut owned = 0u64;
        let mut rest = &input[..];
        let mut sizes = piece_sizes.iter().cycle();
        while !rest.is_empty() {
            let take = (*sizes.next().unwrap()).min(rest.len());
            chunker.push(&rest[..take], &mut |c| owned += c.owned_len as u64).unwrap();
            rest = &rest[take..];
            prop_assert!(
                chunker.buffered_len() <= bound,
                "holding {} bytes, bound {}", chunker.buffered_len(), bound
            );
        }
        let records = chunker.finish(&mut |c| owned += c.owned_len as u64).unwrap();
        prop_assert_eq!(records[0].length, 2u64 << 20);
        prop_assert_eq!(owned, 2u64 << 20);
    }
}
