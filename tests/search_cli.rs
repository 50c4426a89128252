//! `gridwatch search` as a user runs it: the real binary on small files made in a temp dir, with
//! hand-counted answers, and every user error as one line with exit code 2.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn gridwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gridwatch"))
        .args(args)
        .output()
        .expect("gridwatch runs")
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write fixture");
    path
}

/// Runs a search and returns stdout, asserting success.
fn search(file: &Path, extra: &[&str]) -> String {
    let mut args = vec!["search", file.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    let output = gridwatch(&args);
    assert!(
        output.status.success(),
        "search failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// The total from `--format count` output.
fn total(file: &Path, extra: &[&str]) -> u64 {
    let out = search(file, extra);
    let line = out
        .lines()
        .find(|l| l.starts_with("total\t"))
        .expect("total line");
    line.rsplit('\t')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a number")
}

#[test]
fn a_match_across_a_line_break_is_found() {
    let dir = tempfile::tempdir().expect("temp dir");
    // AGGTCCAT starts at base 5 (1-based) and is split "AG" | "GTCCAT" by the line break.
    let file = write_file(dir.path(), "g.fa", b">chr1 test\nACGTAG\nGTCCATTT\n");
    assert_eq!(total(&file, &["--pattern", "AGGTCCAT"]), 1);
    let tsv = search(&file, &["--pattern", "AGGTCCAT", "--format", "tsv"]);
    assert_eq!(
        tsv,
        "seqID\tpatternName\tpattern\tstrand\tstart\tend\tmatched\n\
         chr1\tAGGTCCAT\tAGGTCCAT\t+\t5\t12\tAGGTCCAT\n"
    );
    let bed = search(&file, &["--pattern", "AGGTCCAT", "--format", "bed"]);
    assert_eq!(bed, "chr1\t4\t12\tAGGTCCAT\t0\t+\n");
}

#[test]
fn a_match_across_a_record_boundary_does_not_count() {
    let dir = tempfile::tempdir().expect("temp dir");
    // "ACGTAGG" + "TCCATT" would contain AGGTCCAT if the records were joined.
    let file = write_file(dir.path(), "g.fa", b">a\nACGTAGG\n>b\nTCCATT\n");
    assert_eq!(total(&file, &["--pattern", "AGGTCCAT"]), 0);
    assert_eq!(total(&file, &["--pattern", "AGG"]), 1);
}

#[test]
fn crlf_input_gives_the_same_hits_as_lf() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_file(dir.path(), "g.fa", b">chr1 test\r\nACGTAG\r\nGTCCATTT\r\n");
    let tsv = search(&file, &["--pattern", "AGGTCCAT", "--format", "tsv"]);
    assert!(
        tsv.ends_with("chr1\tAGGTCCAT\tAGGTCCAT\t+\t5\t12\tAGGTCCAT\n"),
        "{tsv}"
    );
}

#[test]
fn gzip_input_is_read_transparently() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(b">chr1\nACGTAG\nGTCCATTT\n>chr2\nAGGTCCAT\n")
        .expect("compress");
    let gz = encoder.finish().expect("compress");
    // The name does not end in .gz: gzip is recognised from its magic bytes.
    let file = write_file(dir.path(), "genome.dat", &gz);
    assert_eq!(total(&file, &["--pattern", "AGGTCCAT"]), 2);
}

#[test]
fn a_palindrome_on_both_strands_is_reported_on_each_strand_as_seqkit_does() {
    let dir = tempfile::tempdir().expect("temp dir");
    // GAATTC is its own reverse complement: seqkit locate reports it once on + and once on -.
    let file = write_file(dir.path(), "p.fa", b">p\nTTGAATTCAA\n");
    let tsv = search(
        &file,
        &["-p", "GAATTC", "--strand", "both", "--format", "tsv"],
    );
    assert_eq!(
        tsv,
        "seqID\tpatternName\tpattern\tstrand\tstart\tend\tmatched\n\
         p\tGAATTC\tGAATTC\t+\t3\t8\tGAATTC\n\
         p\tGAATTC\tGAATTC\t-\t3\t8\tGAATTC\n"
    );
    assert_eq!(total(&file, &["-p", "GAATTC"]), 1);
}

#[test]
fn reverse_strand_hits_print_the_reverse_complement_as_matched() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Bases 16..19 read GTTt; on the minus strand that is aAAC, which RAAC matches.
    let file = write_file(dir.path(), "s.fa", b">s1\nAAGAATTCtgAACCGGTTt\n");
    let tsv = search(
        &file,
        &["-p", "RAAC", "--strand", "both", "--format", "tsv"],
    );
    assert_eq!(
        tsv,
        "seqID\tpatternName\tpattern\tstrand\tstart\tend\tmatched\n\
         s1\tRAAC\tRAAC\t+\t10\t13\tgAAC\n\
         s1\tRAAC\tRAAC\t-\t16\t19\taAAC\n"
    );
}

