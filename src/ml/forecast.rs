//! Load forecasting for predictive scaling: a point forecast and an upper quantile for every
//! step of the next `horizon`, refitted online from up to `history` of observations.
//!
//! The model (chosen by the comparison in docs/scaling.md) is a direct multi-horizon linear
//! regression, one per step ahead, on features of the square root of the load: recent level
//! (last values, 30-minute and 2-hour means), daily seasonality (Fourier terms of the time of
//! day; from 2 days of data the load 24 hours before the target), weekly seasonality (from 8
//! days of data: the load 7 days before the target and Fourier terms of the time of week).
//! It is solved by linfa-linear's least squares with a small ridge penalty, refitted every
//! hour; between refits every forecast uses the latest observations. The upper quantile adds
//! the empirical quantile of the model's own recent out-of-sample errors at that horizon
//! (a split-conformal bound), so it stays calibrated when the noise changes.
//!
//! The square root stabilizes the variance of counts (a Poisson count's root has about the
//! same spread at every level), so one error distribution serves quiet nights and busy days;
//! it also keeps forecasts positive. The point forecast is therefore a median, not a mean.

use std::collections::VecDeque;
use std::f64::consts::TAU;

use linfa::prelude::*;
use linfa_linear::LinearRegression;
use ndarray::{Array1, Array2, Axis};

use super::series::Point;

const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;

/// What to forecast and from how much history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastConfig {
    /// The interval between observations, in seconds (e.g. 300).
    pub step_secs: i64,
    /// How far ahead to forecast, in seconds (e.g. 1800).
    pub horizon_secs: i64,
    /// How much history to fit on, in seconds (at most; e.g. 14 days).
    pub history_secs: i64,
    /// The quantile of the load the `upper` forecast is (e.g. 0.95).
    pub quantile: f64,
}

impl ForecastConfig {
    /// 30 minutes ahead, 14 days of history, 95th percentile.
    pub fn new(step_secs: i64) -> ForecastConfig {
        ForecastConfig {
            step_secs,
            horizon_secs: 1800,
            history_secs: 14 * DAY,
            quantile: 0.95,
        }
    }

    fn steps(&self, secs: i64) -> usize {
        ((secs as f64 / self.step_secs as f64).round() as usize).max(1)
    }
}

/// One forecast step.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ForecastPoint {
    /// Unix seconds of the step forecast.
    pub ts: i64,
    /// The point forecast (the median load).
    pub point: f64,
    /// The `quantile` of the load.
    pub upper: f64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Forecast {
    /// The steps after the last observation, one per step up to the horizon.
    pub points: Vec<ForecastPoint>,
    /// 0 to 1: one minus the weighted absolute percentage error of the forecasts made over
    /// the last day (of the fit's own residuals until a day of forecasts has been checked).
    pub confidence: f64,
}

/// A streaming forecaster: feed it observations in time order, ask for forecasts.
pub struct Forecaster {
    config: ForecastConfig,
    lags: Lags,
    /// The load in model space (`to_model`) on a regular grid: `z[i]` is the step `first + i`.
    z: Vec<f64>,
    first: usize,
    /// Unix seconds of grid step 0.
    origin_ts: Option<i64>,
    model: Option<Model>,
    /// Recent forecasts (origin step, model-space points per horizon) not yet fully checked.
    issued: VecDeque<(usize, Vec<f64>)>,
    /// Per horizon, recent out-of-sample errors in model space.
    residuals: Vec<VecDeque<f64>>,
    /// Last day of (absolute error, actual) pairs in load units, for the confidence.
    recent_errors: VecDeque<(f64, f64)>,
}

/// Lags and windows in steps, derived from the step length.
#[derive(Debug, Clone, Copy)]
struct Lags {
    horizon: usize,
    history: usize,
    day: usize,
    week: usize,
    /// Half-width of the window averaged around a seasonal lag (±10 minutes).
    smooth: usize,
    short_mean: usize,
    long_mean: usize,
    refit_every: usize,
}

/// Which features a fit uses: more as history accumulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Features {
    Recent,
    Daily,
    Weekly,
}

