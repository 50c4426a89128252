//! The `julia` job kind: the classic Julia benchmark cut into bands of rows. Nothing is uploaded;
//! each task renders its band with the pure kernel ([`render_rows`]) and stores every pixel's
//! count, and the bands, concatenated in task order, are exactly one render of the whole image.
//!
//! Output formats: `text` (a summary for people), `json` (the same summary for scripts),
//! `counts` (one line per row, top row first, tab-separated) and `png` (the coloured image at the
//! real dimensions, which repeated addition may make one more than asked).

use std::io::{self, Write};
use std::ops::Range;
use std::sync::atomic::AtomicBool;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{JobContext, JobKind, PlannedTask, Refusal, SubmitLimits, TaskError, TaskSource};
use crate::julia::{
    colorize, render_rows, render_rows_until, JuliaError, JuliaGrid, JuliaParams, DEFAULT_C_IM,
    DEFAULT_C_RE, DEFAULT_ITERATIONS, DEFAULT_REGION,
};
use crate::protocol::{ErrorCode, ProgressFigure};

/// The job kind name stored with each Julia job.
pub const JULIA_KIND: &str = "julia";

/// Bands a job is cut into when the client does not say (fewer for images under 32 rows): enough
/// to spread over a few workers' slots and even out rows of unequal cost.
pub const DEFAULT_BANDS: u32 = 32;

/// Bytes a pixel's count may take in a stored band: at most seven digits and a comma, doubled
/// so that a band stays well inside one frame.
const BYTES_PER_PIXEL: usize = 16;

/// What a client submits; absent fields take the classic benchmark's values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JuliaSubmission {
    /// Requested columns.
    pub width: u32,
    /// Requested rows (default: the width).
    #[serde(default)]
    pub height: Option<u32>,
    /// Iteration limit per pixel (default 300).
    #[serde(default)]
    pub iterations: Option<u32>,
    /// The constant c as [re, im] (default −0.62772 − 0.42193i).
    #[serde(default)]
    pub c: Option<[f64; 2]>,
    /// The region as [x1, x2, y1, y2] (default [−1.8, 1.8, −1.8, 1.8]).
    #[serde(default)]
    pub region: Option<[f64; 4]>,
    /// Bands of rows (tasks); the master's default when absent.
    #[serde(default)]
    pub bands: Option<u32>,
}

impl JuliaSubmission {
    /// The kernel's parameters, defaults filled in.
    pub fn params(&self) -> JuliaParams {
        let [c_re, c_im] = self.c.unwrap_or([DEFAULT_C_RE, DEFAULT_C_IM]);
        let [x1, x2, y1, y2] = self.region.unwrap_or(DEFAULT_REGION);
        JuliaParams {
            width: self.width,
            height: self.height.unwrap_or(self.width),
            max_iterations: self.iterations.unwrap_or(DEFAULT_ITERATIONS),
            c_re,
            c_im,
            x1,
            x2,
            y1,
            y2,
        }
    }

    /// Checks the parameters, the work against `max_iterations` (real pixels × iteration limit)
    /// and the band count against the frame limit; returns the spec.
    pub fn check(
        &self,
        max_frame: usize,
        max_iterations: u64,
    ) -> Result<JuliaJobSpec, JuliaSpecError> {
        let grid = JuliaGrid::new(self.params())?;
        let (width, height) = (grid.width(), grid.height());
        let iterations = u64::from(grid.params().max_iterations);
        let work = (width as u64)
            .saturating_mul(height as u64)
            .saturating_mul(iterations);
        if work > max_iterations {
            return Err(JuliaSpecError::TooMuchWork {
                width,
                height,
                iterations,
                work,
                max: max_iterations,
            });
        }
        let widest_band = (max_frame / BYTES_PER_PIXEL).max(1);
        let fewest = height.div_ceil((widest_band / width).max(1)).max(1);
        if widest_band < width {
            return Err(JuliaSpecError::RowTooWide { width, max_frame });
        }
        let bands = match self.bands {
            Some(bands) => bands as usize,
            None => fewest.max(DEFAULT_BANDS as usize).min(height),
        };
        if bands == 0 || bands > height || bands < fewest {
            return Err(JuliaSpecError::Bands {
                bands,
                fewest,
                height,
            });
        }
        Ok(JuliaJobSpec {
            params: *grid.params(),
            width: width as u32,
            height: height as u32,
            bands: bands as u32,
        })
    }
}

