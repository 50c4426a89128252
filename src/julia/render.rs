//! Iteration counts for one pixel, for a band of rows, and for a whole image on all cores.
//!
//! Every path goes through [`escape_count`], so a band rendered on a worker, a local render on
//! many threads and the benchmark's single-threaded loop give the same pixels.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::{JuliaError, JuliaGrid};

/// Rows handed to a thread at a time: small, because rows near the set cost far more than rows
/// far from it, and a shared queue of small bands keeps every core busy to the end.
const ROWS_PER_BAND: usize = 4;

/// Below this squared modulus |z| < 2 certainly holds, above [`SURELY_OUTSIDE`] it certainly
/// fails. The margins (10⁻⁶) dwarf the rounding of `re² + im²` and of `hypot` (about 10⁻¹⁶), so
/// only the rare values between them need the exact `hypot` that CPython's `abs(complex)` uses.
const SURELY_INSIDE: f64 = 3.999_999;
const SURELY_OUTSIDE: f64 = 4.000_001;

/// Iterations of z ← z·z + c from z = x + iy while |z| < 2 and n < `max_iterations`.
///
/// Bit-identical with the benchmark's Python loop: |z| is decided as `abs(z) < 2`, that is
/// `hypot(re, im) < 2`, and z·z + c is computed as CPython's complex product
/// `(re·re − im·im, re·im + im·re)` followed by the sum with c, each operation rounded on its own
/// (Rust never fuses a multiply and an add). Python builds that use fused multiply-add for complex
/// products (some non-x86 compilers do) can differ in rare pixels.
#[inline]
pub fn escape_count(x: f64, y: f64, c_re: f64, c_im: f64, max_iterations: u32) -> u32 {
    let (mut re, mut im) = (x, y);
    let mut n = 0;
    while n < max_iterations && modulus_below_two(re, im) {
        let square_re = re * re - im * im;
        let square_im = re * im + im * re;
        re = square_re + c_re;
        im = square_im + c_im;
        n += 1;
    }
    n
}

/// `hypot(re, im) < 2`, skipping the slow `hypot` call when the answer cannot depend on it.
#[inline]
fn modulus_below_two(re: f64, im: f64) -> bool {
    let squared = re * re + im * im;
    if squared < SURELY_INSIDE {
        true
    } else if squared > SURELY_OUTSIDE {
        false
    } else {
        re.hypot(im) < 2.0
    }
}

/// Counts of the rows `rows` (top row is 0), row after row, each left to right.
///
/// A job cuts `0..grid.height()` into bands and renders each anywhere; concatenating the bands
/// in row order gives exactly [`render`]'s image.
pub fn render_rows(grid: &JuliaGrid, rows: Range<usize>) -> Result<Vec<u32>, JuliaError> {
    grid.check_rows(&rows)?;
    let mut counts = vec![0; rows.len() * grid.width()];
    fill_rows(grid, rows.start, &mut counts, &AtomicBool::new(false));
    Ok(counts)
}

/// [`render_rows`] that gives up when `stop` is set, checked before each row: `None` once
/// stopped. A row costs at most width × iteration limit, so a stop is seen within one row.
pub fn render_rows_until(
    grid: &JuliaGrid,
    rows: Range<usize>,
    stop: &AtomicBool,
) -> Result<Option<Vec<u32>>, JuliaError> {
    grid.check_rows(&rows)?;
    let mut counts = vec![0; rows.len() * grid.width()];
    Ok(fill_rows(grid, rows.start, &mut counts, stop).then_some(counts))
}

/// The whole image on all available cores.
pub fn render(grid: &JuliaGrid) -> Vec<u32> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    render_with_threads(grid, threads)
}

/// The whole image on `threads` threads (at least one), top row first.
///
/// Threads take bands of [`ROWS_PER_BAND`] rows from a shared queue and write straight into their
/// own slice of the image, so nothing is copied or reordered afterwards.
pub fn render_with_threads(grid: &JuliaGrid, threads: usize) -> Vec<u32> {
    let width = grid.width();
    let mut counts = vec![0; grid.pixel_count()];
    if counts.is_empty() {
        return counts;
    }
    let threads = threads.clamp(1, grid.height().div_ceil(ROWS_PER_BAND));
    if threads == 1 {
        fill_rows(grid, 0, &mut counts, &AtomicBool::new(false));
        return counts;
    }
    let bands = Mutex::new(counts.chunks_mut(ROWS_PER_BAND * width).enumerate());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                // A poisoned lock means another thread panicked; scope re-raises that panic.
                let next = match bands.lock() {
                    Ok(mut queue) => queue.next(),
                    Err(_) => None,
                };
                let Some((band, slice)) = next else { break };
                fill_rows(grid, band * ROWS_PER_BAND, slice, &AtomicBool::new(false));
            });
        }
    });
    counts
}

/// Fills `out` (whole rows) with the counts of the rows starting at `first_row`; false if
/// `stop` was set before a row, leaving the rest unfilled.
fn fill_rows(grid: &JuliaGrid, first_row: usize, out: &mut [u32], stop: &AtomicBool) -> bool {
    let params = grid.params();
    let xs = grid.xs();
    if xs.is_empty() {
        return true;
    }
    for (row, line) in out.chunks_mut(xs.len()).enumerate() {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let y = grid.ys()[first_row + row];
        for (pixel, &x) in line.iter_mut().zip(xs) {
            *pixel = escape_count(x, y, params.c_re, params.c_im, params.max_iterations);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modulus_shortcut_agrees_with_hypot_near_the_circle() {
        let mut angle_state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..100_000 {
            angle_state = angle_state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1);
            let t = (angle_state >> 11) as f64 / (1u64 << 53) as f64;
            let radius = 2.0 + (t - 0.5) * 4e-6;
            let (re, im) = (radius * (t * 6.3).cos(), radius * (t * 6.3).sin());
            assert_eq!(modulus_below_two(re, im), re.hypot(im) < 2.0);
        }
    }

    #[test]
    fn a_set_stop_gives_up_before_the_next_row() {
        let grid = JuliaGrid::new(super::super::JuliaParams::classic(20)).unwrap();
        let stop = AtomicBool::new(false);
        let whole = render_rows(&grid, 0..grid.height()).unwrap();
        assert_eq!(
            render_rows_until(&grid, 0..grid.height(), &stop).unwrap(),
            Some(whole)
        );
        stop.store(true, Ordering::Relaxed);
        assert_eq!(render_rows_until(&grid, 0..3, &stop).unwrap(), None);
    }

    #[test]
    fn threads_do_not_change_the_image() {
        let grid = JuliaGrid::new(super::super::JuliaParams::classic(37)).unwrap();
        let one = render_with_threads(&grid, 1);
        assert_eq!(render_with_threads(&grid, 3), one);
        assert_eq!(render_with_threads(&grid, 64), one);
    }
}