#[test]
fn overlapping_matches_all_count() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_file(dir.path(), "a.txt", b"AAAA\n");
    assert_eq!(total(&file, &["-p", "AA"]), 3);
}

#[test]
fn iupac_codes_and_n_runs_match_their_base_sets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_file(dir.path(), "n.fa", b">n\nACGTNNNNacgt\n");
    assert_eq!(
        total(&file, &["-p", "N"]),
        12,
        "pattern N matches every letter"
    );
    assert_eq!(
        total(&file, &["-p", "R"]),
        4,
        "R is A or G; sequence N is not a base"
    );
    assert_eq!(total(&file, &["-p", "NN"]), 11);
    assert_eq!(
        total(&file, &["-p", "TN"]),
        1,
        "the final t has no base after it"
    );
    assert_eq!(total(&file, &["-p", "AC", "-p", "WN"]), 2 + 3);
}

#[test]
fn lower_case_matches_unless_case_sensitive() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_file(dir.path(), "c.fa", b">c\nacgtACGT\n");
    assert_eq!(total(&file, &["-p", "ACGT"]), 2);
    assert_eq!(total(&file, &["-p", "ACGT", "--case-sensitive"]), 1);
    assert_eq!(total(&file, &["-p", "acgt", "--case-sensitive"]), 1);
}

#[test]
fn patterns_file_and_json_output() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_file(dir.path(), "g.fa", b">chr1\nAAGGTTAAGG\n");
    let patterns = write_file(
        dir.path(),
        "p.fa",
        b">site1\nAAGG\n# comment\n\n>GGTT\nGGTT\n",
    );
    let out = search(
        &file,
        &["--patterns", patterns.to_str().expect("utf-8"), "--json"],
    );
    let json: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(json["total"], 3);
    assert_eq!(json["patterns"][0]["name"], "site1");
    assert_eq!(json["patterns"][0]["count"], 2);
    assert_eq!(json["patterns"][1]["name"], "GGTT");
    assert_eq!(json["records"][0]["length"], 10);
}