/// Why a Julia submission is refused; one line naming the field.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum JuliaSpecError {
    /// A size, iteration count, c or region the kernel refuses.
    #[error(transparent)]
    Params(#[from] JuliaError),
    /// A band count outside what the image and the frame limit allow.
    #[error(
        "bands must be between {fewest} and {height} for this image (a band holds at least one \
         row, and its result must fit one frame), got {bands}"
    )]
    Bands {
        /// The bands asked for.
        bands: usize,
        /// The fewest bands whose results fit a frame.
        fewest: usize,
        /// The image's real rows.
        height: usize,
    },
    /// More iterations than the master's cap allows one job.
    #[error(
        "{width}×{height} pixels × {iterations} iterations = {work} iterations exceeds the \
         master's cap of {max} per job (--max-julia-work); lower the size or the iterations"
    )]
    TooMuchWork {
        /// Real columns.
        width: usize,
        /// Real rows.
        height: usize,
        /// The iteration limit per pixel.
        iterations: u64,
        /// Pixels × iterations.
        work: u64,
        /// The master's cap.
        max: u64,
    },
    /// A single row larger than one frame carries.
    #[error("a row of {width} pixels does not fit the master's {max_frame}-byte frame limit; lower the width")]
    RowTooWide {
        /// The real width.
        width: usize,
        /// The frame limit.
        max_frame: usize,
    },
}

/// A Julia job's stored spec: the parameters, the real dimensions and the band count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JuliaJobSpec {
    /// The parameters as given (defaults filled in).
    pub params: JuliaParams,
    /// Real columns.
    pub width: u32,
    /// Real rows.
    pub height: u32,
    /// Bands of rows, one task each.
    pub bands: u32,
}

impl JuliaJobSpec {
    /// Rows of band `band`: the image's rows split as evenly as possible, top band first.
    pub fn band_rows(&self, band: u32) -> Range<u32> {
        let (height, bands) = (u64::from(self.height), u64::from(self.bands.max(1)));
        let row = |b: u64| (b * height / bands) as u32;
        row(u64::from(band))..row(u64::from(band) + 1)
    }
}

/// One band's task: the parameters (so a worker needs nothing else) and its rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JuliaTaskSpec {
    /// The job's parameters.
    pub params: JuliaParams,
    /// First row of the band (0 is the top row).
    pub first_row: u32,
    /// One past the band's last row.
    pub end_row: u32,
}

/// What a worker stores for one band: its rows' counts, row after row, each left to right.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JuliaBand {
    /// First row of the band.
    pub first_row: u32,
    /// Every pixel's count in the band.
    pub counts: Vec<u32>,
}

/// A whole image: the job's spec and every pixel's count, top row first.
#[derive(Clone, Debug, PartialEq)]
pub struct JuliaImage {
    /// The job's spec (parameters and real dimensions).
    pub spec: JuliaJobSpec,
    /// `width × height` counts, row after row.
    pub counts: Vec<u32>,
}

/// The summary printed by `results --json` and `gridwatch julia --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JuliaSummary {
    /// The job's id (absent for a local run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// Always `julia`.
    pub kind: String,
    /// Real columns.
    pub width: u32,
    /// Real rows.
    pub height: u32,
    /// Columns asked for.
    pub requested_width: u32,
    /// Rows asked for.
    pub requested_height: u32,
    /// Iteration limit per pixel.
    pub iterations: u32,
    /// The constant c as [re, im].
    pub c: [f64; 2],
    /// The region as [x1, x2, y1, y2].
    pub region: [f64; 4],
    /// Sum of every pixel's count.
    pub iterations_sum: u64,
    /// Wall time of the job (or the local render), in seconds.
    pub seconds: f64,
    /// Tasks (bands) the job was cut into.
    pub tasks: u32,
}

impl JuliaImage {
    /// Sum of every pixel's count.
    pub fn iterations_sum(&self) -> u64 {
        self.counts.iter().map(|&c| u64::from(c)).sum()
    }

