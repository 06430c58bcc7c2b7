//! NAB's `windowedGaussian` detector (`nab/detectors/gaussian/windowedGaussian_detector.py`):
//! a point's anomaly score is one minus the two-sided tail probability of a normal
//! distribution fitted to the previous points (up to 6,400 of them, refitted every 100 points
//! once the window is full). It is NAB's simplest baseline and validates the harness: run over
//! NAB's data it must reproduce NAB's published windowedGaussian results.
//!
//! The arithmetic follows NAB's Python to the bit where it matters: the published threshold is
//! 1.0, so a point is an alert only when `1 - tail` rounds to exactly 1 (the point lies more
//! than ~8.3 deviations out), and a last-bit difference in the mean, the deviation or the tail
//! would move points across it.

use crate::ml::detector::Detector;
use crate::ml::series::Point;

/// How many past points the distribution is fitted to.
const WINDOW: usize = 6400;
/// Once the window is full, how many new points wait before it slides and is refitted.
const STEP: usize = 100;
/// The deviation NAB uses when the window is constant, so that scores stay finite.
const MIN_STD: f64 = 0.000001;

#[derive(Debug, Clone, Default)]
pub struct WindowedGaussian {
    window: Vec<f64>,
    pending: Vec<f64>,
    mean: f64,
    std: f64,
    /// Squared deviations, kept to avoid an allocation per refit.
    scratch: Vec<f64>,
}

impl Detector for WindowedGaussian {
    fn score(&mut self, point: Point) -> f64 {
        let x = point.value;
        let score = if self.window.is_empty() {
            0.0
        } else {
            1.0 - normal_tail(x, self.mean, self.std)
        };
        if self.window.len() < WINDOW {
            self.window.push(x);
            self.refit();
        } else {
            self.pending.push(x);
            if self.pending.len() == STEP {
                self.window.drain(..STEP);
                self.window.append(&mut self.pending);
                self.refit();
            }
        }
        score
    }
}

impl WindowedGaussian {
    /// `numpy.mean` and `numpy.std` (population deviation) of the window.
    fn refit(&mut self) {
        let n = self.window.len() as f64;
        let mean = pairwise_sum(&self.window) / n;
        self.scratch.clear();
        self.scratch
            .extend(self.window.iter().map(|x| (x - mean) * (x - mean)));
        let std = (pairwise_sum(&self.scratch) / n).sqrt();
        self.mean = mean;
        self.std = if std == 0.0 { MIN_STD } else { std };
    }
}

/// The probability of a sample at least as far from the mean as `x`, on `x`'s side: the
/// Q-function of its distance in deviations.
fn normal_tail(x: f64, mean: f64, std: f64) -> f64 {
    let x = if x < mean { 2.0 * mean - x } else { x };
    let z = (x - mean) / std;
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Sums the way numpy's `add.reduce` sums a contiguous float64 array: below 8 elements one
/// by one; up to 128 with eight interleaved partial sums; above, the two halves (split at a
/// multiple of 8) separately.
fn pairwise_sum(a: &[f64]) -> f64 {
    const BLOCK: usize = 128;
    let n = a.len();
    if n < 8 {
        a.iter().fold(0.0, |sum, x| sum + x)
    } else if n <= BLOCK {
        let whole = n - n % 8;
        let mut r: [f64; 8] = a[..8].try_into().expect("eight elements");
        for chunk in a[8..whole].chunks_exact(8) {
            for (acc, x) in r.iter_mut().zip(chunk) {
                *acc += x;
            }
        }
        let sum = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        a[whole..].iter().fold(sum, |sum, x| sum + x)
    } else {
        let half = n / 2 - (n / 2) % 8;
        pairwise_sum(&a[..half]) + pairwise_sum(&a[half..])
    }
}

/// The complementary error function as Python 2's `math.erfc` computes it (NAB's published
/// results were made with it): a Taylor series of erf below 1.5, a continued fraction above,
/// 0 from 30 on. Both are accurate to a few units in the last place.
fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x.abs() < 1.5 {
        return 1.0 - erf_series(x);
    }
    let tail = erfc_continued_fraction(x.abs());
    if x > 0.0 { tail } else { 2.0 - tail }
}

/// √π to double precision.
const SQRT_PI: f64 = 1.772_453_850_905_516;

