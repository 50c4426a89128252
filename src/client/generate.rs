//! `gridwatch generate`: the command-line side of the genome generator in `search::generate`
//! (flags, output file, progress bar).

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};

use crate::client::tool_error::ToolError;
use gridwatch::search::generate::{generate, generate_twobit, GenerateError, GenomeSpec};
pub use gridwatch::search::generate::{parse_plant, parse_size, Plant};

/// Arguments of `gridwatch generate`.
#[derive(Clone, Debug, clap::Args)]
pub struct GenerateArgs {
    /// Total bases, with an optional unit: 200MiB, 50MB, 1G, 4096.
    #[arg(long, value_parser = parse_size)]
    pub size: u64,
    /// Output file (`-` for stdout).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Random seed; the same seed gives the same bytes.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Bases per line (0: each record on one line).
    #[arg(long, default_value_t = 60)]
    pub line_width: usize,
    /// Number of records (chromosomes), named chr1, chr2, ….
    #[arg(long, default_value_t = 1)]
    pub records: u64,
    /// Plant COUNT copies of PATTERN (A/C/G/T), e.g. --plant AGGTCCAT:1000. Repeatable.
    #[arg(long, value_parser = parse_plant, value_name = "PATTERN:COUNT")]
    pub plant: Vec<Plant>,
    /// Output format: FASTA text, or UCSC .2bit (bases packed four to a byte, as UCSC
    /// distributes genomes). Default: 2bit when the output file ends in .2bit, else FASTA.
    #[arg(long, value_enum)]
    pub format: Option<GenomeFormat>,
}

/// The file formats `generate` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GenomeFormat {
    /// FASTA text, wrapped at --line-width.
    Fasta,
    /// UCSC .2bit.
    #[value(name = "2bit")]
    TwoBit,
}

impl GenerateArgs {
    /// The format asked for, or the one the output file's extension names.
    pub fn format(&self) -> GenomeFormat {
        self.format.unwrap_or_else(|| {
            let two_bit = self
                .out
                .extension()
                .is_some_and(|ext| ext.eq_ignore_ascii_case("2bit"));
            if two_bit {
                GenomeFormat::TwoBit
            } else {
                GenomeFormat::Fasta
            }
        })
    }

    /// The genome these flags describe.
    pub fn genome(&self) -> GenomeSpec {
        GenomeSpec {
            size: self.size,
            seed: self.seed,
            line_width: self.line_width,
            records: self.records,
            plants: self.plant.clone(),
        }
    }
}

/// Runs `gridwatch generate`.
pub fn run(args: &GenerateArgs) -> Result<(), ToolError> {
    let genome = args.genome();
    let progress = progress_bar(args.size);
    let format = args.format();
    let write = |out: &mut dyn Write| match format {
        GenomeFormat::Fasta => generate(&genome, out, &mut |n| progress.inc(n)),
        GenomeFormat::TwoBit => generate_twobit(&genome, out, &mut |n| progress.inc(n)),
    };
    let result = if args.out.as_os_str() == "-" {
        write(&mut io::stdout().lock())
    } else {
        let shown = args.out.display();
        let mut file = File::create(&args.out)
            .map_err(|e| ToolError::Usage(format!("{shown}: cannot create: {e}")))?;
        write(&mut file)
    };
    progress.finish_and_clear();
    result.map_err(|error| match error {
        GenerateError::TooFewBases { size, records } => ToolError::Usage(format!(
            "--records {records} with --size {size}: need at least one base per record"
        )),
        GenerateError::PlantsDoNotFit { .. } => ToolError::Usage(format!("--plant: {error}")),
        GenerateError::Io(io) => ToolError::Output(io),
    })
}

fn progress_bar(total: u64) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
    {
        bar.set_style(style);
    }
    bar
}
