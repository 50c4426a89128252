//! `gridwatch bench search --mismatches`: search with mismatches against `seqkit locate -i -m K`
//! in one run, on generated genomes, with every row checked exact against the other tool.
//!
//! seqkit's mismatch search runs at about 1 MB/s, so it gets a smaller genome (`--slice`) and
//! gridwatch runs on both: throughput ratios compare MB/s, and the exactness check compares the
//! two tools' positions on the slice. The many-guides row has no outside tool fast enough, so it
//! is checked against gridwatch's other kernel (shift-and) on a 2 MiB genome.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use super::bench_args::BenchSearchArgs;
use crate::client::generate::{self, GenerateArgs};
use crate::client::tool_error::ToolError;
use crate::local::up::{Cluster, UpArgs};

/// Pattern length of the benchmark's guides.
const GUIDE_LEN: usize = 20;

/// The single pattern; copies of it with 0 to 3 substitutions are planted in the generated
/// genomes, so the seqkit check compares hundreds of hits at every K.
const GUIDE: &str = "GTACACCATCAAACGCCACG";

/// Copies planted of each variant.
const PLANTED: u64 = 100;

/// Local seconds from which a row counts as compute-bound for the grid's scaling target.
const COMPUTE_BOUND_SECONDS: f64 = 2.0;

/// Genome for the many-guides exactness check.
const GUIDE_CHECK_BYTES: u64 = 2 << 20;

/// (seqID, strand, start, end): the columns both tools print alike.
type Location = (String, String, u64, u64);

/// One timed command and what it printed.
struct Timed {
    seconds: f64,
    stdout: String,
}

