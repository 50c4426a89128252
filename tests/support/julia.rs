//! The Julia render as the classic benchmark's Python computes it, written out plainly, for
//! tests to check the grid's and the local kernel's pixels against.

/// A rendering request, as the test spells it on the command line.
#[derive(Clone, Copy)]
pub struct Spec {
    pub width: u32,
    pub height: u32,
    pub iterations: u32,
    pub c: (f64, f64),
}

impl Spec {
    pub fn classic(width: u32, height: u32, iterations: u32) -> Self {
        Self {
            width,
            height,
            iterations,
            c: (-0.62772, -0.42193),
        }
    }

    pub fn args(&self) -> Vec<String> {
        vec![
            "--width".into(),
            self.width.to_string(),
            "--height".into(),
            self.height.to_string(),
            "--iterations".into(),
            self.iterations.to_string(),
            format!("--c={},{}", self.c.0, self.c.1),
        ]
    }
}

/// The image as the classic benchmark's Python computes it, written out plainly: axes by
/// repeated addition over [-1.8, 1.8]², then `while abs(z) < 2 and n < maxiter: z = z * z + c`.
/// Returns (columns, rows, counts top row first).
pub fn reference(spec: Spec) -> (usize, usize, Vec<u32>) {
    let (x1, x2, y1, y2) = (-1.8f64, 1.8f64, -1.8f64, 1.8f64);
    let x_step = (x2 - x1) / f64::from(spec.width);
    let y_step = (y1 - y2) / f64::from(spec.height);
    let mut xs = Vec::new();
    let mut x = x1;
    while x < x2 {
        xs.push(x);
        x += x_step;
    }
    let mut ys = Vec::new();
    let mut y = y2;
    while y > y1 {
        ys.push(y);
        y += y_step;
    }
    let mut counts = Vec::with_capacity(xs.len() * ys.len());
    for &y in &ys {
        for &x in &xs {
            let (mut re, mut im) = (x, y);
            let mut n = 0;
            while re.hypot(im) < 2.0 && n < spec.iterations {
                // CPython's complex product, then the sum with c.
                let (square_re, square_im) = (re * re - im * im, re * im + im * re);
                re = square_re + spec.c.0;
                im = square_im + spec.c.1;
                n += 1;
            }
            counts.push(n);
        }
    }
    (xs.len(), ys.len(), counts)
}
