//! The Julia-set kernel: pure functions from parameters to per-pixel iteration counts, no I/O,
//! no networking, no async. Workers, `gridwatch julia` and the benchmarks call the same code.
//!
//! It follows the classic Python HPC Julia benchmark bit for bit, so its figures can be compared
//! with the published ones (1000 × 1000, 300 iterations: counts sum to 33 219 980) and with any
//! Python implementation of it:
//! - c = −0.62772 − 0.42193i over the region x, y ∈ [−1.8, 1.8];
//! - the axes are built by repeated addition of the step, x from x1 while x < x2 and y from y2
//!   while y > y1, so an axis may hold one point more than asked: [`JuliaGrid`] reports the real
//!   dimensions;
//! - a pixel's value is the number of iterations of z ← z·z + c from z = x + iy while |z| < 2 and
//!   n < max_iterations, with CPython's operation order (see [`escape_count`]).
//!
//! Invariant of the band API: [`render_rows`] over any partition of `0..height` into row ranges,
//! concatenated in order, equals one render of the whole image.

mod color;
mod render;

pub use color::colorize;
pub use render::{escape_count, render, render_rows, render_rows_until, render_with_threads};

use std::ops::Range;

/// Largest accepted `width` or `height`: an image of at most 8 193 × 8 193 counts (one more point
/// per axis from repeated addition) holds 268 MB of `u32`, which a master can still aggregate.
pub const MAX_SIDE: u32 = 8192;

/// Largest accepted `max_iterations`; counts stay far inside `u32` and one pixel stays bounded.
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// Iteration limit of the classic benchmark.
pub const DEFAULT_ITERATIONS: u32 = 300;

/// Real part of the classic benchmark's constant c.
pub const DEFAULT_C_RE: f64 = -0.62772;

/// Imaginary part of the classic benchmark's constant c.
pub const DEFAULT_C_IM: f64 = -0.42193;

/// The classic benchmark's region: x1, x2, y1, y2.
pub const DEFAULT_REGION: [f64; 4] = [-1.8, 1.8, -1.8, 1.8];

/// What to render, as a user or a job spec gives it; [`JuliaGrid::new`] validates it.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JuliaParams {
    /// Requested number of columns; the real width may be one more (see the module doc).
    pub width: u32,
    /// Requested number of rows; the real height may be one more.
    pub height: u32,
    /// Iteration limit per pixel.
    pub max_iterations: u32,
    /// Real part of c.
    pub c_re: f64,
    /// Imaginary part of c.
    pub c_im: f64,
    /// Left edge of the region (first x).
    pub x1: f64,
    /// Right edge of the region (x stays below it).
    pub x2: f64,
    /// Bottom edge of the region (y stays above it).
    pub y1: f64,
    /// Top edge of the region (first y, the top row).
    pub y2: f64,
}

impl JuliaParams {
    /// The classic benchmark at `width`: square, 300 iterations, its c and region.
    pub fn classic(width: u32) -> Self {
        let [x1, x2, y1, y2] = DEFAULT_REGION;
        Self {
            width,
            height: width,
            max_iterations: DEFAULT_ITERATIONS,
            c_re: DEFAULT_C_RE,
            c_im: DEFAULT_C_IM,
            x1,
            x2,
            y1,
            y2,
        }
    }
}

/// A parameter the kernel refuses; each names the field and what is allowed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum JuliaError {
    /// A size or iteration count outside its bounds.
    #[error("{field} must be between 1 and {max}, got {value}")]
    OutOfRange {
        /// The offending field.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The largest accepted value.
        max: u64,
    },
    /// NaN or an infinity where a coordinate or c was expected.
    #[error("{field} must be a finite number, got {value}")]
    NotFinite {
        /// The offending field.
        field: &'static str,
        /// The value given.
        value: f64,
    },
    /// A region whose low edge is not below its high edge.
    #[error("region: {axis}1 ({low}) must be less than {axis}2 ({high})")]
    EmptyRegion {
        /// `"x"` or `"y"`.
        axis: &'static str,
        /// The low edge given.
        low: f64,
        /// The high edge given.
        high: f64,
    },
    /// A region so narrow (or so far from zero) that adding the step barely moves the coordinate,
    /// so repeated addition would yield far more points than asked, or never stop.
    #[error(
        "region: {axis} from {low} to {high} is too narrow for {points} points at double \
         precision; widen the region or lower the size"
    )]
    TooNarrow {
        /// `"x"` or `"y"`.
        axis: &'static str,
        /// The low edge given.
        low: f64,
        /// The high edge given.
        high: f64,
        /// The requested number of points on that axis.
        points: u32,
    },
    /// A band of rows that is not inside the image.
    #[error("rows {start}..{end} are not inside the image's {height} rows")]
    RowsOutOfRange {
        /// First row asked for.
        start: usize,
        /// One past the last row asked for.
        end: usize,
        /// The image's real height.
        height: usize,
    },
}