/// Regression: a FASTA pattern wrapped over two lines was read as two patterns. The file mixes
/// all three formats; the genome is hand-laid: GGATCC at 0 and 30, GAATTC at 10, CCCGGG at 20,
/// so the wrapped 16-base record matches once, at 10, and its halves are not patterns.
#[test]
fn a_fasta_pattern_wrapped_over_two_lines_is_one_pattern() {
    let dir = tempfile::tempdir().expect("temp dir");
    let genome = b"GGATCCTTTTGAATTCAAAACCCGGGTTTTGGATCC";
    let fasta = [
        b">chr1\n".as_slice(),
        &genome[..20],
        b"\n",
        &genome[20..],
        b"\n",
    ]
    .concat();
    let file = write_file(dir.path(), "g.fa", &fasta);
    let patterns = write_file(
        dir.path(),
        "p.txt",
        b"# one plain line, one TSV line, then FASTA\nGAATTC\nsmaI\tCCCGGG\n\n\
          >bam two lines\nGGA\nTCC\n>long_site\nGAATTCAAAA\nCCCGGG\n",
    );
    let out = search(
        &file,
        &[
            "--patterns",
            patterns.to_str().expect("utf-8"),
            "--format",
            "tsv",
        ],
    );
    let expected = "seqID\tpatternName\tpattern\tstrand\tstart\tend\tmatched\n\
                    chr1\tbam\tGGATCC\t+\t1\t6\tGGATCC\n\
                    chr1\tGAATTC\tGAATTC\t+\t11\t16\tGAATTC\n\
                    chr1\tlong_site\tGAATTCAAAACCCGGG\t+\t11\t26\tGAATTCAAAACCCGGG\n\
                    chr1\tsmaI\tCCCGGG\t+\t21\t26\tCCCGGG\n\
                    chr1\tbam\tGGATCC\t+\t31\t36\tGGATCC\n";
    assert_eq!(out, expected);
}

/// Runs a failing command and returns its single stderr line.
fn user_error(args: &[&str]) -> String {
    let output = gridwatch(args);
    assert_eq!(output.status.code(), Some(2), "exit code for {args:?}");
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn user_errors_are_one_line_naming_the_input_with_exit_code_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.fa");
    let missing = missing.to_str().expect("utf-8");
    assert!(user_error(&["search", missing, "-p", "ACGT"]).contains("missing.fa"));

    let empty = write_file(dir.path(), "empty.fa", b"");
    let message = user_error(&["search", empty.to_str().expect("utf-8"), "-p", "ACGT"]);
    assert!(
        message.contains("empty.fa") && message.contains("empty"),
        "{message}"
    );

    let headers_only = write_file(dir.path(), "headers.fa", b">a\n>b\n");
    let message = user_error(&[
        "search",
        headers_only.to_str().expect("utf-8"),
        "-p",
        "ACGT",
    ]);
    assert!(message.contains("headers.fa"), "{message}");

    let binary = write_file(
        dir.path(),
        "blob.bin",
        &[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0],
    );
    let message = user_error(&["search", binary.to_str().expect("utf-8"), "-p", "ACGT"]);
    assert!(
        message.contains("blob.bin") && message.contains("binary"),
        "{message}"
    );

    let text = write_file(
        dir.path(),
        "notes.txt",
        "1234 5678, 90; 12.34 = 56 (78) / 90 ".repeat(50).as_bytes(),
    );
    let message = user_error(&["search", text.to_str().expect("utf-8"), "-p", "ACGT"]);
    assert!(
        message.contains("notes.txt") && message.contains("not a sequence"),
        "{message}"
    );

    let good = write_file(dir.path(), "good.fa", b">a\nACGT\n");
    let good = good.to_str().expect("utf-8");
    let message = user_error(&["search", good, "-p", "AGGX"]);
    assert!(
        message.contains("AGGX") && message.contains('X'),
        "{message}"
    );
    assert!(user_error(&["search", good, "-p", ""]).contains("empty"));
    assert!(user_error(&["search", good]).contains("--pattern"));

    let corrupt = write_file(
        dir.path(),
        "bad.gz",
        &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff],
    );
    let message = user_error(&["search", corrupt.to_str().expect("utf-8"), "-p", "ACGT"]);
    assert!(message.contains("bad.gz"), "{message}");

    assert!(
        user_error(&["search", dir.path().to_str().expect("utf-8"), "-p", "A"]).contains("cannot")
    );
}

