//! The Julia kernel against the classic benchmark's published figure and against a reference loop
//! written here from the benchmark's definition, pixel by pixel.

use gridwatch::julia::{
    colorize, render, render_rows, render_with_threads, JuliaError, JuliaGrid, JuliaParams,
    MAX_ITERATIONS, MAX_SIDE,
};

/// The benchmark's Python, transcribed: axes by repeated addition, then for each pixel
/// `while abs(z) < 2 and n < maxiter: z = z * z + c`, with `abs` as `hypot` and the complex
/// product written out as CPython computes it. Returns (width, height, counts top row first).
fn reference(params: &JuliaParams) -> (usize, usize, Vec<u32>) {
    let mut xs = Vec::new();
    let x_step = (params.x2 - params.x1) / params.width as f64;
    let mut x = params.x1;
    while x < params.x2 {
        xs.push(x);
        x += x_step;
    }
    let mut ys = Vec::new();
    let y_step = (params.y1 - params.y2) / params.height as f64;
    let mut y = params.y2;
    while y > params.y1 {
        ys.push(y);
        y += y_step;
    }
    let mut counts = Vec::new();
    for &y in &ys {
        for &x in &xs {
            let (mut a, mut b) = (x, y);
            let mut n = 0;
            while a.hypot(b) < 2.0 && n < params.max_iterations {
                let (real, imag) = (a * a - b * b, a * b + b * a);
                a = real + params.c_re;
                b = imag + params.c_im;
                n += 1;
            }
            counts.push(n);
        }
    }
    (xs.len(), ys.len(), counts)
}

fn sized(width: u32, height: u32, iterations: u32) -> JuliaParams {
    JuliaParams {
        height,
        max_iterations: iterations,
        ..JuliaParams::classic(width)
    }
}

#[test]
fn published_benchmark_sum_at_1000_by_1000() {
    // The benchmark's own check: 1000 × 1000, 300 iterations, counts sum to 33 219 980.
    let grid = JuliaGrid::new(JuliaParams::classic(1000)).unwrap();
    let counts = render(&grid);
    assert_eq!((grid.width(), grid.height()), (1000, 1000));
    let sum: u64 = counts.iter().map(|&n| u64::from(n)).sum();
    assert_eq!(sum, 33_219_980);
}

#[test]
fn every_pixel_matches_the_reference_loop_on_small_sizes() {
    for (width, height, iterations) in [
        (1, 1, 300),
        (2, 3, 300),
        (7, 5, 300),
        (10, 10, 300),
        (31, 17, 50),
        (64, 48, 100),
        (100, 100, 300),
        (120, 33, 1000),
    ] {
        let params = sized(width, height, iterations);
        let grid = JuliaGrid::new(params).unwrap();
        let (ref_width, ref_height, ref_counts) = reference(&params);
        assert_eq!((grid.width(), grid.height()), (ref_width, ref_height));
        assert_eq!(
            render(&grid),
            ref_counts,
            "{width} × {height}, {iterations}"
        );
    }
}

#[test]
fn other_constants_and_regions_match_the_reference_loop() {
    let params = JuliaParams {
        c_re: 0.285,
        c_im: 0.01,
        x1: -1.5,
        x2: 1.5,
        y1: -1.0,
        y2: 1.0,
        ..sized(90, 61, 400)
    };
    let grid = JuliaGrid::new(params).unwrap();
    let (width, height, counts) = reference(&params);
    assert_eq!((grid.width(), grid.height()), (width, height));
    assert_eq!(render(&grid), counts);
}

#[test]
fn width_3_has_4_points_with_the_counts_python_prints() {
    // −1.8 + 1.2 + 1.2 + 1.2 = 1.7999999999999998 < 1.8, so each axis holds a fourth point.
    // Counts as printed by the benchmark's pure-Python loop for --width 3.
    let grid = JuliaGrid::new(JuliaParams::classic(3)).unwrap();
    assert_eq!((grid.width(), grid.height()), (4, 4));
    assert_eq!(grid.xs()[3], 1.7999999999999998);
    assert_eq!(grid.ys()[0], 1.8);
    let python = [0, 1, 1, 0, 1, 3, 6, 1, 1, 6, 3, 1, 0, 1, 1, 0];
    assert_eq!(render(&grid), python);
}

