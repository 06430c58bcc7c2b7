//! NAB's scorer (`nab/sweeper.py`, `nab/optimizer.py` and the normalization of
//! `nab/runner.py`).
//!
//! A row is an alert when its anomaly score reaches the threshold. Rows of the probationary
//! period are not scored. Each labeled window counts once: its first alert earns a reward
//! that falls with lateness along a scaled sigmoid (`tp` weight at the window's left edge,
//! half of it at 3/4 of the window, nothing at its right edge); a window without an alert
//! costs the `fn` weight. Every alert outside a window costs up to the `fp` weight: the full
//! weight before the first window, and after a window a share that grows with the distance
//! from it (nothing right after its edge, the full weight three window lengths on).
//!
//! The sweep scores every threshold at once: it visits the rows from the highest anomaly
//! score down, and after each distinct score records what alerting on every row visited so
//! far earns. The chosen threshold is the one with the highest total over all files. A
//! profile's normalized score is `100 * (score - null) / (perfect - null)`: 0 for the null
//! detector (the best a constant score can do, which is never alerting), 100 for detecting
//! every window at its first row.

use rayon::prelude::*;
use serde::Serialize;

use super::corpus::{CostMatrix, Profile, Window, probation_len};
use super::detectors::NULL_SCORE;

/// A detector's anomaly scores for one labeled data file: what a NAB results file holds.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultsFile {
    /// The data file's path under `data/`, e.g. `realTraffic/speed_7578.csv`.
    pub key: String,
    /// Unix seconds, in order.
    pub timestamps: Vec<i64>,
    /// One anomaly score in [0, 1] per row.
    pub scores: Vec<f64>,
    pub windows: Vec<Window>,
}

/// The sweep's first threshold: above every anomaly score, so nothing is an alert.
pub const ABOVE_ALL_SCORES: f64 = 1.1;

/// NAB's scaled sigmoid of a position relative to a window: -1 is its left edge (0.987), 0
/// its right edge (0), positive positions lie past it, down to -1 from three windows on.
pub fn scaled_sigmoid(position: f64) -> f64 {
    if position > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * position).exp()) - 1.0
    }
}

/// Row counts (probation excluded): alerts in a window (`tp`) and outside (`fp`), quiet rows
/// in a window (`fn`) and outside (`tn`). These are NAB's TP, TN, FP, FN columns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub tp: usize,
    pub tn: usize,
    pub fp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
}

impl Counts {
    /// The share of alerts that fall in a window; `None` without alerts.
    pub fn precision(&self) -> Option<f64> {
        let alerts = self.tp + self.fp;
        (alerts > 0).then(|| self.tp as f64 / alerts as f64)
    }
}

/// What alerting on every row scoring at least `threshold` earns.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ThresholdScore {
    pub threshold: f64,
    pub score: f64,
    #[serde(flatten)]
    pub counts: Counts,
    /// Windows with at least one alert.
    pub windows_detected: usize,
}

/// A scorable row: its anomaly score, what alerting on it is worth, and its window (an index
/// over all the files swept together).
struct Row {
    anomaly: f64,
    weight: f64,
    window: Option<usize>,
}

/// Appends a file's scorable rows; its windows are numbered from `first_window`.
fn push_rows(file: &ResultsFile, costs: &CostMatrix, first_window: usize, rows: &mut Vec<Row>) {
    let ts = &file.timestamps;
    // (window number, first row, last row) of the windows that hold rows.
    let spans: Vec<(usize, usize, usize)> = file
        .windows
        .iter()
        .enumerate()
        .filter_map(|(n, w)| {
            let first = ts.partition_point(|&t| t < w.start);
            let end = ts.partition_point(|&t| t <= w.end);
            (first < end).then_some((first_window + n, first, end - 1))
        })
        .collect();
    // Detecting a window at its very first row earns exactly the `tp` weight.
    let max_tp = scaled_sigmoid(-1.0);
    let probation = probation_len(ts.len());
    let mut next = 0;
    let mut previous = None;
    for (i, &anomaly) in file.scores.iter().enumerate() {
        while let Some(&span) = spans.get(next).filter(|s| s.2 < i) {
            previous = Some(span);
            next += 1;
        }
        let current = spans.get(next).copied().filter(|s| s.1 <= i);
        let weight = match (current, previous) {
            (Some((_, first, last)), _) => {
                let width = (last - first + 1) as f64;
                scaled_sigmoid(-((last - i + 1) as f64) / width) * costs.tp / max_tp
            }
            // A one-row window divides by zero: an infinite distance, the full `fp` weight.
            (None, Some((_, first, last))) => {
                scaled_sigmoid((i - last) as f64 / (last - first) as f64) * costs.fp
            }
            (None, None) => -costs.fp,
        };
        if i >= probation {
            rows.push(Row {
                anomaly,
                weight,
                window: current.map(|s| s.0),
            });
        }
    }
}

