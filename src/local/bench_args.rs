//! The flags of `gridwatch bench search`, read by the exact-pattern benchmark (`bench`) and the
//! mismatch benchmark (`bench_mismatch`) alike.

use std::path::PathBuf;

use crate::client::generate;

/// Arguments of `gridwatch bench search`.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchSearchArgs {
    /// Search this file instead of generating one.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Size of the generated genome.
    #[arg(long, default_value = "200MiB", value_parser = generate::parse_size)]
    pub size: u64,
    /// The pattern searched.
    #[arg(long, default_value = "AGGTCCAT")]
    pub pattern: String,
    /// IUPAC pattern of the IUPAC job (both strands).
    #[arg(long, default_value = "GGNCC")]
    pub iupac: String,
    /// Comma-separated patterns of the mixed job (both strands).
    #[arg(long, default_value = "AGGTCCAT,GGNCC,ACGTTGCAACGT")]
    pub mixed: String,
    /// Run only this job (default: all four).
    #[arg(long, value_enum)]
    pub job: Option<BenchJob>,
    /// Runs per tool; the best is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Also time seqkit locate (exact but slow: several seconds per run on 200 MiB).
    #[arg(long)]
    pub seqkit: bool,
    /// Benchmark search with mismatches instead: one 20-mer at K = 1, 2, 3 against
    /// `seqkit locate -i -m K` (on `--slice`), and `--guides` random 20-mers at K = 3.
    #[arg(long)]
    pub mismatches: bool,
    /// With --mismatches: size of the genome seqkit searches (it runs at about 1 MB/s).
    #[arg(long, default_value = "20MiB", value_parser = generate::parse_size)]
    pub slice: u64,
    /// With --mismatches: how many random 20-mers the many-guides row searches for.
    #[arg(long, default_value_t = 1000)]
    pub guides: usize,
    /// With --mismatches: also run every row on a local grid of 1 and of this many workers (one
    /// task slot each), to show how the compute-bound searches spread; 0 skips the grid.
    #[arg(long, default_value_t = 2)]
    pub grid_workers: usize,
}

/// The jobs of `gridwatch bench search`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchJob {
    /// `--pattern` on the forward strand, against rg, grep (and seqkit).
    Plain,
    /// `--pattern` on both strands.
    Both,
    /// `--iupac` on both strands.
    Iupac,
    /// The `--mixed` patterns on both strands.
    Mixed,
}