    /// The summary with `job`'s id, time and task count.
    pub fn summary(&self, job: &JobContext) -> JuliaSummary {
        summary_of(&self.spec, self.iterations_sum(), job)
    }

    /// Fails unless the counts fill the image exactly (a missing band would shift every row).
    fn check_complete(&self) -> io::Result<()> {
        let expected = self.spec.width as usize * self.spec.height as usize;
        if self.counts.len() != expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the stored bands hold {} counts, the {}×{} image needs {expected}",
                    self.counts.len(),
                    self.spec.width,
                    self.spec.height
                ),
            ));
        }
        Ok(())
    }
}

/// The summary of a job with `spec` whose pixels' counts add up to `iterations_sum`.
fn summary_of(spec: &JuliaJobSpec, iterations_sum: u64, job: &JobContext) -> JuliaSummary {
    let p = &spec.params;
    JuliaSummary {
        job_id: job.job_id.clone(),
        kind: JULIA_KIND.into(),
        width: spec.width,
        height: spec.height,
        requested_width: p.width,
        requested_height: p.height,
        iterations: p.max_iterations,
        c: [p.c_re, p.c_im],
        region: [p.x1, p.x2, p.y1, p.y2],
        iterations_sum,
        seconds: job.seconds,
        tasks: job.tasks,
    }
}

/// Prints `image` in `format` (one of [`JuliaKind`]'s formats).
pub fn write_image(
    image: &JuliaImage,
    job: &JobContext,
    format: &str,
    out: &mut dyn Write,
) -> io::Result<()> {
    image.check_complete()?;
    match format {
        "json" => {
            serde_json::to_writer(&mut *out, &image.summary(job))?;
            writeln!(out)
        }
        "counts" => write_counts(image, out),
        "png" => write_png(image, out),
        _ => write_text(&image.summary(job), out),
    }
}

fn write_text(summary: &JuliaSummary, out: &mut dyn Write) -> io::Result<()> {
    if let Some(job) = &summary.job_id {
        writeln!(out, "Job ID: {job}")?;
    }
    writeln!(
        out,
        "Julia set: {}×{} pixels (asked {}×{}), {} iterations, c = {} {} {}i",
        summary.width,
        summary.height,
        summary.requested_width,
        summary.requested_height,
        summary.iterations,
        summary.c[0],
        if summary.c[1] < 0.0 { '-' } else { '+' },
        summary.c[1].abs()
    )?;
    let [x1, x2, y1, y2] = summary.region;
    writeln!(out, "Region: x in [{x1}, {x2}], y in [{y1}, {y2}]")?;
    writeln!(out, "Iterations sum: {}", summary.iterations_sum)?;
    writeln!(
        out,
        "Time: {:.3} s in {}",
        summary.seconds,
        super::count_of(u64::from(summary.tasks), "task")
    )
}

