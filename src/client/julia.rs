//! `gridwatch julia …` (the kernel on all local cores) and the flags `gridwatch submit julia …`
//! shares with it. Both print through the `julia` kind's printer, so a local render and a grid
//! job print the same counts and the same image.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use super::connect::ClientError;
use super::job_request::{JobRequest, SubmitCommon};
use super::tool_error::{ignore_broken_pipe, ToolError};
use gridwatch::jobs::julia::{write_image, JuliaImage, JuliaSubmission, JULIA_KIND};
use gridwatch::jobs::JobContext;
use gridwatch::julia::{render_with_threads, JuliaGrid, MAX_ITERATIONS, MAX_SIDE};

/// What to render: the classic benchmark unless told otherwise.
#[derive(Clone, Debug, clap::Args)]
pub struct JuliaSpecArgs {
    /// Columns asked for (1 to 8192); repeated addition may give one more.
    #[arg(long, allow_negative_numbers = true)]
    pub width: i64,
    /// Rows asked for (1 to 8192; default: the width).
    #[arg(long, allow_negative_numbers = true)]
    pub height: Option<i64>,
    /// Iteration limit per pixel (1 to 1000000).
    #[arg(long, allow_negative_numbers = true, default_value_t = gridwatch::julia::DEFAULT_ITERATIONS.into())]
    pub iterations: i64,
    /// The constant c as RE,IM.
    #[arg(long, value_name = "RE,IM", allow_hyphen_values = true, value_parser = parse_pair, default_value = "-0.62772,-0.42193")]
    pub c: [f64; 2],
    /// The region as X1,X2,Y1,Y2.
    #[arg(long, value_name = "X1,X2,Y1,Y2", allow_hyphen_values = true, value_parser = parse_region, default_value = "-1.8,1.8,-1.8,1.8")]
    pub region: [f64; 4],
    /// Bands of rows the job is cut into, one task each (default: 32, or one per row for
    /// smaller images; more when a band's result would not fit one frame). Ignored by the local
    /// command.
    #[arg(long, allow_negative_numbers = true)]
    pub bands: Option<i64>,
}

impl JuliaSpecArgs {
    /// The submission these flags describe, its values checked (sizes, NaN, region, bands), so
    /// that a bad value fails with one line before anything is sent.
    pub fn submission(&self) -> Result<JuliaSubmission, String> {
        self.checked().map_err(|e| format!("julia: {e}"))
    }

    fn checked(&self) -> Result<JuliaSubmission, String> {
        let submission = JuliaSubmission {
            width: count("width", self.width, MAX_SIDE)?,
            height: self
                .height
                .map(|h| count("height", h, MAX_SIDE))
                .transpose()?,
            iterations: Some(count("iterations", self.iterations, MAX_ITERATIONS)?),
            c: Some(self.c),
            region: Some(self.region),
            bands: self
                .bands
                .map(|b| count("bands", b, u32::MAX))
                .transpose()?,
        };
        // No frame limit or work cap here: the master checks against its own.
        submission
            .check(usize::MAX, u64::MAX)
            .map_err(|e| e.to_string())?;
        Ok(submission)
    }

    /// The submission as a job request.
    pub fn request(&self) -> Result<JobRequest, ClientError> {
        let submission = self.submission().map_err(ClientError::Usage)?;
        Ok(JobRequest {
            kind: JULIA_KIND,
            spec: serde_json::to_value(&submission)
                .map_err(|e| ClientError::Usage(format!("julia spec: {e}")))?,
            upload: None,
            inputs: Vec::new(),
        })
    }
}

/// `gridwatch submit julia …`.
#[derive(Clone, Debug, clap::Args)]
pub struct JuliaSubmitArgs {
    /// What to render.
    #[command(flatten)]
    pub spec: JuliaSpecArgs,
    /// Flags of every submit.
    #[command(flatten)]
    pub common: SubmitCommon,
}

/// `gridwatch julia …`.
#[derive(Clone, Debug, clap::Args)]
pub struct JuliaArgs {
    /// What to render.
    #[command(flatten)]
    pub spec: JuliaSpecArgs,
    /// Output: text (summary), json (summary), counts (one line per row, tab-separated) or png.
    #[arg(long, default_value = "text", value_parser = ["text", "json", "counts", "png"])]
    pub format: String,
    /// Same as --format json.
    #[arg(long)]
    pub json: bool,
    /// Write the output to FILE instead of stdout (needed for png on a terminal).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Threads (default: all cores).
    #[arg(long, env = "GRIDWATCH_THREADS")]
    pub threads: Option<usize>,
}

/// Runs `gridwatch julia`.
pub fn run(args: &JuliaArgs) -> Result<(), ToolError> {
    let format = if args.json { "json" } else { &args.format };
    let spec = args
        .spec
        .submission()
        .and_then(|s| {
            s.check(usize::MAX, u64::MAX)
                .map_err(|e| format!("julia: {e}"))
        })
        .map_err(ToolError::Usage)?;
    let grid = JuliaGrid::new(spec.params).map_err(|e| ToolError::Usage(format!("julia: {e}")))?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let started = Instant::now();
    let counts = render_with_threads(&grid, threads);
    let job = JobContext {
        job_id: None,
        seconds: started.elapsed().as_secs_f64(),
        tasks: 1,
    };
    let image = JuliaImage { spec, counts };
    match &args.out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .map_err(|e| ToolError::Usage(format!("{}: cannot create: {e}", path.display())))?;
            let mut out = std::io::BufWriter::new(file);
            write_image(&image, &job, format, &mut out)?;
            out.flush()?;
        }
        None => {
            if format == "png" && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                return Err(ToolError::Usage(
                    "--format png writes binary data: give --out FILE or redirect stdout".into(),
                ));
            }
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            ignore_broken_pipe(
                write_image(&image, &job, format, &mut out).and_then(|()| out.flush()),
            )?;
        }
    }
    Ok(())
}

/// Parses `RE,IM`.
fn parse_pair(text: &str) -> Result<[f64; 2], String> {
    let values = parse_floats(text, 2)?;
    Ok([values[0], values[1]])
}

/// Parses `X1,X2,Y1,Y2`.
fn parse_region(text: &str) -> Result<[f64; 4], String> {
    let values = parse_floats(text, 4)?;
    Ok([values[0], values[1], values[2], values[3]])
}

/// `count` comma-separated numbers (NaN and infinities pass, for the checks to name the field).
fn parse_floats(text: &str, count: usize) -> Result<Vec<f64>, String> {
    let values = text
        .split(',')
        .map(|part| {
            part.trim()
                .parse()
                .map_err(|_| format!("{part:?} is not a number"))
        })
        .collect::<Result<Vec<f64>, String>>()?;
    if values.len() != count {
        return Err(format!(
            "expected {count} comma-separated numbers, got {}",
            values.len()
        ));
    }
    Ok(values)
}

/// A count typed on the command line, between 1 and `max`, as the kernel's own errors say it.
pub fn count(field: &str, value: i64, max: u32) -> Result<u32, String> {
    match u32::try_from(value) {
        Ok(value) if value >= 1 && value <= max => Ok(value),
        _ => Err(format!("{field} must be between 1 and {max}, got {value}")),
    }
}