/// Runs the mismatch benchmark.
pub fn run(args: &BenchSearchArgs) -> Result<(), ToolError> {
    let scratch = std::env::temp_dir().join(format!("gridwatch-bench-mm-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)
        .map_err(|e| ToolError::Failed(format!("{}: cannot create: {e}", scratch.display())))?;
    let result = run_in(args, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn run_in(args: &BenchSearchArgs, scratch: &Path) -> Result<(), ToolError> {
    let genome = match &args.file {
        Some(file) => file.clone(),
        None => generate_into(scratch, "genome.fa", args.size, 42, planted())?,
    };
    let slice_size = args.slice.min(file_len(&genome)?);
    let slice = generate_into(scratch, "slice.fa", slice_size, 43, planted())?;
    let guides = random_guides(args.guides, 7);
    let small = generate_into(
        scratch,
        "small.fa",
        GUIDE_CHECK_BYTES,
        44,
        guide_variants(&guides),
    )?;
    let exe = std::env::current_exe()
        .map_err(|e| ToolError::Failed(format!("cannot find the gridwatch binary: {e}")))?;
    let gridwatch = quote(&exe.to_string_lossy());
    let seqkit = installed("seqkit");
    let guide = GUIDE;
    let (genome_mb, slice_mb) = (mb(file_len(&genome)?), mb(file_len(&slice)?));
    println!(
        "genome {} ({genome_mb:.1} MB); seqkit slice {} ({slice_mb:.1} MB); cores: {}",
        genome.display(),
        slice.display(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "pattern: {guide} ({PLANTED} copies each with 0, 1, 2, 3 substitutions planted), both \
         strands, case-insensitive"
    );
    println!(
        "{:<22} {:>9} {:>11} {:>11} {:>11} {:>9} {:>9}  check",
        "search", "hits", "gw MB/s", "gw slice", "seqkit", "gw/seqkit", "time s"
    );
    // (row name, search flags, local hit count, local seconds): the grid runs the same rows.
    let mut rows: Vec<(String, String, String, f64)> = Vec::new();
    let mut k2_ratio = None;
    for k in 1..=3u32 {
        let full = time(&format!(
            "{gridwatch} search {} -p {guide} -m {k} --strand both | tail -n 1 | cut -f 3",
            quote_path(&genome)
        ))?;
        let hits = full.stdout.trim().to_string();
        rows.push((
            format!("1 x 20-mer, K = {k}"),
            format!("-p {guide} -m {k} --strand both"),
            hits.clone(),
            full.seconds,
        ));
        let ours_file = scratch.join(format!("gw-m{k}.tsv"));
        let ours = time(&format!(
            "{gridwatch} search {} -p {guide} -m {k} --strand both --format tsv > {}",
            quote_path(&slice),
            quote_path(&ours_file)
        ))?;
        let (seqkit_rate, ratio, check) = if seqkit {
            let theirs_file = scratch.join(format!("seqkit-m{k}.tsv"));
            let theirs = time(&format!(
                "seqkit locate -i -m {k} -p {guide} {} > {}",
                quote_path(&slice),
                quote_path(&theirs_file)
            ))?;
            let rate = slice_mb / theirs.seconds;
            if k == 2 {
                k2_ratio = Some(genome_mb / full.seconds / rate);
            }
            let (ours, theirs) = (locations(&ours_file)?, locations(&theirs_file)?);
            let check = match ours == theirs {
                true => format!("= seqkit ({} hits on the slice)", ours.len()),
                false => format!("DIFFERS: {} vs seqkit's {}", ours.len(), theirs.len()),
            };
            (
                format!("{rate:.2}"),
                format!("{:.0}x", genome_mb / full.seconds / rate),
                check,
            )
        } else {
            ("-".into(), "-".into(), "seqkit not installed".into())
        };
        println!(
            "{:<22} {:>9} {:>11.1} {:>11.1} {:>11} {:>9} {:>9.2}  {check}",
            format!("1 x 20-mer, K = {k}"),
            hits,
            genome_mb / full.seconds,
            slice_mb / ours.seconds,
            seqkit_rate,
            ratio,
            full.seconds,
        );
    }
    rows.push(guides_row(
        args, scratch, &gridwatch, &genome, &small, &guides, genome_mb,
    )?);
    println!(
        "gw MB/s: gridwatch on the genome; gw slice / seqkit: MB/s on the slice; \
         gw/seqkit: gridwatch's genome MB/s over seqkit's slice MB/s"
    );
    let guides_seconds = rows.last().map_or(0.0, |row| row.3);
    let speedups = match args.grid_workers {
        0 => Vec::new(),
        _ => grid_rows(args, scratch, &gridwatch, &genome, &rows)?,
    };
    let locals: Vec<f64> = rows.iter().map(|row| row.3).collect();
    print_targets(args, k2_ratio, guides_seconds, &speedups, &locals);
    Ok(())
}

/// The goals this benchmark exists to check, each with the figure measured in this run.
fn print_targets(
    args: &BenchSearchArgs,
    k2_ratio: Option<f64>,
    guides: f64,
    speedups: &[f64],
    locals: &[f64],
) {
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    println!();
    println!("targets");
    match k2_ratio {
        Some(ratio) => println!(
            "  {}  K = 2: >= 100x seqkit's throughput (measured {ratio:.0}x)",
            verdict(ratio >= 100.0)
        ),
        None => println!("  n/a   K = 2: >= 100x seqkit's throughput (seqkit not installed)"),
    }
    println!(
        "  {}  {} guides, K = 3, locally in under 60 s (measured {guides:.1} s)",
        verdict(guides < 60.0),
        args.guides
    );
    // A row is compute-bound when its local search takes seconds: below that, the fixed cost of
    // a grid job (connecting, cutting, leasing, collecting) is most of what the grid row times.
    let bound: Vec<f64> = speedups
        .iter()
        .zip(locals)
        .filter(|(_, &local)| local >= COMPUTE_BOUND_SECONDS)
        .map(|(&speedup, _)| speedup)
        .collect();
    if args.grid_workers > 1 && !bound.is_empty() {
        let worst = bound.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "  {}  grid: {} workers >= 1.7x one worker on the compute-bound rows (local >= {} s; \
             worst {worst:.2}x)",
            verdict(worst >= 1.7),
            args.grid_workers,
            COMPUTE_BOUND_SECONDS
        );
    }
}

/// The same searches submitted to a local grid of 1, then `--grid-workers` workers of one task
/// slot each, from submit to result; each row's total must equal the local search's. Returns
/// each row's speed-up of the most workers over one.
fn grid_rows(
    args: &BenchSearchArgs,
    scratch: &Path,
    gridwatch: &str,
    genome: &Path,
    rows: &[(String, String, String, f64)],
) -> Result<Vec<f64>, ToolError> {
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| ToolError::Failed(format!("cannot start the async runtime: {e}")))?;
    let mut sizes = vec![1];
    if args.grid_workers > 1 {
        sizes.push(args.grid_workers);
    }
    // seconds[w][row]
    let mut seconds: Vec<Vec<f64>> = Vec::new();
    let mut checks: Vec<String> = vec![String::new(); rows.len()];
    for &workers in &sizes {
        let up = UpArgs {
            drop_dir: Some("off".into()),
            allow_commands: false,
            workers,
            threads: 1,
            listen: "127.0.0.1:0".into(),
            data_dir: scratch.join(format!("grid-{workers}")),
            master_flags: "--jobs-per-minute 100000".into(),
            http: "off".into(),
            backend: Default::default(),
            elastic: Default::default(),
        };
        let cluster = runtime
            .block_on(Cluster::start(&up))
            .map_err(|e| ToolError::Failed(format!("local grid: {e}")))?;
        let mut times = Vec::new();
        let mut outcome = Ok(());
        for (index, (_, flags, hits, _)) in rows.iter().enumerate() {
            let timed = time(&format!(
                "{gridwatch} submit {} {flags} --master {} --wait | tail -n 1 | cut -f 3",
                quote_path(genome),
                cluster.master_addr
            ));
            match timed {
                Ok(timed) => {
                    let total = timed.stdout.trim().to_string();
                    if total != *hits {
                        checks[index] = format!("DIFFERS: {total} on {workers} worker(s)");
                    } else if checks[index].is_empty() {
                        checks[index] = "= local".into();
                    }
                    times.push(timed.seconds);
                }
                Err(err) => {
                    outcome = Err(err);
                    break;
                }
            }
        }
        runtime.block_on(cluster.stop());
        outcome?;
        seconds.push(times);
    }
    println!();
    println!(
        "grid (1 task slot per worker, submit to result, the first row uploads the genome, the others search it as stored); cores: {}",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let many = *sizes.last().unwrap_or(&1);
    println!(
        "{:<22} {:>9} {:>9} {:>9} {:>12}  check",
        "search",
        "local s",
        "1 wkr s",
        format!("{many} wkr s"),
        format!("{many} vs 1 wkr")
    );
    let mut speedups = Vec::with_capacity(rows.len());
    for (index, (name, _, _, local)) in rows.iter().enumerate() {
        let one = seconds[0][index];
        let last = seconds[seconds.len() - 1][index];
        speedups.push(one / last);
        println!(
            "{:<22} {:>9.2} {:>9.2} {:>9.2} {:>11.2}x  {}",
            name,
            local,
            one,
            last,
            one / last,
            checks[index]
        );
    }
    Ok(speedups)
}

/// 1,000 random 20-mers (or `--guides`) at K = 3 on the genome, checked on a small genome
/// against the shift-and kernel.
fn guides_row(
    args: &BenchSearchArgs,
    scratch: &Path,
    gridwatch: &str,
    genome: &Path,
    small: &Path,
    guide_text: &str,
    genome_mb: f64,
) -> Result<(String, String, String, f64), ToolError> {
    let guides = scratch.join("guides.txt");
    std::fs::write(&guides, guide_text)
        .map_err(|e| ToolError::Failed(format!("{}: {e}", guides.display())))?;
    let search = |file: &Path, extra: &str| {
        format!(
            "{gridwatch} search {} --patterns {} -m 3 --strand both {extra}",
            quote_path(file),
            quote_path(&guides)
        )
    };
    let full = time(&format!("{} | tail -n 1 | cut -f 3", search(genome, "")))?;
    let (seeds, bits) = (scratch.join("seeds.tsv"), scratch.join("bits.tsv"));
    time(&format!(
        "{} > {}",
        search(small, "--format tsv"),
        quote_path(&seeds)
    ))?;
    time(&format!(
        "{} > {}",
        search(small, "--format tsv --mismatch-kernel bits"),
        quote_path(&bits)
    ))?;
    let (seeds, bits) = (locations(&seeds)?, locations(&bits)?);
    let check = match seeds == bits {
        true => format!("= shift-and kernel ({} hits on 2 MiB)", seeds.len()),
        false => format!("DIFFERS: {} vs shift-and's {}", seeds.len(), bits.len()),
    };
    println!(
        "{:<22} {:>9} {:>11.1} {:>11} {:>11} {:>9} {:>9.2}  {check}",
        format!("{} x 20-mer, K = 3", args.guides),
        full.stdout.trim(),
        genome_mb / full.seconds,
        "-",
        "-",
        "-",
        full.seconds,
    );
    Ok((
        format!("{} x 20-mer, K = 3", args.guides),
        format!("--patterns {} -m 3 --strand both", quote_path(&guides)),
        full.stdout.trim().to_string(),
        full.seconds,
    ))
}

/// Copies of the first guides with 1, 2 and 3 substitutions, planted in the small genome so the
/// seed kernel's check against shift-and compares hits at every distance, not just chance ones.
fn guide_variants(guides: &str) -> Vec<generate::Plant> {
    let mut plants = Vec::new();
    for (index, guide) in guides.lines().take(100).enumerate() {
        let mut variant = guide.as_bytes().to_vec();
        let substitutions = 1 + index % 3;
        for step in 0..substitutions {
            let at = (index * 7 + step * 6) % variant.len();
            variant[at] = if variant[at] == b'A' { b'G' } else { b'A' };
        }
        plants.push(generate::Plant {
            pattern: variant,
            count: 2,
        });
    }
    plants
}

/// The guide and copies with 1, 2 and 3 substitutions.
fn planted() -> Vec<generate::Plant> {
    let mut variant = GUIDE.as_bytes().to_vec();
    let mut plants = vec![generate::Plant {
        pattern: variant.clone(),
        count: PLANTED,
    }];
    for at in [3, 11, 17] {
        variant[at] = if variant[at] == b'A' { b'C' } else { b'A' };
        plants.push(generate::Plant {
            pattern: variant.clone(),
            count: PLANTED,
        });
    }
    plants
}

fn generate_into(
    dir: &Path,
    name: &str,
    size: u64,
    seed: u64,
    plant: Vec<generate::Plant>,
) -> Result<PathBuf, ToolError> {
    let out = dir.join(name);
    eprintln!("generating {size} bases into {} …", out.display());
    generate::run(&GenerateArgs {
        size,
        out: out.clone(),
        seed,
        line_width: 60,
        records: 1,
        plant,
        format: None,
    })?;
    Ok(out)
}

/// `count` random 20-mers, one a line (xorshift: the same seed gives the same guides).
fn random_guides(count: usize, seed: u64) -> String {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = String::with_capacity(count * (GUIDE_LEN + 1));
    for _ in 0..count {
        for _ in 0..GUIDE_LEN {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.push(b"ACGT"[(state >> 32) as usize % 4] as char);
        }
        out.push('\n');
    }
    out
}

/// The (seqID, strand, start, end) set of a locate TSV.
fn locations(file: &Path) -> Result<BTreeSet<Location>, ToolError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| ToolError::Failed(format!("{}: {e}", file.display())))?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            Some((
                f.first()?.to_string(),
                f.get(3)?.to_string(),
                f.get(4)?.parse().ok()?,
                f.get(5)?.parse().ok()?,
            ))
        })
        .collect())
}

fn time(command: &str) -> Result<Timed, ToolError> {
    let started = Instant::now();
    let output = Command::new("sh")
        .arg("-c")
        .arg(command)
        .output()
        .map_err(|e| ToolError::Failed(format!("cannot run sh: {e}")))?;
    let seconds = started.elapsed().as_secs_f64();
    if !output.status.success() {
        return Err(ToolError::Failed(format!(
            "{command}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(Timed {
        seconds,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
    })
}

fn file_len(file: &Path) -> Result<u64, ToolError> {
    Ok(std::fs::metadata(file)
        .map_err(|e| ToolError::Usage(format!("{}: {e}", file.display())))?
        .len())
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn installed(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|output| output.status.success())
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn quote_path(path: &Path) -> String {
    quote(&path.to_string_lossy())
}
