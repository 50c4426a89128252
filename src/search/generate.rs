//! A deterministic random genome as FASTA or UCSC `.2bit`, for demos, tests and benchmarks.
//!
//! Same seed and options → same bytes. Bases are uniform A/C/G/T from xoshiro256++ (two bits per
//! base); each record starts with a short N run, as assembled genomes do. Plants write COUNT
//! copies of a pattern at seeded positions, spread evenly so they never overlap each other.

use std::io::{self, Write};

use super::twobit::{RecordLayout, TwoBitWriter};

use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use thiserror::Error;

/// Length of the N run at the start of every record.
const N_RUN: u64 = 100;
/// Bases generated per step (then wrapped into lines).
const BLOCK_BASES: usize = 1 << 20;

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenomeSpec {
    /// Total bases.
    pub size: u64,
    /// Random seed; the same seed gives the same bytes.
    pub seed: u64,
    /// Bases per line (0: each record on one line).
    pub line_width: usize,
    /// Number of records (chromosomes), named chr1, chr2, ….
    pub records: u64,
    /// Copies of patterns to write into the genome.
    pub plants: Vec<Plant>,
}

/// Copies of a pattern to write into the genome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plant {
    /// Upper-case A/C/G/T.
    pub pattern: Vec<u8>,
    /// Copies over the whole genome.
    pub count: u64,
}

/// Why a genome could not be generated.
#[derive(Debug, Error)]
pub enum GenerateError {
    /// Fewer bases than records.
    #[error("{records} records with {size} bases: need at least one base per record")]
    TooFewBases {
        /// Bases asked for.
        size: u64,
        /// Records asked for.
        records: u64,
    },
    /// The planted copies do not fit side by side.
    #[error("{count} planted copies do not fit in a record of {length} bases; use a larger size or fewer copies")]
    PlantsDoNotFit {
        /// Copies in the record.
        count: u64,
        /// The record's length.
        length: u64,
    },
    /// Writing the output failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Parses `200MiB`, `50MB`, `1G`, `4096` into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| {
        format!("size {text:?}: expected a number with an optional unit, like 200MiB")
    })?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "size {text:?}: unknown unit {other:?} (use KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    Ok((number * scale) as u64)
}

/// Parses `PATTERN:COUNT`.
pub fn parse_plant(text: &str) -> Result<Plant, String> {
    let (pattern, count) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("plant {text:?}: expected PATTERN:COUNT, like AGGTCCAT:1000"))?;
    let pattern = pattern.to_ascii_uppercase().into_bytes();
    if pattern.is_empty() || !pattern.iter().all(|b| b"ACGT".contains(b)) {
        return Err(format!(
            "plant {text:?}: the pattern must be A, C, G and T only"
        ));
    }
    let count = count
        .parse()
        .map_err(|_| format!("plant {text:?}: {count:?} is not a count"))?;
    Ok(Plant { pattern, count })
}