/// One line per row, top row first, counts separated by tabs.
fn write_counts(image: &JuliaImage, out: &mut dyn Write) -> io::Result<()> {
    let mut out = io::BufWriter::with_capacity(1 << 16, out);
    for row in image.counts.chunks(image.spec.width.max(1) as usize) {
        let mut first = true;
        for count in row {
            if !first {
                out.write_all(b"\t")?;
            }
            first = false;
            write!(out, "{count}")?;
        }
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// The image as an 8-bit RGB PNG, coloured by [`colorize`].
/// A PNG encoder's error as an I/O error, keeping the kind of one that came from the writer: a
/// reader that went away (`| head`) must still read as a broken pipe, which is not a failure.
fn to_io(error: png::EncodingError) -> io::Error {
    match error {
        png::EncodingError::IoError(error) => error,
        other => io::Error::other(other.to_string()),
    }
}

fn write_png(image: &JuliaImage, out: &mut dyn Write) -> io::Result<()> {
    let rgb = colorize(&image.counts, image.spec.params.max_iterations);
    let mut encoder = png::Encoder::new(out, image.spec.width, image.spec.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(to_io)?;
    // Written as the HTTP API streams it, so both give the same bytes.
    let mut rows = writer.stream_writer().map_err(to_io)?;
    rows.write_all(&rgb)?;
    rows.finish().map_err(to_io)?;
    writer.finish().map_err(to_io)
}

/// Prints a job in `format` from its bands, read one at a time by `next_band` (top band first,
/// `None` after the last), so the memory used is one band's whatever the image's size: the
/// HTTP API serves images of any size this way.
pub fn write_streamed(
    spec: &JuliaJobSpec,
    job: &JobContext,
    format: &str,
    mut next_band: impl FnMut() -> io::Result<Option<JuliaBand>>,
    out: &mut dyn Write,
) -> io::Result<()> {
    let width = spec.width.max(1) as usize;
    let expected = width * spec.height as usize;
    let mut seen = 0usize;
    let mut take = |band: &JuliaBand| {
        seen += band.counts.len();
        if band.counts.len() % width != 0 || seen > expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the band at row {} holds {} counts, not whole rows of the {}×{} image",
                    band.first_row,
                    band.counts.len(),
                    spec.width,
                    spec.height
                ),
            ));
        }
        Ok(())
    };
    let incomplete = |seen: usize| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the stored bands hold {seen} counts, the {}×{} image needs {expected}",
                spec.width, spec.height
            ),
        )
    };
    match format {
        "png" => {
            let mut encoder = png::Encoder::new(&mut *out, spec.width, spec.height);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header().map_err(to_io)?;
            let mut rows = writer.stream_writer().map_err(to_io)?;
            while let Some(band) = next_band()? {
                take(&band)?;
                rows.write_all(&colorize(&band.counts, spec.params.max_iterations))?;
            }
            if seen != expected {
                return Err(incomplete(seen));
            }
            rows.finish().map_err(to_io)?;
            writer.finish().map_err(to_io)
        }
        "counts" => {
            let mut out = io::BufWriter::with_capacity(1 << 16, out);
            while let Some(band) = next_band()? {
                take(&band)?;
                for row in band.counts.chunks(width) {
                    let mut first = true;
                    for count in row {
                        if !first {
                            out.write_all(b"\t")?;
                        }
                        first = false;
                        write!(out, "{count}")?;
                    }
                    out.write_all(b"\n")?;
                }
            }
            if seen != expected {
                return Err(incomplete(seen));
            }
            out.flush()
        }
        _ => {
            let mut sum = 0u64;
            while let Some(band) = next_band()? {
                take(&band)?;
                sum = band
                    .counts
                    .iter()
                    .fold(sum, |sum, &c| sum.saturating_add(u64::from(c)));
            }
            if seen != expected {
                return Err(incomplete(seen));
            }
            let summary = summary_of(spec, sum, job);
            if format == "json" {
                serde_json::to_writer(&mut *out, &summary)?;
                writeln!(out)
            } else {
                write_text(&summary, out)
            }
        }
    }
}

/// The Julia kind.
#[derive(Clone, Copy, Debug, Default)]
pub struct JuliaKind;