#[test]
fn generate_is_deterministic_and_plants_exactly_the_requested_copies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = |name: &str, seed: &str| {
        let path = dir.path().join(name);
        let status = gridwatch(&[
            "generate",
            "--size",
            "300KiB",
            "--records",
            "3",
            "--line-width",
            "70",
            "--seed",
            seed,
            "--plant",
            "GATTACAGATTACAGATTACAGAT:40",
            "--out",
            path.to_str().expect("utf-8"),
        ]);
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        std::fs::read(path).expect("generated file")
    };
    let first = out("a.fa", "7");
    assert_eq!(first, out("b.fa", "7"), "same seed, same bytes");
    assert_ne!(first, out("c.fa", "8"), "another seed, another genome");

    // Independent count: strip each record's line breaks and slide a window.
    let text = String::from_utf8(first).expect("ascii");
    let mut naive = 0;
    let mut bases = 0;
    for record in text.split('>').skip(1) {
        let sequence: String = record.lines().skip(1).collect();
        bases += sequence.len();
        naive += (0..sequence.len().saturating_sub(23))
            .filter(|&i| &sequence[i..i + 24] == "GATTACAGATTACAGATTACAGAT")
            .count();
    }
    assert_eq!(bases, 300 * 1024);
    assert_eq!(naive, 40);
    assert!(text
        .lines()
        .all(|line| line.len() <= 70 || line.starts_with('>')));
    let file = dir.path().join("a.fa");
    assert_eq!(total(&file, &["-p", "GATTACAGATTACAGATTACAGAT"]), 40);
}

#[test]
fn generate_refuses_impossible_requests() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("x.fa");
    let path = path.to_str().expect("utf-8");
    user_error(&[
        "generate",
        "--size",
        "1KiB",
        "--plant",
        "ACGTACGT:1000",
        "--out",
        path,
    ]);
    let output = gridwatch(&["generate", "--size", "12XB", "--out", path]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "clap reports bad values with exit code 2"
    );
}

/// Deterministic pseudo-random bases (a 64-bit LCG), some in lower case.
fn random_bases(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let base = b"ACGT"[(state >> 33) as usize % 4];
            if (state >> 40) % 7 == 0 {
                base.to_ascii_lowercase()
            } else {
                base
            }
        })
        .collect()
}

/// FASTA text of `records`, wrapped at 13 bases so matches cross line breaks.
fn fasta(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut text = Vec::new();
    for (name, bases) in records {
        text.extend_from_slice(format!(">{name} description\n").as_bytes());
        for line in bases.chunks(13) {
            text.extend_from_slice(line);
            text.push(b'\n');
        }
    }
    text
}

/// The forward-strand TSV lines of a case-insensitive search, by a plain loop over every
/// position: (seqID as shown, line).
fn naive_lines(shown: &str, bases: &[u8], patterns: &[&str]) -> Vec<String> {
    let mut lines = Vec::new();
    for start in 0..bases.len() {
        for pattern in patterns {
            let end = start + pattern.len();
            if end > bases.len() {
                continue;
            }
            let window = &bases[start..end];
            if window.eq_ignore_ascii_case(pattern.as_bytes()) {
                lines.push(format!(
                    "{shown}\t{pattern}\t{pattern}\t+\t{}\t{end}\t{}",
                    start + 1,
                    String::from_utf8_lossy(window)
                ));
            }
        }
    }
    lines
}