struct Model {
    features: Features,
    fitted_at: usize,
    /// Per horizon: coefficients and intercept.
    coefficients: Vec<(Array1<f64>, f64)>,
    /// Per horizon: the model-space offset of the upper quantile.
    upper_offset: Vec<f64>,
    in_sample_wape: f64,
}

/// Forecast errors kept per horizon: a week of them.
const RESIDUAL_DAYS: usize = 7;
/// Out-of-sample errors needed before they replace the fit's in-sample residuals.
const MIN_RESIDUALS: usize = 100;
/// A gap longer than this restarts the history rather than inventing the missing load.
const MAX_GAP_SECS: i64 = 3600;
/// Ridge penalty, relative to each feature's variance: small, only to keep the least-squares
/// problem well posed when features are collinear (a flat load, a perfectly regular pattern).
const RIDGE: f64 = 1e-4;
/// Training rows are subsampled to about this many: neighbouring rows are nearly identical,
/// and the fit's cost is linear in rows.
const MAX_ROWS: usize = 500;

impl Forecaster {
    pub fn new(config: ForecastConfig) -> Forecaster {
        let day = config.steps(DAY);
        let lags = Lags {
            horizon: config.steps(config.horizon_secs),
            history: config.steps(config.history_secs).max(day),
            day,
            week: 7 * day,
            smooth: config.steps(600).min(day / 4),
            short_mean: config.steps(1800),
            long_mean: config.steps(7200),
            refit_every: config.steps(3600),
        };
        Forecaster {
            config,
            lags,
            z: Vec::new(),
            first: 0,
            origin_ts: None,
            model: None,
            issued: VecDeque::new(),
            residuals: vec![VecDeque::new(); lags.horizon],
            recent_errors: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &ForecastConfig {
        &self.config
    }

    /// Adds an observation. Points must come in time order: one at or before the last step
    /// is ignored. A gap of up to an hour is filled with the last value; a longer one
    /// restarts the history.
    pub fn observe(&mut self, p: Point) {
        let value = to_model(p.value);
        let Some(origin_ts) = self.origin_ts else {
            self.restart(p.ts, value);
            return;
        };
        let step = ((p.ts - origin_ts) as f64 / self.config.step_secs as f64).round() as i64;
        let next = (self.first + self.z.len()) as i64;
        if step < next {
            return;
        }
        if (step - next) * self.config.step_secs >= MAX_GAP_SECS {
            self.restart(p.ts, value);
            return;
        }
        let last = *self.z.last().expect("a started history has a value");
        for _ in next..step {
            self.push(last);
        }
        self.push(value);
    }

    fn restart(&mut self, ts: i64, value: f64) {
        *self = Forecaster::new(self.config);
        self.origin_ts = Some(ts);
        self.z.push(value);
    }

    fn push(&mut self, value: f64) {
        self.z.push(value);
        let step = self.last_step();
        self.check_issued(step);
        // Keep what the longest fit needs: its history plus the weekly lag before it.
        let keep = self.lags.history + self.lags.week + self.lags.horizon + self.lags.smooth;
        if self.z.len() > 2 * keep {
            let drop = self.z.len() - keep;
            self.z.drain(..drop);
            self.first += drop;
        }
    }

    fn last_step(&self) -> usize {
        self.first + self.z.len() - 1
    }

    fn at(&self, step: usize) -> f64 {
        self.z[step - self.first]
    }

    fn mean(&self, from: usize, to: usize) -> f64 {
        let s = &self.z[from - self.first..=to - self.first];
        s.iter().sum::<f64>() / s.len() as f64
    }

    fn ts(&self, step: usize) -> i64 {
        self.origin_ts.unwrap_or(0) + step as i64 * self.config.step_secs
    }

    /// Records the errors of earlier forecasts that targeted `step`, just observed.
    fn check_issued(&mut self, step: usize) {
        let actual_z = self.at(step);
        let actual = from_model(actual_z);
        for (origin, points) in &self.issued {
            let h = step - origin;
            if h >= 1 && h <= points.len() {
                let r = &mut self.residuals[h - 1];
                r.push_back(actual_z - points[h - 1]);
                if r.len() > RESIDUAL_DAYS * self.lags.day {
                    r.pop_front();
                }
                self.recent_errors
                    .push_back(((actual - from_model(points[h - 1])).abs(), actual));
                if self.recent_errors.len() > self.lags.day * self.lags.horizon {
                    self.recent_errors.pop_front();
                }
            }
        }
        while self
            .issued
            .front()
            .is_some_and(|(o, p)| o + p.len() <= step)
        {
            self.issued.pop_front();
        }
    }

    /// The richest feature set the data allows at origin `n` (with lags before `first`
    /// unavailable).
    fn features_at(&self, n: usize) -> Option<Features> {
        let have = n - self.first + 1;
        let l = &self.lags;
        if have < l.day {
            None
        } else if have >= 8 * l.day + l.smooth {
            Some(Features::Weekly)
        } else if have >= 2 * l.day + l.smooth {
            Some(Features::Daily)
        } else {
            Some(Features::Recent)
        }
    }

    /// The earliest origin whose features of set `f` are all available.
    fn earliest_origin(&self, f: Features) -> usize {
        let l = &self.lags;
        self.first
            + match f {
                Features::Recent => l.long_mean,
                Features::Daily => l.day + l.smooth,
                Features::Weekly => l.week + l.smooth,
            }
    }

    /// The feature row for forecasting `h` steps after origin `n`.
    fn row(&self, n: usize, h: usize, f: Features, out: &mut Vec<f64>) {
        let l = &self.lags;
        out.clear();
        out.push(self.at(n));
        out.push(self.at(n - 1));
        out.push(self.mean(n + 1 - l.short_mean, n));
        out.push(self.mean(n + 1 - l.long_mean, n));
        let ts = self.ts(n + h);
        fourier(ts, DAY, 3, out);
        if f >= Features::Daily {
            let t = n + h - l.day;
            out.push(self.mean(t - l.smooth, (t + l.smooth).min(n)));
            out.push(self.mean(n - l.day - l.smooth, n - l.day + l.smooth));
        }
        if f >= Features::Weekly {
            let t = n + h - l.week;
            out.push(self.mean(t - l.smooth, (t + l.smooth).min(n)));
            out.push(self.mean(n - l.week - l.smooth, n - l.week + l.smooth));
            fourier(ts, WEEK, 2, out);
        }
    }

    fn fit(&mut self, n: usize, features: Features) {
        let l = self.lags;
        let lo = self
            .earliest_origin(features)
            .max((n + 1).saturating_sub(l.history));
        let mut coefficients = Vec::with_capacity(l.horizon);
        let mut upper_offset = Vec::with_capacity(l.horizon);
        let (mut abs_err, mut total) = (0.0, 0.0);
        let mut row = Vec::new();
        for h in 1..=l.horizon {
            let Some(last_origin) = n.checked_sub(h).filter(|o| *o >= lo) else {
                return;
            };
            let stride = ((last_origin - lo + 1) / MAX_ROWS).max(1);
            let origins: Vec<usize> = (lo..=last_origin).rev().step_by(stride).collect();
            let mut x = Vec::new();
            let mut y = Vec::with_capacity(origins.len());
            for &o in &origins {
                self.row(o, h, features, &mut row);
                x.extend_from_slice(&row);
                y.push(self.at(o + h));
            }
            let x = Array2::from_shape_vec((origins.len(), row.len()), x)
                .expect("rows have one length");
            let y = Array1::from(y);
            let Some((beta, intercept)) = ridge(&x, &y) else {
                return;
            };
            let fitted = x.dot(&beta) + intercept;
            let mut in_sample: Vec<f64> = (&y - &fitted).to_vec();
            for (a, f) in y.iter().zip(fitted.iter()) {
                abs_err += (from_model(*a) - from_model(*f)).abs();
                total += from_model(*a);
            }
            let out_of_sample: Vec<f64> = self.residuals[h - 1].iter().copied().collect();
            let errors = if out_of_sample.len() >= MIN_RESIDUALS {
                out_of_sample
            } else {
                std::mem::take(&mut in_sample)
            };
            upper_offset.push(quantile(errors, self.config.quantile).max(0.0));
            coefficients.push((beta, intercept));
        }
        self.model = Some(Model {
            features,
            fitted_at: n,
            coefficients,
            upper_offset,
            in_sample_wape: if total > 0.0 { abs_err / total } else { 0.0 },
        });
    }

    /// The forecast after the last observation, refitting first when an hour has passed
    /// since the last fit or more history allows richer features. `None` until a day of
    /// observations.
    pub fn forecast(&mut self) -> Option<Forecast> {
        let n = self.origin_ts.map(|_| self.last_step())?;
        let features = self.features_at(n)?;
        let stale = self
            .model
            .as_ref()
            .is_none_or(|m| m.features != features || n >= m.fitted_at + self.lags.refit_every);
        if stale {
            self.fit(n, features);
        }
        let model = self.model.as_ref()?;
        let mut row = Vec::new();
        let mut issued = Vec::with_capacity(model.coefficients.len());
        let mut points = Vec::with_capacity(model.coefficients.len());
        for (i, ((beta, intercept), offset)) in model
            .coefficients
            .iter()
            .zip(&model.upper_offset)
            .enumerate()
        {
            let h = i + 1;
            self.row(n, h, model.features, &mut row);
            let z = row.iter().zip(beta).map(|(a, b)| a * b).sum::<f64>() + intercept;
            issued.push(z);
            let point = from_model(z);
            points.push(ForecastPoint {
                ts: self.ts(n + h),
                point,
                upper: from_model(z + offset).max(point),
            });
        }
        let confidence = 1.0 - self.recent_wape().unwrap_or(model.in_sample_wape);
        if self.issued.back().is_none_or(|(o, _)| *o < n) {
            self.issued.push_back((n, issued));
        }
        Some(Forecast {
            points,
            confidence: confidence.clamp(0.0, 1.0),
        })
    }

    /// The weighted absolute percentage error of the last day of checked forecasts, once
    /// there is a day of them.
    fn recent_wape(&self) -> Option<f64> {
        if self.recent_errors.len() < self.lags.day {
            return None;
        }
        let (err, actual) = self
            .recent_errors
            .iter()
            .fold((0.0, 0.0), |(e, a), (de, da)| (e + de, a + da));
        Some(if actual > 0.0 { err / actual } else { 1.0 })
    }
}

/// `k` harmonics of a cycle of `period` seconds at `ts`: sin and cos of each.
fn fourier(ts: i64, period: i64, k: usize, out: &mut Vec<f64>) {
    let phase = ts.rem_euclid(period) as f64 / period as f64;
    for i in 1..=k {
        let a = TAU * i as f64 * phase;
        out.push(a.sin());
        out.push(a.cos());
    }
}

/// Ridge regression through linfa-linear's least squares: centre the data, append
/// `sqrt(RIDGE * n) * std_j` rows (the standard augmentation that turns the penalty into
/// extra observations), solve without intercept, recover the intercept from the means.
fn ridge(x: &Array2<f64>, y: &Array1<f64>) -> Option<(Array1<f64>, f64)> {
    let (rows, cols) = x.dim();
    let x_mean = x.mean_axis(Axis(0))?;
    let y_mean = y.mean()?;
    let std = x.std_axis(Axis(0), 0.0);
    let mut augmented = Array2::zeros((rows + cols, cols));
    augmented
        .slice_mut(ndarray::s![..rows, ..])
        .assign(&(x - &x_mean));
    for j in 0..cols {
        // A constant feature still gets a penalty, so its coefficient is pinned to 0.
        augmented[[rows + j, j]] = (RIDGE * rows as f64).sqrt() * std[j].max(1e-6);
    }
    let mut target = Array1::zeros(rows + cols);
    target.slice_mut(ndarray::s![..rows]).assign(&(y - y_mean));
    let fit = LinearRegression::new()
        .with_intercept(false)
        .fit(&Dataset::new(augmented, target))
        .ok()?;
    let beta = fit.params().clone();
    let intercept = y_mean - x_mean.dot(&beta);
    beta.iter()
        .all(|b| b.is_finite())
        .then_some((beta, intercept))
}

/// Loads are modelled as square roots: for counts (requests, events) that stabilizes the
/// variance, so one error distribution serves every load level.
fn to_model(load: f64) -> f64 {
    load.max(0.0).sqrt()
}

fn from_model(z: f64) -> f64 {
    z.max(0.0).powi(2)
}

/// The `q` quantile of `values` (nearest rank), 0 for none.
fn quantile(mut values: Vec<f64>, q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let k = ((values.len() - 1) as f64 * q).round() as usize;
    *values.select_nth_unstable_by(k, |a, b| a.total_cmp(b)).1
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: i64 = 300;
    /// A Monday, 00:00 UTC.
    const START: i64 = 1_714_953_600;

    /// A daily cycle whose amplitude differs on weekends, plus deterministic noise.
    fn load(ts: i64) -> f64 {
        let day = (ts.rem_euclid(DAY)) as f64 / DAY as f64;
        let weekday = ((ts - START).div_euclid(DAY)) % 7;
        let weekend = if weekday >= 5 { 0.4 } else { 1.0 };
        let noise = ((ts / 300) as f64 * 12.9898).sin() * 2.0;
        20.0 + 60.0 * weekend * (0.5 - 0.5 * (TAU * day).cos()) + noise
    }

    fn fed(days: i64) -> Forecaster {
        let mut f = Forecaster::new(ForecastConfig::new(STEP));
        for i in 0..days * DAY / STEP {
            let ts = START + i * STEP;
            f.observe(Point {
                ts,
                value: load(ts),
            });
        }
        f
    }

    #[test]
    fn needs_a_day_of_data() {
        let mut f = fed(0);
        assert!(f.forecast().is_none());
        let mut f = Forecaster::new(ForecastConfig::new(STEP));
        for i in 0..DAY / STEP - 1 {
            f.observe(Point {
                ts: START + i * STEP,
                value: 1.0,
            });
        }
        assert!(f.forecast().is_none());
        f.observe(Point {
            ts: START + DAY - STEP,
            value: 1.0,
        });
        let fc = f.forecast().expect("a day is enough");
        assert_eq!(fc.points.len(), 6);
        assert_eq!(fc.points[0].ts, START + DAY);
        // A flat load is forecast flat, with a tight band.
        for p in &fc.points {
            assert!((p.point - 1.0).abs() < 1e-6, "{p:?}");
            assert!(p.upper >= p.point && p.upper < 1.0 + 1e-6, "{p:?}");
        }
    }

    #[test]
    fn recovers_daily_and_weekly_seasonality() {
        // Two weeks of 15-minute steps (to keep the test fast): the forecasts 3 hours ahead
        // over the second weekend must follow its lower amplitude, which only the weekly
        // features can know (yesterday was a weekday on Saturday; the recent level lags).
        const STEP: i64 = 900;
        let mut f = Forecaster::new(ForecastConfig {
            horizon_secs: 3 * 3600,
            ..ForecastConfig::new(STEP)
        });
        let (mut err, mut total, mut covered, mut n) = (0.0, 0.0, 0, 0);
        for i in 0..(14 * DAY / STEP) {
            let ts = START + i * STEP;
            // Only the weekend is forecast (and so fitted): fits are what the test spends.
            if i >= 12 * DAY / STEP {
                let fc = f.forecast().expect("12 days are enough");
                let last = fc.points.last().unwrap();
                let actual = load(last.ts);
                err += (last.point - actual).abs();
                total += actual;
                covered += usize::from(actual <= last.upper);
                n += 1;
            }
            f.observe(Point {
                ts,
                value: load(ts),
            });
        }
        let wape = err / total;
        assert!(wape < 0.05, "3-hour-ahead error {wape:.3}");
        let coverage = covered as f64 / n as f64;
        assert!(coverage > 0.85, "upper quantile coverage {coverage:.3}");
        assert!(f.forecast().unwrap().confidence > 0.9);
    }

    #[test]
    fn gaps_are_filled_or_restart_the_history() {
        let mut f = fed(1);
        let last = START + DAY - STEP;
        f.observe(Point {
            ts: last + 3 * STEP,
            value: 5.0,
        });
        assert_eq!(f.z.len(), DAY as usize / STEP as usize + 3);
        assert!(f.forecast().is_some());
        // Late and duplicate points are ignored.
        f.observe(Point {
            ts: last,
            value: 99.0,
        });
        assert_eq!(f.z.len(), DAY as usize / STEP as usize + 3);
        f.observe(Point {
            ts: last + 3 * STEP + 2 * 3600,
            value: 5.0,
        });
        assert_eq!(f.z.len(), 1);
        assert!(f.forecast().is_none());
    }
}
