//! A colour palette for iteration counts, so an image can be written by any encoder.

/// RGB bytes (three per pixel, in the order of `counts`) for iteration counts out of
/// `max_iterations`.
///
/// Pixels that reach the limit (inside the set) are black. The others follow a smooth
/// dark-blue → orange → white polynomial palette of √((n + 1) / (max + 1)): most pixels escape
/// within a few iterations, and the square root spreads those low counts over visible colours
/// (the + 1 keeps even a count of 0 off black, which marks the set alone).
pub fn colorize(counts: &[u32], max_iterations: u32) -> Vec<u8> {
    let scale = f64::from(max_iterations) + 1.0;
    let mut rgb = Vec::with_capacity(counts.len() * 3);
    for &count in counts {
        if count >= max_iterations {
            rgb.extend_from_slice(&[0, 0, 0]);
            continue;
        }
        let t = ((f64::from(count) + 1.0) / scale).sqrt();
        let u = 1.0 - t;
        let channels = [
            9.0 * u * t * t * t,
            15.0 * u * u * t * t,
            8.5 * u * u * u * t,
        ];
        // The channels peak below 1; the glow term lifts counts near the limit towards white.
        let glow = t.powi(6);
        for channel in channels {
            let value = (channel + glow * (1.0 - channel)).clamp(0.0, 1.0);
            rgb.push((value * 255.0).round() as u8);
        }
    }
    rgb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_bytes_per_pixel_and_black_inside_the_set() {
        let rgb = colorize(&[0, 150, 300], 300);
        assert_eq!(rgb.len(), 9);
        assert_ne!(&rgb[0..3], &[0, 0, 0]);
        assert_ne!(&rgb[3..6], &[0, 0, 0]);
        assert_eq!(&rgb[6..9], &[0, 0, 0]);
    }
}