/// Runs `gridwatch search` with `stdin` fed to standard input; returns stdout, asserting success.
fn search_with_stdin(args: &[&str], stdin: &[u8]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridwatch"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("gridwatch runs");
    let mut input = child.stdin.take().expect("stdin");
    let bytes = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&bytes);
    });
    let output = child.wait_with_output().expect("gridwatch ends");
    feeder.join().expect("stdin written");
    assert!(
        output.status.success(),
        "search {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

#[test]
fn stdin_and_several_files_are_searched_in_order_with_ambiguous_records_named_by_input() {
    let dir = tempfile::tempdir().expect("temp dir");
    let patterns = ["ACG", "GGTA"];
    // chr1 is in both files, so each of its lines must say which file; chrA and chrB are unique.
    let a_chr1 = random_bases(1, 3000);
    let a_chr_a = random_bases(2, 1700);
    let b_chr1 = random_bases(3, 2500);
    let b_chr_b = random_bases(4, 900);
    let piped = random_bases(5, 2200);
    let file_a = write_file(
        dir.path(),
        "a.fa",
        &fasta(&[("chr1", &a_chr1), ("chrA", &a_chr_a)]),
    );
    let file_b = write_file(
        dir.path(),
        "b.fa",
        &fasta(&[("chr1", &b_chr1), ("chrB", &b_chr_b)]),
    );
    let (a, b) = (
        file_a.to_str().expect("utf-8"),
        file_b.to_str().expect("utf-8"),
    );
    // Standard input holds a plain sequence: its record takes the name `stdin`.
    let stdin_plain: Vec<u8> = piped.chunks(50).flat_map(|l| [l, b"\n"].concat()).collect();

    let mut expected: Vec<Vec<String>> = vec![
        naive_lines(&format!("{a}:chr1"), &a_chr1, &patterns),
        naive_lines("chrA", &a_chr_a, &patterns),
        naive_lines("stdin", &piped, &patterns),
        naive_lines(&format!("{b}:chr1"), &b_chr1, &patterns),
        naive_lines("chrB", &b_chr_b, &patterns),
    ];
    for record in &mut expected {
        record.sort();
    }
    let total: usize = expected.iter().map(Vec::len).sum();
    assert!(total > 100, "the fixture has matches to compare: {total}");

    for threads in ["1", "3"] {
        let args = [
            "search", a, "-", b, "-p", "ACG", "-p", "GGTA", "-i", "-j", threads, "--format", "tsv",
        ];
        let tsv = search_with_stdin(&args, &stdin_plain);
        let mut lines = tsv.lines();
        assert_eq!(
            lines.next(),
            Some("seqID\tpatternName\tpattern\tstrand\tstart\tend\tmatched")
        );
        // Input by input, record by record: group the printed lines by their seqID in order.
        let mut printed: Vec<(String, Vec<String>)> = Vec::new();
        for line in lines {
            let seq_id = line.split('\t').next().unwrap_or_default().to_string();
            match printed.last_mut() {
                Some((last, group)) if *last == seq_id => group.push(line.to_string()),
                _ => printed.push((seq_id, vec![line.to_string()])),
            }
        }
        let order: Vec<&str> = printed.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(
            order,
            [
                format!("{a}:chr1").as_str(),
                "chrA",
                "stdin",
                format!("{b}:chr1").as_str(),
                "chrB"
            ],
            "-j {threads}: records in input order, each once"
        );
        for ((_, mut group), want) in printed.into_iter().zip(&expected) {
            group.sort();
            assert_eq!(&group, want, "-j {threads}");
        }

        let count = search_with_stdin(
            &[
                "search", a, "-", b, "-p", "ACG", "-p", "GGTA", "-j", threads,
            ],
            &stdin_plain,
        );
        assert!(
            count.ends_with(&format!("total\t\t{total}\n")),
            "counts add up over the inputs: {count}"
        );
    }

    // One file alone keeps its record names bare, as seqkit prints them.
    let alone = search(&file_a, &["-p", "ACG", "--format", "bed"]);
    assert!(
        alone
            .lines()
            .all(|l| l.starts_with("chr1\t") || l.starts_with("chrA\t")),
        "{alone}"
    );
}

#[test]
fn standard_input_given_twice_is_refused_and_the_default_strand_is_documented() {
    let message = user_error(&["search", "-", "-", "-p", "ACGT"]);
    assert!(message.contains("standard input"), "{message}");
    let both = gridwatch(&["search", "-p", "ACGT", "-i", "--case-sensitive", "-"]);
    assert_eq!(
        both.status.code(),
        Some(2),
        "-i contradicts --case-sensitive"
    );
    let message = String::from_utf8_lossy(&both.stderr);
    assert!(message.contains("--case-sensitive"), "{message}");
    let help = gridwatch(&["search", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("Forward by default, unlike `seqkit locate` (both)"),
        "{help}"
    );
    assert!(help.contains("-j, --threads"), "{help}");
}