/// Writes the whole genome to `out`.
pub fn generate(
    genome: &GenomeSpec,
    out: impl Write,
    progress: &mut dyn FnMut(u64),
) -> Result<(), GenerateError> {
    let (mut rng, lengths, plans) = plan(genome)?;
    let mut out = io::BufWriter::with_capacity(1 << 20, out);
    let mut block = Vec::with_capacity(BLOCK_BASES);
    for (index, (&length, plants)) in lengths.iter().zip(&plans).enumerate() {
        writeln!(
            out,
            ">chr{} generated seed={} length={length}",
            index + 1,
            genome.seed
        )?;
        let mut written = 0u64;
        let mut column = 0usize;
        while written < length {
            let take = (length - written).min(BLOCK_BASES as u64) as usize;
            fill_bases(&mut rng, &mut block, take, written);
            apply_plants(&mut block, written, plants);
            write_wrapped(&mut out, &block, genome.line_width, &mut column)?;
            written += take as u64;
            progress(take as u64);
        }
        if column > 0 || genome.line_width == 0 {
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Writes the same genome as [`generate`] (same seed, same bases) as a `.2bit` file.
pub fn generate_twobit(
    genome: &GenomeSpec,
    out: impl Write,
    progress: &mut dyn FnMut(u64),
) -> Result<(), GenerateError> {
    let (mut rng, lengths, plans) = plan(genome)?;
    let out = io::BufWriter::with_capacity(1 << 20, out);
    let layouts = lengths
        .iter()
        .enumerate()
        .map(|(index, &len)| RecordLayout {
            name: format!("chr{}", index + 1),
            len,
            n_runs: vec![(0, N_RUN.min(len))],
            mask_runs: Vec::new(),
        })
        .collect();
    let mut writer = TwoBitWriter::new(out, layouts)?;
    let mut block = Vec::with_capacity(BLOCK_BASES);
    for (&length, plants) in lengths.iter().zip(&plans) {
        let mut written = 0u64;
        while written < length {
            let take = (length - written).min(BLOCK_BASES as u64) as usize;
            fill_bases(&mut rng, &mut block, take, written);
            apply_plants(&mut block, written, plants);
            writer.push(&block)?;
            written += take as u64;
            progress(take as u64);
        }
    }
    writer.finish()?.flush()?;
    Ok(())
}

/// The random stream, the records' lengths and their plants, as both formats draw them.
fn plan(
    genome: &GenomeSpec,
) -> Result<(Xoshiro256PlusPlus, Vec<u64>, Vec<RecordPlants>), GenerateError> {
    if genome.records == 0 || genome.size < genome.records {
        return Err(GenerateError::TooFewBases {
            size: genome.size,
            records: genome.records,
        });
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(genome.seed);
    let lengths = record_lengths(genome.size, genome.records);
    let plans = plan_plants(&genome.plants, &lengths, &mut rng)?;
    Ok((rng, lengths, plans))
}

/// Splits `size` bases into `records` lengths differing by at most one.
fn record_lengths(size: u64, records: u64) -> Vec<u64> {
    (0..records)
        .map(|i| size / records + u64::from(i < size % records))
        .collect()
}

/// The (record position, pattern) of each planted copy in one record, sorted by position.
type RecordPlants = Vec<(u64, Vec<u8>)>;

/// For each record, the (position, pattern) of its plants, sorted by position. Plants are spread
/// over records in turn and placed one per equal slot, so copies never overlap.
fn plan_plants(
    plants: &[Plant],
    lengths: &[u64],
    rng: &mut Xoshiro256PlusPlus,
) -> Result<Vec<RecordPlants>, GenerateError> {
    let records = lengths.len() as u64;
    let mut per_record: Vec<Vec<Vec<u8>>> = vec![Vec::new(); lengths.len()];
    let mut next = 0u64;
    for plant in plants {
        for _ in 0..plant.count {
            per_record[(next % records) as usize].push(plant.pattern.clone());
            next += 1;
        }
    }
    let mut plans = Vec::with_capacity(lengths.len());
    for (&length, patterns) in lengths.iter().zip(per_record) {
        let usable = length.saturating_sub(N_RUN.min(length));
        let count = patterns.len() as u64;
        let longest = patterns.iter().map(Vec::len).max().unwrap_or(0) as u64;
        if count == 0 {
            plans.push(Vec::new());
            continue;
        }
        let slot = usable / count;
        if slot < longest {
            return Err(GenerateError::PlantsDoNotFit { count, length });
        }
        let plan = patterns
            .into_iter()
            .enumerate()
            .map(|(i, pattern)| {
                let room = slot - pattern.len() as u64 + 1;
                let start = N_RUN.min(length) + slot * i as u64 + rng.next_u64() % room;
                (start, pattern)
            })
            .collect();
        plans.push(plan);
    }
    Ok(plans)
}

/// Fills `block` with `take` random bases for record positions `offset..`; the first [`N_RUN`]
/// positions of a record are N.
fn fill_bases(rng: &mut Xoshiro256PlusPlus, block: &mut Vec<u8>, take: usize, offset: u64) {
    const BASES: [u8; 4] = *b"ACGT";
    block.clear();
    while block.len() < take {
        let mut bits = rng.next_u64();
        let n = (take - block.len()).min(32);
        for _ in 0..n {
            block.push(BASES[(bits & 3) as usize]);
            bits >>= 2;
        }
    }
    let n_end = N_RUN.saturating_sub(offset).min(take as u64) as usize;
    block[..n_end].fill(b'N');
}

/// Overwrites the parts of `block` (record positions `offset..`) that planted copies cover.
fn apply_plants(block: &mut [u8], offset: u64, plants: &[(u64, Vec<u8>)]) {
    let end = offset + block.len() as u64;
    for (start, pattern) in plants {
        let stop = start + pattern.len() as u64;
        if stop <= offset || *start >= end {
            continue;
        }
        for position in (*start).max(offset)..stop.min(end) {
            block[(position - offset) as usize] = pattern[(position - start) as usize];
        }
    }
}

/// Writes bases wrapped at `width` (0: no wrapping); `column` carries the line position across calls.
fn write_wrapped(
    out: &mut impl Write,
    bases: &[u8],
    width: usize,
    column: &mut usize,
) -> io::Result<()> {
    if width == 0 {
        return out.write_all(bases);
    }
    let mut rest = bases;
    while !rest.is_empty() {
        let take = (width - *column).min(rest.len());
        out.write_all(&rest[..take])?;
        rest = &rest[take..];
        *column += take;
        if *column == width {
            out.write_all(b"\n")?;
            *column = 0;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("200MiB"), Ok(200 * 1024 * 1024));
        assert_eq!(parse_size("50MB"), Ok(50_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12XB").is_err());
        assert!(parse_size("MiB").is_err());
    }

    #[test]
    fn plants_parse_and_refuse_iupac() {
        assert_eq!(
            parse_plant("acgt:3"),
            Ok(Plant {
                pattern: b"ACGT".to_vec(),
                count: 3
            })
        );
        assert!(parse_plant("ACGN:3").is_err());
        assert!(parse_plant("ACGT").is_err());
    }

    #[test]
    fn wrapping_carries_the_column() {
        let mut out = Vec::new();
        let mut column = 0;
        write_wrapped(&mut out, b"ACG", 4, &mut column).unwrap();
        write_wrapped(&mut out, b"TACGTA", 4, &mut column).unwrap();
        assert_eq!(out, b"ACGT\nACGT\nA");
        assert_eq!(column, 1);
    }
}