impl JobKind for JuliaKind {
    const NAME: &'static str = JULIA_KIND;
    const FORMATS: &'static [&'static str] = &["text", "json", "counts", "png"];
    const SUMMARY_FORMAT: Option<&'static str> = Some("json");
    const IMAGE_FORMAT: Option<&'static str> = Some("png");
    const PROGRESS_FIGURE: ProgressFigure = ProgressFigure::Iterations;
    type Submission = JuliaSubmission;
    type Spec = JuliaJobSpec;
    type TaskSpec = JuliaTaskSpec;
    type Prepared = JuliaGrid;
    type TaskResult = JuliaBand;
    type Output = JuliaImage;

    fn accept(
        &self,
        submission: JuliaSubmission,
        upload: Option<u64>,
        limits: &SubmitLimits,
    ) -> Result<JuliaJobSpec, Refusal> {
        super::refuse_upload(JULIA_KIND, upload)?;
        submission
            .check(limits.max_frame, limits.work.julia_iterations)
            .map_err(|e| Refusal::new(ErrorCode::BadMessage, format!("julia: {e}")))
    }

    fn tasks(&self, spec: &JuliaJobSpec) -> Result<TaskSource, Refusal> {
        let tasks = (0..spec.bands)
            .map(|band| {
                let rows = spec.band_rows(band);
                let task = JuliaTaskSpec {
                    params: spec.params,
                    first_row: rows.start,
                    end_row: rows.end,
                };
                PlannedTask::new(band, &task, Bytes::new())
            })
            .collect::<Result<_, _>>()?;
        Ok(TaskSource::Planned(tasks))
    }

    fn prepare(&self, task: &JuliaTaskSpec) -> Result<JuliaGrid, TaskError> {
        JuliaGrid::new(task.params).map_err(|e| TaskError(format!("julia: {e}")))
    }

    fn run(&self, grid: &JuliaGrid, task: &JuliaTaskSpec, _input: &[u8]) -> JuliaBand {
        let rows = task.first_row as usize..task.end_row as usize;
        // An out-of-image band (a spec no master would cut) yields no counts, which the
        // combined image then reports as incomplete.
        let counts = render_rows(grid, rows).unwrap_or_default();
        JuliaBand {
            first_row: task.first_row,
            counts,
        }
    }

    fn run_until(
        &self,
        grid: &JuliaGrid,
        task: &JuliaTaskSpec,
        _input: &[u8],
        stop: &AtomicBool,
    ) -> Option<JuliaBand> {
        let rows = task.first_row as usize..task.end_row as usize;
        let counts = match render_rows_until(grid, rows, stop) {
            Ok(counts) => counts?,
            // As in `run`: an out-of-image band yields no counts.
            Err(_) => Vec::new(),
        };
        Some(JuliaBand {
            first_row: task.first_row,
            counts,
        })
    }

    fn matches(&self, band: &JuliaBand) -> u64 {
        band.counts
            .iter()
            .map(|&c| u64::from(c))
            .fold(0, u64::saturating_add)
    }

    /// Each pixel of the band counts at most its iteration limit (one more, to be safe at the
    /// boundary).
    fn max_matches(&self, task: &JuliaTaskSpec, _input_len: usize) -> u64 {
        let rows = u64::from(task.end_row.saturating_sub(task.first_row));
        rows.saturating_mul(u64::from(task.params.width))
            .saturating_mul(u64::from(task.params.max_iterations) + 1)
    }

    /// A band holds one count per pixel of its rows, none past the iteration limit.
    fn check_result(
        &self,
        task: &JuliaTaskSpec,
        matches: u64,
        band: &JuliaBand,
    ) -> Result<(), String> {
        super::agree(matches, self.matches(band))?;
        let grid = JuliaGrid::new(task.params).map_err(|e| e.to_string())?;
        let rows = task.end_row.saturating_sub(task.first_row) as usize;
        let pixels = rows.saturating_mul(grid.width());
        if band.first_row != task.first_row || band.counts.len() != pixels {
            return Err(format!(
                "a band of {} counts from row {}; the task is {pixels} pixels from row {}",
                band.counts.len(),
                band.first_row,
                task.first_row
            ));
        }
        let limit = task.params.max_iterations;
        match band.counts.iter().any(|&count| count > limit) {
            true => Err(format!("a pixel counts more than {limit} iterations")),
            false => Ok(()),
        }
    }

    fn combine(&self, spec: &JuliaJobSpec, results: Vec<(u32, JuliaBand)>) -> JuliaImage {
        let mut counts = Vec::with_capacity(spec.width as usize * spec.height as usize);
        for (_, band) in results {
            counts.extend_from_slice(&band.counts);
        }
        JuliaImage {
            spec: spec.clone(),
            counts,
        }
    }

    fn render(
        &self,
        image: &JuliaImage,
        job: &JobContext,
        format: &str,
        out: &mut dyn Write,
    ) -> io::Result<()> {
        write_image(image, job, format, out)
    }

    fn summary(&self, spec: &JuliaJobSpec) -> String {
        let p = &spec.params;
        let asked = if (p.width, p.height) == (spec.width, spec.height) {
            String::new()
        } else {
            format!(" (asked {}×{})", p.width, p.height)
        };
        format!(
            "{}×{}{asked}, {} iterations, c = {}{:+}i, {} bands",
            spec.width, spec.height, p.max_iterations, p.c_re, p.c_im, spec.bands
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs;
    use crate::julia::render;

    const LIMITS: SubmitLimits = SubmitLimits {
        max_upload: 0,
        max_frame: 1 << 24,
        default_chunk_size: 1,
        work: jobs::WorkCaps::DEFAULT,
        max_positions: 1 << 20,
    };

    fn submission(width: u32, height: u32, bands: Option<u32>) -> serde_json::Value {
        serde_json::json!({ "width": width, "height": height, "iterations": 60, "bands": bands })
    }

    /// Accepts, cuts, runs every band (in reverse order) and combines, as the grid would.
    fn through_the_registry(submission: serde_json::Value) -> (Vec<u32>, usize) {
        let kind = jobs::require(JULIA_KIND).unwrap();
        let spec = kind.accept(submission, None, &LIMITS).unwrap();
        let TaskSource::Planned(tasks) = kind.tasks(&spec).unwrap() else {
            panic!("a julia job uploads nothing");
        };
        let out = jobs::run_in_process(kind, &spec, &tasks, "counts");
        let counts = String::from_utf8(out)
            .unwrap()
            .split(['\t', '\n'])
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        (counts, tasks.len())
    }

    #[test]
    fn bands_in_any_number_give_the_whole_render() {
        let grid = JuliaGrid::new(
            JuliaSubmission {
                width: 23,
                height: Some(17),
                iterations: Some(60),
                c: None,
                region: None,
                bands: None,
            }
            .params(),
        )
        .unwrap();
        let whole = render(&grid);
        for bands in [1, 2, 5, grid.height() as u32] {
            let (counts, tasks) = through_the_registry(submission(23, 17, Some(bands)));
            assert_eq!(tasks, bands as usize);
            assert_eq!(counts, whole, "{bands} bands");
        }
    }

    #[test]
    fn band_rows_partition_the_image() {
        let spec = JuliaJobSpec {
            params: JuliaParams::classic(10),
            width: 10,
            height: 11,
            bands: 4,
        };
        let rows: Vec<_> = (0..4).map(|b| spec.band_rows(b)).collect();
        assert_eq!(rows, [0..2, 2..5, 5..8, 8..11]);
    }

    #[test]
    fn bad_parameters_are_refused_with_the_field_named() {
        let kind = jobs::require(JULIA_KIND).unwrap();
        let refuse = |value: serde_json::Value| kind.accept(value, None, &LIMITS).unwrap_err();
        let zero = refuse(serde_json::json!({ "width": 0 }));
        assert_eq!(zero.code, ErrorCode::BadMessage);
        assert_eq!(
            zero.message,
            "julia: width must be between 1 and 8192, got 0"
        );
        let wide = refuse(serde_json::json!({ "width": 9000 }));
        assert!(wide.message.contains("8192"), "{}", wide.message);
        let negative = refuse(serde_json::json!({ "width": -5 }));
        assert!(negative.message.starts_with("bad julia job spec"));
        let nan = refuse(serde_json::json!({ "width": 10, "c": [null, 0.0] }));
        assert!(nan.message.starts_with("bad julia job spec"));
        let bands = refuse(serde_json::json!({ "width": 10, "bands": 50 }));
        assert!(bands.message.contains("bands must be between"));
        assert!(kind
            .accept(serde_json::json!({ "width": 10 }), Some(5), &LIMITS)
            .is_err());
    }

    #[test]
    fn the_png_has_the_real_dimensions() {
        let spec = JuliaSubmission {
            width: 9,
            height: Some(4),
            iterations: None,
            c: None,
            region: None,
            bands: Some(1),
        }
        .check(LIMITS.max_frame, LIMITS.work.julia_iterations)
        .unwrap();
        let grid = JuliaGrid::new(spec.params).unwrap();
        let image = JuliaImage {
            counts: render(&grid),
            spec: spec.clone(),
        };
        let mut png_bytes = Vec::new();
        write_image(&image, &JobContext::default(), "png", &mut png_bytes).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let reader = decoder.read_info().unwrap();
        let info = reader.info();
        assert_eq!((info.width, info.height), (spec.width, spec.height));
    }
}