/// erf(x) by its Taylor series, 25 terms evaluated from the innermost out.
fn erf_series(x: f64) -> f64 {
    const TERMS: u32 = 25;
    let x2 = x * x;
    let mut acc = 0.0;
    let mut k = f64::from(TERMS) + 0.5;
    for _ in 0..TERMS {
        acc = 2.0 + x2 * acc / k;
        k -= 1.0;
    }
    acc * x * (-x2).exp() / SQRT_PI
}

/// erfc(x) for x ≥ 1.5 by 50 steps of its continued fraction (as convergents p/q).
fn erfc_continued_fraction(x: f64) -> f64 {
    const TERMS: u32 = 50;
    // erfc(30) is below the smallest positive double.
    if x >= 30.0 {
        return 0.0;
    }
    let x2 = x * x;
    let (mut a, mut da) = (0.0, 0.5);
    let (mut p, mut p_last) = (1.0, 0.0);
    let (mut q, mut q_last) = (da + x2, 1.0);
    for _ in 0..TERMS {
        a += da;
        da += 2.0;
        let b = da + x2;
        (p, p_last) = (b * p - a * p_last, p);
        (q, q_last) = (b * q - a * q_last, q);
    }
    p / q * x * (-x2).exp() / SQRT_PI
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(values: &[f64]) -> Vec<f64> {
        let mut d = WindowedGaussian::default();
        values
            .iter()
            .enumerate()
            .map(|(i, &value)| {
                d.score(Point {
                    ts: i as i64,
                    value,
                })
            })
            .collect()
    }

    #[test]
    fn scores_the_first_points_as_nab_published() {
        // The first rows of NAB's realTweets/Twitter_volume_GOOG.csv and their published
        // windowedGaussian scores.
        let s = scores(&[35.0, 41.0, 32.0, 36.0]);
        assert_eq!(s[0], 0.0);
        // A second point against one constant point: millions of (minimal) deviations out.
        assert_eq!(s[1], 1.0);
        assert!((s[2] - 0.977249868052).abs() < 1e-12, "{}", s[2]);
        assert_eq!(s[3], 0.5);
    }

    #[test]
    fn erfc_is_accurate() {
        // glibc's erfc, correct to the last place.
        for (x, e) in [
            (0.0, 1.0),
            (0.5, 0.4795001221869535),
            (1.0, 0.15729920705028513),
            (2.0, 0.004677734981047265),
            (-1.0, 1.842700792949715),
            (5.0, 1.5374597944280351e-12),
            (8.0, 1.1224297172982928e-29),
        ] {
            assert!(((erfc(x) - e) / e).abs() < 1e-14, "erfc({x}) = {}", erfc(x));
        }
        assert_eq!(erfc(30.0), 0.0);
    }

    #[test]
    fn pairwise_sum_is_numpys() {
        let a: Vec<f64> = (0..1000).map(|i| 0.1 * f64::from(i) + 1e-3).collect();
        let exact: f64 = (0..1000).map(|i| 0.1 * f64::from(i) + 1e-3).sum();
        assert!((pairwise_sum(&a) - exact).abs() < 1e-9);
        // Small arrays are summed in order.
        assert_eq!(pairwise_sum(&[0.1, 0.2, 0.3]), 0.1 + 0.2 + 0.3);
        // From 8 on, in eight lanes: ones added one by one to 1e16 are lost, summed apart
        // they are not.
        let a = [1e16, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
        assert_eq!(a.iter().fold(0.0, |s, x| s + x), 1e16);
        assert_eq!(pairwise_sum(&a), 1e16 + 6.0);
    }

    #[test]
    fn the_window_slides_in_steps_once_full() {
        let mut d = WindowedGaussian::default();
        for i in 0..WINDOW + STEP - 1 {
            d.score(Point {
                ts: i as i64,
                value: i as f64,
            });
        }
        assert_eq!(d.window.len(), WINDOW);
        assert_eq!(d.pending.len(), STEP - 1);
        let mean_before = d.mean;
        d.score(Point { ts: 0, value: 0.0 });
        assert!(d.pending.is_empty());
        assert_eq!(d.window[0], STEP as f64);
        assert_ne!(d.mean, mean_before);
    }
}