/// Scores `files` together at every threshold, from [`ABOVE_ALL_SCORES`] down to their
/// lowest anomaly score.
pub fn sweep(files: &[ResultsFile], costs: &CostMatrix) -> Vec<ThresholdScore> {
    let mut rows = Vec::new();
    let mut windows = 0;
    for f in files {
        push_rows(f, costs, windows, &mut rows);
        windows += f.windows.len();
    }
    // Highest anomaly score first; the sort is stable, as NAB's.
    rows.sort_by(|a, b| b.anomaly.total_cmp(&a.anomaly));

    // A window's part of the score: `-fn` until it has an alert, then the best weight of its
    // alerts, which is its earliest alert's, as weights fall along a window. Parts are summed
    // in the order windows first appear in the sweep, after the false positives, as NAB sums
    // them, so that totals (and ties between thresholds) come out the same.
    let mut slot = vec![usize::MAX; windows];
    let mut parts = Vec::new();
    for w in rows.iter().filter_map(|r| r.window) {
        if slot[w] == usize::MAX {
            slot[w] = parts.len();
            parts.push(-costs.fn_);
        }
    }
    let mut detected = vec![false; parts.len()];
    let mut fp_total = 0.0;
    let in_windows = rows.iter().filter(|r| r.window.is_some()).count();
    let mut counts = Counts {
        tp: 0,
        tn: rows.len() - in_windows,
        fp: 0,
        fn_: in_windows,
    };
    let mut windows_detected = 0;
    let record =
        |threshold, fp_total: f64, parts: &[f64], counts, windows_detected| ThresholdScore {
            threshold,
            score: parts.iter().fold(fp_total, |sum, p| sum + p),
            counts,
            windows_detected,
        };

    let mut out = Vec::new();
    let mut threshold = ABOVE_ALL_SCORES;
    for r in &rows {
        if r.anomaly != threshold {
            out.push(record(
                threshold,
                fp_total,
                &parts,
                counts,
                windows_detected,
            ));
            threshold = r.anomaly;
        }
        match r.window {
            Some(w) => {
                counts.tp += 1;
                counts.fn_ -= 1;
                let s = slot[w];
                if !detected[s] {
                    detected[s] = true;
                    windows_detected += 1;
                }
                parts[s] = parts[s].max(r.weight);
            }
            None => {
                counts.fp += 1;
                counts.tn -= 1;
                fp_total += r.weight;
            }
        }
    }
    out.push(record(
        threshold,
        fp_total,
        &parts,
        counts,
        windows_detected,
    ));
    out
}

/// The threshold NAB's optimizer picks: the highest score; among equal scores, the highest
/// threshold.
pub fn best(sweep: &[ThresholdScore]) -> ThresholdScore {
    let mut best = sweep[0];
    for s in &sweep[1..] {
        if s.score > best.score {
            best = *s;
        }
    }
    best
}

/// The sweep's entry for `threshold`: the last one at or above it has exactly the alerts
/// `threshold` gives (entries run from the highest threshold down).
pub fn at(sweep: &[ThresholdScore], threshold: f64) -> ThresholdScore {
    *sweep
        .iter()
        .take_while(|s| s.threshold >= threshold)
        .last()
        .unwrap_or(&sweep[0])
}

/// One file's score at a profile's chosen threshold: a row of NAB's `*_scores.csv`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileScore {
    pub file: String,
    #[serde(flatten)]
    pub at: ThresholdScore,
    pub windows: usize,
    /// All the file's rows, probation included (NAB's `Total_Count`).
    pub rows: usize,
}

