//! Drift detection: a two-sided CUSUM (Page, 1954) on standardised values.
//!
//! A monitored metric often moves to a new level and stays there (a deploy, a config change,
//! more traffic). Everything an anomaly detector has learnt about the old level (its rolling
//! baselines, the forest's training window) then calls every new point anomalous. CUSUM
//! accumulates evidence of a sustained shift of the mean, `S⁺ = max(0, S⁺ + z − k)` and
//! `S⁻ = max(0, S⁻ − z − k)` with `z` the value standardised against a reference estimated
//! after the last change, and reports a change when either sum passes `h`. Single outliers
//! barely move the sums (each point adds at most `|z| − k`, clipped), so a spike is left to the
//! anomaly detector while a shift that persists is reported after a few points.
//!
//! The reference mean and deviation are those of every point since the last change (a
//! self-starting CUSUM): the first `warmup` points only estimate them, and later points keep
//! refining them, so an early estimate that is a little off does not turn into false alarms.

/// The parameters of a [`Cusum`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CusumConfig {
    /// Slack per point, in standard deviations: shifts smaller than about `2k` are ignored.
    pub k: f64,
    /// Decision threshold on the cumulative sums, in standard deviations.
    pub h: f64,
    /// Points that only estimate the reference mean and deviation after a start or a change.
    pub warmup: usize,
    /// Each point's standardised deviation is clipped to ±`clip`, so that one huge outlier
    /// (a spike, which is the anomaly detector's business) cannot pass `h` on its own.
    pub clip: f64,
    /// The smallest standard deviation the reference may have, in the value's units: a flat
    /// series would otherwise make any tiny wobble an infinite shift.
    pub min_std: f64,
}

impl Default for CusumConfig {
    /// k = 0.5 σ and h = 10 σ: a shift of 3σ is found in about 5 points, while an in-control
    /// stream of independent values raises a false alarm about every 70,000 points.
    fn default() -> Self {
        CusumConfig {
            k: 0.5,
            h: 10.0,
            warmup: 50,
            clip: 4.0,
            min_std: 1e-9,
        }
    }
}

/// Which way the mean moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
}

/// A detected change of level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    /// Index (count of points before it since the detector started) of the first point of the
    /// new level: where the cumulative sum that passed `h` last left zero.
    pub start: u64,
    /// Index of the point at which the change was detected.
    pub detected: u64,
    pub direction: Direction,
    /// The reference mean the values moved away from.
    pub from_mean: f64,
}

/// A streaming two-sided CUSUM change detector.
#[derive(Debug, Clone)]
pub struct Cusum {
    config: CusumConfig,
    /// Points seen since the detector started.
    seen: u64,
    /// Welford accumulators of the points since the last change: count, mean, sum of squared
    /// deviations.
    moments: (usize, f64, f64),
    up: f64,
    down: f64,
    /// Where `up` and `down` last left zero.
    up_start: u64,
    down_start: u64,
}

impl Cusum {
    pub fn new(config: CusumConfig) -> Cusum {
        Cusum {
            config,
            seen: 0,
            moments: (0, 0.0, 0.0),
            up: 0.0,
            down: 0.0,
            up_start: 0,
            down_start: 0,
        }
    }

    /// Feeds the next value; returns the change it completes, if any.
    pub fn update(&mut self, x: f64) -> Option<Change> {
        let index = self.seen;
        self.seen += 1;
        let Some((mean, std)) = self.reference() else {
            self.accumulate(x);
            return None;
        };
        self.accumulate(x);
        let z = ((x - mean) / std).clamp(-self.config.clip, self.config.clip);
        if self.up == 0.0 {
            self.up_start = index;
        }
        if self.down == 0.0 {
            self.down_start = index;
        }
        self.up = (self.up + z - self.config.k).max(0.0);
        self.down = (self.down - z - self.config.k).max(0.0);
        let direction = if self.up > self.config.h {
            Direction::Up
        } else if self.down > self.config.h {
            Direction::Down
        } else {
            return None;
        };
        let start = match direction {
            Direction::Up => self.up_start,
            Direction::Down => self.down_start,
        };
        self.restart();
        Some(Change {
            start,
            detected: index,
            direction,
            from_mean: mean,
        })
    }