/// Validated parameters with their axes, built once and shared by every band of a job.
#[derive(Clone, Debug, PartialEq)]
pub struct JuliaGrid {
    params: JuliaParams,
    xs: Vec<f64>,
    ys: Vec<f64>,
}

impl JuliaGrid {
    /// Validates `params` and builds both axes by repeated addition.
    pub fn new(params: JuliaParams) -> Result<Self, JuliaError> {
        check_range("width", params.width, MAX_SIDE)?;
        check_range("height", params.height, MAX_SIDE)?;
        check_range("max_iterations", params.max_iterations, MAX_ITERATIONS)?;
        for (field, value) in [
            ("c_re", params.c_re),
            ("c_im", params.c_im),
            ("x1", params.x1),
            ("x2", params.x2),
            ("y1", params.y1),
            ("y2", params.y2),
        ] {
            if !value.is_finite() {
                return Err(JuliaError::NotFinite { field, value });
            }
        }
        let xs = ascending_axis(params.x1, params.x2, params.width)?;
        let ys = descending_axis(params.y1, params.y2, params.height)?;
        Ok(Self { params, xs, ys })
    }

    /// The parameters as given.
    pub fn params(&self) -> &JuliaParams {
        &self.params
    }

    /// Real number of columns (the requested width, or one more).
    pub fn width(&self) -> usize {
        self.xs.len()
    }

    /// Real number of rows (the requested height, or one more).
    pub fn height(&self) -> usize {
        self.ys.len()
    }

    /// Real number of pixels.
    pub fn pixel_count(&self) -> usize {
        self.xs.len() * self.ys.len()
    }

    /// The x of each column, left to right.
    pub fn xs(&self) -> &[f64] {
        &self.xs
    }

    /// The y of each row, top row (y2) first.
    pub fn ys(&self) -> &[f64] {
        &self.ys
    }

    /// Checks that `rows` lies inside the image (an empty range at the end is fine).
    pub fn check_rows(&self, rows: &Range<usize>) -> Result<(), JuliaError> {
        if rows.start > rows.end || rows.end > self.height() {
            return Err(JuliaError::RowsOutOfRange {
                start: rows.start,
                end: rows.end,
                height: self.height(),
            });
        }
        Ok(())
    }
}

fn check_range(field: &'static str, value: u32, max: u32) -> Result<(), JuliaError> {
    if value == 0 || value > max {
        return Err(JuliaError::OutOfRange {
            field,
            value: value.into(),
            max: max.into(),
        });
    }
    Ok(())
}

/// x from `low`, adding `(high − low) / points` while x < high, as the benchmark does.
fn ascending_axis(low: f64, high: f64, points: u32) -> Result<Vec<f64>, JuliaError> {
    if low >= high {
        return Err(JuliaError::EmptyRegion {
            axis: "x",
            low,
            high,
        });
    }
    let step = (high - low) / f64::from(points);
    repeated_addition(low, step, |x| x < high, points).ok_or(JuliaError::TooNarrow {
        axis: "x",
        low,
        high,
        points,
    })
}

/// y from `high`, adding `(low − high) / points` while y > low: the top row comes first.
fn descending_axis(low: f64, high: f64, points: u32) -> Result<Vec<f64>, JuliaError> {
    if low >= high {
        return Err(JuliaError::EmptyRegion {
            axis: "y",
            low,
            high,
        });
    }
    let step = (low - high) / f64::from(points);
    repeated_addition(high, step, |y| y > low, points).ok_or(JuliaError::TooNarrow {
        axis: "y",
        low,
        high,
        points,
    })
}

/// Collects `start`, `start + step`, … while `inside` holds; `None` past `points + 1` values,
/// because a well-conditioned region never gets there and a degenerate one might never stop.
fn repeated_addition(
    start: f64,
    step: f64,
    inside: impl Fn(f64) -> bool,
    points: u32,
) -> Option<Vec<f64>> {
    let cap = points as usize + 1;
    let mut axis = Vec::with_capacity(cap);
    let mut value = start;
    while inside(value) {
        if axis.len() == cap {
            return None;
        }
        axis.push(value);
        value += step;
    }
    Some(axis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_too_small_to_move_the_coordinate_is_refused() {
        let mut params = JuliaParams::classic(100);
        params.x1 = 1e17;
        params.x2 = 1e17 + 64.0;
        let error = JuliaGrid::new(params).unwrap_err();
        assert!(matches!(error, JuliaError::TooNarrow { axis: "x", .. }));
    }

    #[test]
    fn errors_name_the_field() {
        let mut params = JuliaParams::classic(0);
        let text = JuliaGrid::new(params).unwrap_err().to_string();
        assert_eq!(text, "width must be between 1 and 8192, got 0");
        params.width = 10;
        params.height = 10;
        params.c_im = f64::NAN;
        let text = JuliaGrid::new(params).unwrap_err().to_string();
        assert_eq!(text, "c_im must be a finite number, got NaN");
    }
}