/// Scores one file at `threshold`.
pub fn score_file(file: &ResultsFile, costs: &CostMatrix, threshold: f64) -> FileScore {
    FileScore {
        file: file.key.clone(),
        // The threshold applied, not the sweep entry's (a file may have no row scoring
        // exactly `threshold`).
        at: ThresholdScore {
            threshold,
            ..at(&sweep(std::slice::from_ref(file), costs), threshold)
        },
        windows: file.windows.len(),
        rows: file.timestamps.len(),
    }
}

/// A detector's result under one profile, at the threshold the sweep chose.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileScore {
    pub profile: String,
    /// Threshold, raw score, row counts and windows detected, over all files.
    #[serde(flatten)]
    pub best: ThresholdScore,
    /// Labeled windows in the files scored.
    pub windows: usize,
    /// The null detector's score: the floor of the normalized scale.
    pub null_score: f64,
    /// Every window detected at its first row, no false positive: the top of the scale.
    pub perfect_score: f64,
    /// `100 * (score - null) / (perfect - null)`, NAB's reported score.
    pub normalized: f64,
    /// The share of alerts that fall in a window; `None` without alerts.
    pub precision: Option<f64>,
    /// Each file's score at the chosen threshold.
    pub files: Vec<FileScore>,
}

/// Scores a detector's results under each profile: sweep, pick the best threshold, score
/// each file there, normalize against the null detector and a perfect one.
pub fn score_corpus(files: &[ResultsFile], profiles: &[Profile]) -> Vec<ProfileScore> {
    // NAB's null detector gives every row the same score; its best threshold is the floor.
    let null: Vec<ResultsFile> = files
        .iter()
        .map(|f| ResultsFile {
            scores: vec![NULL_SCORE; f.scores.len()],
            ..f.clone()
        })
        .collect();
    let windows: usize = files.iter().map(|f| f.windows.len()).sum();
    profiles
        .par_iter()
        .map(|p| {
            let chosen = best(&sweep(files, &p.costs));
            let null_score = best(&sweep(&null, &p.costs)).score;
            let perfect_score = windows as f64 * p.costs.tp;
            ProfileScore {
                profile: p.name.clone(),
                best: chosen,
                windows,
                null_score,
                perfect_score,
                normalized: 100.0 * (chosen.score - null_score) / (perfect_score - null_score),
                precision: chosen.counts.precision(),
                files: files
                    .par_iter()
                    .map(|f| score_file(f, &p.costs, chosen.threshold))
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STANDARD: CostMatrix = CostMatrix {
        tp: 1.0,
        fp: 0.11,
        fn_: 1.0,
    };

    /// 100 rows a minute apart, one window over rows 40..=49; probation is rows 0..15.
    fn file(scores: Vec<f64>) -> ResultsFile {
        ResultsFile {
            key: "t/f.csv".into(),
            timestamps: (0..100).map(|i| i * 60).collect(),
            scores,
            windows: vec![Window {
                start: 40 * 60,
                end: 49 * 60,
            }],
        }
    }

    fn alerts_at(rows: &[usize]) -> ResultsFile {
        let mut s = vec![0.0; 100];
        for &r in rows {
            s[r] = 1.0;
        }
        file(s)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn scaled_sigmoid_matches_nab_landmarks() {
        assert!(close(scaled_sigmoid(-1.0), 0.9866142981514303));
        assert!(close(scaled_sigmoid(-0.5), 0.8482836399575129));
        assert_eq!(scaled_sigmoid(0.0), 0.0);
        assert!(close(scaled_sigmoid(1.0), -0.9866142981514303));
        assert_eq!(scaled_sigmoid(3.5), -1.0);
    }

    #[test]
    fn only_the_first_alert_in_a_window_counts_and_earlier_is_better() {
        let first = score_file(&alerts_at(&[40]), &STANDARD, 1.0);
        assert!(close(first.at.score, 1.0), "{first:?}");
        let late = score_file(&alerts_at(&[45]), &STANDARD, 1.0);
        // Five rows from the right edge of a ten-row window: position -0.5.
        assert!(close(
            late.at.score,
            scaled_sigmoid(-0.5) / scaled_sigmoid(-1.0)
        ));
        let both = score_file(&alerts_at(&[45, 46, 47]), &STANDARD, 1.0);
        assert_eq!(both.at.score, late.at.score);
        assert_eq!(both.at.counts.tp, 3);
        assert_eq!(both.at.windows_detected, 1);
    }

    #[test]
    fn missed_windows_cost_fn_and_probation_is_not_scored() {
        let none = score_file(&alerts_at(&[]), &STANDARD, 1.0);
        assert_eq!(none.at.score, -1.0);
        assert_eq!(
            none.at.counts,
            Counts {
                tp: 0,
                tn: 75,
                fp: 0,
                fn_: 10
            }
        );
        assert_eq!(none.rows, 100);
        // Row 10 is in the probationary period: not an alert at all.
        assert_eq!(score_file(&alerts_at(&[10]), &STANDARD, 1.0), none);
    }

    #[test]
    fn false_positives_cost_fp_before_the_first_window_and_less_right_after_one() {
        let before = score_file(&alerts_at(&[20]), &STANDARD, 1.0);
        assert!(close(before.at.score, -1.0 - 0.11));
        // Right after the window (row 50, one row past its last at 49): position 1/9.
        let after = score_file(&alerts_at(&[50]), &STANDARD, 1.0);
        assert!(close(
            after.at.score,
            -1.0 + 0.11 * scaled_sigmoid(1.0 / 9.0)
        ));
        // Three window lengths on it costs the full weight.
        let far = score_file(&alerts_at(&[99]), &STANDARD, 1.0);
        assert!(close(far.at.score, -1.0 - 0.11));
        assert_eq!(far.at.counts.fp, 1);
        assert_eq!(far.at.counts.precision(), Some(0.0));
    }

    #[test]
    fn the_sweep_scores_every_threshold_and_picks_the_best() {
        let mut s = vec![0.1; 100];
        s[30] = 0.9; // a false positive before the window
        s[42] = 0.7; // the window, detected at its third row
        s[60] = 0.5; // a false positive just after it
        let f = file(s);
        let sw = sweep(std::slice::from_ref(&f), &STANDARD);
        let thresholds: Vec<f64> = sw.iter().map(|t| t.threshold).collect();
        assert_eq!(thresholds, [1.1, 0.9, 0.7, 0.5, 0.1]);
        let tp = scaled_sigmoid(-8.0 / 10.0) / scaled_sigmoid(-1.0);
        let fp_after = 0.11 * scaled_sigmoid(11.0 / 9.0);
        let expected = [-1.0, -1.0 - 0.11, -0.11 + tp, -0.11 + tp + fp_after];
        for (t, e) in sw.iter().zip(expected) {
            assert!(close(t.score, e), "{t:?} != {e}");
        }
        // Every scorable row an alert: the 75 outside the window are false positives.
        assert_eq!(sw[4].counts.fp, 75);
        let b = best(&sw);
        assert_eq!(b.threshold, 0.7);
        assert_eq!((b.counts.tp, b.counts.fp, b.windows_detected), (1, 1, 1));
        // Scoring at a threshold between two scores alerts on the rows above it.
        assert_eq!(at(&sw, 0.8), sw[1]);
        assert_eq!(at(&sw, 2.0), sw[0]);
        assert_eq!(at(&sw, 0.0), sw[4]);
    }

    #[test]
    fn ties_go_to_the_highest_threshold() {
        // Alerts at rows 42 and 43 earn the same as at row 42 alone: the higher threshold wins.
        let mut s = vec![0.0; 100];
        s[42] = 0.9;
        s[43] = 0.8;
        let b = best(&sweep(&[file(s)], &STANDARD));
        assert_eq!(b.threshold, 0.9);
    }

    #[test]
    fn normalization_puts_null_at_0_and_perfect_at_100() {
        let profiles = [Profile {
            name: "standard".into(),
            costs: STANDARD,
        }];
        let perfect = score_corpus(&[alerts_at(&[40])], &profiles);
        assert_eq!(perfect[0].null_score, -1.0);
        assert_eq!(perfect[0].perfect_score, 1.0);
        assert!(close(perfect[0].normalized, 100.0));
        assert_eq!(perfect[0].precision, Some(1.0));
        let silent = score_corpus(&[alerts_at(&[])], &profiles);
        assert_eq!(silent[0].normalized, 0.0);
        assert_eq!(silent[0].precision, None);
        assert_eq!(silent[0].files[0].at.score, -1.0);
    }
}