    /// Forgets the reference: the next `warmup` points estimate a new one. Callers use it when
    /// they know the level moved (and after every change found here).
    pub fn restart(&mut self) {
        self.moments = (0, 0.0, 0.0);
        self.up = 0.0;
        self.down = 0.0;
    }

    /// Changes the floor of the reference deviation (callers that learn the scale of their
    /// values as they go raise it).
    pub fn set_min_std(&mut self, min_std: f64) {
        self.config.min_std = min_std;
    }

    /// The current reference (mean, standard deviation), once warmed up.
    pub fn reference(&self) -> Option<(f64, f64)> {
        let (n, mean, m2) = self.moments;
        (n >= self.config.warmup.max(2))
            .then(|| (mean, (m2 / (n - 1) as f64).sqrt().max(self.config.min_std)))
    }

    fn accumulate(&mut self, x: f64) {
        let (n, mean, m2) = &mut self.moments;
        *n += 1;
        let delta = x - *mean;
        *mean += delta / *n as f64;
        *m2 += delta * (x - *mean);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Standard normal noise (Box–Muller), seeded.
    fn noise(rng: &mut fastrand::Rng) -> f64 {
        let (u, v) = (1.0 - rng.f64(), rng.f64());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    #[test]
    fn finds_a_level_shift_quickly_and_nothing_before_it() {
        let mut rng = fastrand::Rng::with_seed(4);
        let mut cusum = Cusum::new(CusumConfig::default());
        let mut changes = Vec::new();
        for i in 0..2000u64 {
            let level = if i < 1000 { 10.0 } else { 13.0 };
            if let Some(c) = cusum.update(level + noise(&mut rng)) {
                changes.push(c);
            }
        }
        assert_eq!(changes.len(), 1, "{changes:?}");
        let c = changes[0];
        assert_eq!(c.direction, Direction::Up);
        assert!(
            (1000..1015).contains(&c.detected),
            "detected at {}",
            c.detected
        );
        assert!((995..=1005).contains(&c.start), "started at {}", c.start);
        assert!((c.from_mean - 10.0).abs() < 0.5);
        // The reference is re-learnt at the new level.
        let (mean, _) = cusum.reference().unwrap();
        assert!((mean - 13.0).abs() < 0.5);
    }

    #[test]
    fn false_alarms_are_rare_on_noise() {
        // The design point: two one-sided CUSUMs with k = 0.5, h = 10 run about 70,000
        // in-control points between false alarms (Siegmund's approximation).
        let mut rng = fastrand::Rng::with_seed(5);
        let mut cusum = Cusum::new(CusumConfig::default());
        let alarms = (0..1_000_000)
            .filter_map(|_| cusum.update(noise(&mut rng)))
            .count();
        assert!(alarms <= 30, "{alarms} false alarms in a million points");
    }

    #[test]
    fn finds_a_downward_shift() {
        let mut rng = fastrand::Rng::with_seed(2);
        let mut cusum = Cusum::new(CusumConfig::default());
        let found: Vec<Change> = (0..600)
            .filter_map(|i| cusum.update(if i < 300 { 5.0 } else { 1.0 } + noise(&mut rng)))
            .collect();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].direction, Direction::Down);
        assert!((300..310).contains(&found[0].detected));
    }

    #[test]
    fn a_single_spike_is_not_a_change() {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut cusum = Cusum::new(CusumConfig::default());
        for i in 0..3000 {
            let spike = if i == 1500 { 1000.0 } else { 0.0 };
            assert_eq!(cusum.update(spike + noise(&mut rng)), None, "at {i}");
        }
    }

    #[test]
    fn a_flat_series_warms_up_without_dividing_by_zero() {
        let mut cusum = Cusum::new(CusumConfig {
            min_std: 0.01,
            ..CusumConfig::default()
        });
        for _ in 0..100 {
            assert_eq!(cusum.update(7.0), None);
        }
        assert_eq!(cusum.reference(), Some((7.0, 0.01)));
        // A step of 1 (100 floors) is a change at once... after a few points of evidence.
        let detected = (0..10).find_map(|_| cusum.update(8.0));
        assert!(detected.is_some());
    }
}