#[test]
fn real_dimensions_follow_repeated_addition() {
    let mut with_extra_point = 0;
    for size in 1..=300 {
        let params = sized(size, 301 - size, 1);
        let grid = JuliaGrid::new(params).unwrap();
        let (width, height, _) = reference(&params);
        assert_eq!(
            (grid.width(), grid.height()),
            (width, height),
            "size {size}"
        );
        assert!(width == size as usize || width == size as usize + 1);
        with_extra_point += usize::from(width > size as usize);
        assert_eq!(grid.pixel_count(), width * height);
    }
    assert!(with_extra_point > 50, "the one-more-point effect is common");
}

#[test]
fn bands_of_any_size_give_the_same_pixels_as_one_render() {
    let grid = JuliaGrid::new(sized(57, 43, 300)).unwrap();
    let whole = render_with_threads(&grid, 1);
    assert_eq!(render_rows(&grid, 0..grid.height()).unwrap(), whole);
    for band in [1, 2, 5, 7, 16, 44] {
        let mut joined = Vec::new();
        let mut start = 0;
        while start < grid.height() {
            let end = (start + band).min(grid.height());
            joined.extend(render_rows(&grid, start..end).unwrap());
            start = end;
        }
        assert_eq!(joined, whole, "bands of {band} rows");
    }
    assert_eq!(render_rows(&grid, 5..5).unwrap(), Vec::<u32>::new());
}

#[test]
fn rows_outside_the_image_are_refused() {
    let grid = JuliaGrid::new(sized(10, 10, 10)).unwrap();
    let height = grid.height();
    for rows in [0..height + 1, height + 1..height + 2] {
        assert_eq!(
            render_rows(&grid, rows.clone()),
            Err(JuliaError::RowsOutOfRange {
                start: rows.start,
                end: rows.end,
                height
            })
        );
    }
}

#[test]
fn bad_parameters_get_errors_naming_the_field() {
    let cases: Vec<(JuliaParams, &str)> = vec![
        (sized(0, 10, 300), "width must be between 1 and 8192, got 0"),
        (
            sized(10, 0, 300),
            "height must be between 1 and 8192, got 0",
        ),
        (
            sized(MAX_SIDE + 1, 10, 300),
            "width must be between 1 and 8192, got 8193",
        ),
        (
            sized(10, 10, 0),
            "max_iterations must be between 1 and 1000000, got 0",
        ),
        (
            sized(10, 10, MAX_ITERATIONS + 1),
            "max_iterations must be between 1 and 1000000, got 1000001",
        ),
        (
            JuliaParams {
                c_re: f64::INFINITY,
                ..sized(10, 10, 300)
            },
            "c_re must be a finite number, got inf",
        ),
        (
            JuliaParams {
                x1: f64::NAN,
                ..sized(10, 10, 300)
            },
            "x1 must be a finite number, got NaN",
        ),
        (
            JuliaParams {
                y2: -2.0,
                ..sized(10, 10, 300)
            },
            "region: y1 (-1.8) must be less than y2 (-2)",
        ),
        (
            JuliaParams {
                x1: 1.8,
                ..sized(10, 10, 300)
            },
            "region: x1 (1.8) must be less than x2 (1.8)",
        ),
    ];
    for (params, message) in cases {
        assert_eq!(JuliaGrid::new(params).unwrap_err().to_string(), message);
    }
}

#[test]
fn colours_cover_every_pixel_and_the_set_is_black() {
    let grid = JuliaGrid::new(sized(40, 30, 300)).unwrap();
    let counts = render(&grid);
    let rgb = colorize(&counts, 300);
    assert_eq!(rgb.len(), counts.len() * 3);
    for (count, pixel) in counts.iter().zip(rgb.chunks(3)) {
        assert_eq!(*count == 300, pixel == [0, 0, 0], "count {count}");
    }
}
