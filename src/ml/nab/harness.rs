//! Running a detector over NAB's data, and NAB's results files:
//! `<results>/<detector>/<category>/<detector>_<file>.csv` with the columns
//! `timestamp,value,anomaly_score,label`, and `<detector>_<profile>_scores.csv` beside them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::corpus::{DataFile, Labels, Nab, NabError, invalid, probation_len, read_text};
use super::detectors::{detector, detector_names};
use super::score::{ProfileScore, ResultsFile};
use crate::ml::detector::SeriesInfo;
use crate::ml::series::{self, Series};

/// What [`run`] did.
#[derive(Debug, Clone)]
pub struct Run {
    /// `<results>/<detector>`: where the results files were written.
    pub dir: PathBuf,
    /// One per labeled data file found, by key.
    pub files: Vec<ResultsFile>,
    /// Labeled files absent from `data/` (NAB's labels list 58; a partial copy has fewer).
    pub missing: Vec<String>,
}

/// Runs the detector `name` over every labeled data file of `nab`, files in parallel, and
/// writes their results files under `results/<name>/`.
pub fn run(nab: &Nab, name: &str, results: &Path) -> Result<Run, NabError> {
    if !detector_names().any(|n| n == name) {
        return Err(NabError::UnknownDetector {
            name: name.to_string(),
            known: detector_names().collect::<Vec<_>>().join(", "),
        });
    }
    let dir = results.join(name);
    let (present, missing) = nab.data_files();
    let mut files = present
        .par_iter()
        .map(|f| run_file(&nab.labels, name, f, &dir))
        .collect::<Result<Vec<_>, _>>()?;
    files.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(Run {
        dir,
        files,
        missing,
    })
}

fn run_file(
    labels: &Labels,
    name: &str,
    file: &DataFile,
    dir: &Path,
) -> Result<ResultsFile, NabError> {
    let series = Series::read_csv(&file.path)?;
    let points = &series.points;
    let info = SeriesInfo {
        len: points.len(),
        min: points.iter().map(|p| p.value).fold(f64::INFINITY, f64::min),
        max: points
            .iter()
            .map(|p| p.value)
            .fold(f64::NEG_INFINITY, f64::max),
        probation: probation_len(points.len()),
    };
    let mut d = detector(name, info).expect("the name was checked");
    let scores: Vec<f64> = points.iter().map(|&p| d.score(p)).collect();
    // The scorer's first threshold lies above 1: scores must stay within [0, 1].
    if let Some((i, s)) = scores
        .iter()
        .enumerate()
        .find(|(_, s)| !(0.0..=1.0).contains(*s))
    {
        return Err(invalid(
            &file.path,
            format!(
                "detector `{name}` scored row {} {s}: scores must lie within [0, 1]",
                i + 2
            ),
        ));
    }
    let results = ResultsFile {
        key: file.key.clone(),
        timestamps: points.iter().map(|p| p.ts).collect(),
        scores,
        windows: labels.windows(&file.key).unwrap_or_default().to_vec(),
    };
    let values: Vec<f64> = points.iter().map(|p| p.value).collect();
    write_results(dir, name, &results, &values)?;
    Ok(results)
}

/// `<dir>/<category>/<detector>_<file>.csv` for the data file `category/file.csv`.
fn results_path(dir: &Path, detector: &str, key: &str) -> PathBuf {
    let (category, file) = key.rsplit_once('/').unwrap_or(("", key));
    dir.join(category).join(format!("{detector}_{file}"))
}

fn write_file(path: &Path, text: &str) -> Result<(), NabError> {
    let write_err = |source| NabError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(write_err)?;
    }
    std::fs::write(path, text).map_err(write_err)
}

/// Writes a results file: each row's timestamp, value, anomaly score, and label (1 in a
/// window).
fn write_results(
    dir: &Path,
    detector: &str,
    r: &ResultsFile,
    values: &[f64],
) -> Result<(), NabError> {
    let mut text = String::from("timestamp,value,anomaly_score,label\n");
    let in_window = |t: i64| r.windows.iter().any(|w| (w.start..=w.end).contains(&t));
    for ((&t, v), s) in r.timestamps.iter().zip(values).zip(&r.scores) {
        let _ = writeln!(
            text,
            "{},{v:?},{s:?},{}",
            series::format_timestamp(t),
            u8::from(in_window(t))
        );
    }
    write_file(&results_path(dir, detector, &r.key), &text)
}

/// Reads a detector's results directory (`<results>/<detector>`, named after the detector):
/// every `<category>/<detector>_<file>.csv`, matched with its labels. Returns the detector's
/// name and the files, by key.
pub fn read_results(labels: &Labels, dir: &Path) -> Result<(String, Vec<ResultsFile>), NabError> {
    let detector = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| invalid(dir, "a results directory is named after its detector"))?;
    let list = |d: &Path| -> Result<Vec<PathBuf>, NabError> {
        let entries = std::fs::read_dir(d).map_err(|source| NabError::Read {
            path: d.display().to_string(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        Ok(paths)
    };
    let prefix = format!("{detector}_");
    let mut files = Vec::new();
    // Files directly in the directory are the `*_scores.csv` summaries, not results.
    for category in list(dir)?.into_iter().filter(|p| p.is_dir()) {
        for path in list(&category)? {
            let Some(file) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix(&prefix))
                .filter(|n| n.ends_with(".csv"))
            else {
                continue;
            };
            let key = format!(
                "{}/{file}",
                category.file_name().unwrap_or_default().to_string_lossy()
            );
            let windows = labels
                .windows(&key)
                .ok_or_else(|| invalid(&path, format!("no labels for `{key}`")))?;
            let (timestamps, scores) = read_results_file(&path)?;
            files.push(ResultsFile {
                key,
                timestamps,
                scores,
                windows: windows.to_vec(),
            });
        }
    }
    if files.is_empty() {
        return Err(invalid(
            dir,
            format!(
                "no results files (expected {}/<category>/{prefix}<file>.csv)",
                dir.display()
            ),
        ));
    }
    Ok((detector, files))
}

/// The timestamps and anomaly scores of a results file (other columns are ignored).
fn read_results_file(path: &Path) -> Result<(Vec<i64>, Vec<f64>), NabError> {
    let text = read_text(path)?;
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = lines
        .next()
        .map_or(vec![], |(_, l)| l.split(',').map(str::trim).collect());
    let column = |name: &str| {
        header
            .iter()
            .position(|c| *c == name)
            .ok_or_else(|| invalid(path, format!("no `{name}` column: not a NAB results file")))
    };
    let (ts_col, score_col) = (column("timestamp")?, column("anomaly_score")?);
    let (mut timestamps, mut scores) = (Vec::new(), Vec::new());
    for (i, line) in lines.filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let field = |c: usize| fields.get(c).copied().unwrap_or("");
        let bad = |what: &str| invalid(path, format!("line {}: {what}", i + 1));
        let t = series::parse_timestamp(field(ts_col))
            .ok_or_else(|| bad(&format!("invalid timestamp `{}`", field(ts_col))))?;
        let s: f64 = field(score_col)
            .parse()
            .ok()
            .filter(|s| (0.0..=1.0).contains(s))
            .ok_or_else(|| {
                bad(&format!(
                    "anomaly score `{}` is not a number within [0, 1]",
                    field(score_col)
                ))
            })?;
        // Windows are matched to rows by position: rows must be in time order.
        if timestamps.last().is_some_and(|&last| t < last) {
            return Err(bad("rows are not in time order"));
        }
        timestamps.push(t);
        scores.push(s);
    }
    Ok((timestamps, scores))
}

/// Writes NAB's `<detector>_<profile>_scores.csv`: one row per file at the chosen threshold,
/// then the totals.
pub fn write_scores(dir: &Path, detector: &str, p: &ProfileScore) -> Result<(), NabError> {
    let mut text = String::from("Detector,Profile,File,Threshold,Score,TP,TN,FP,FN,Total_Count\n");
    for f in &p.files {
        let c = f.at.counts;
        let _ = writeln!(
            text,
            "{detector},{},{},{:?},{:?},{},{},{},{},{}",
            p.profile, f.file, f.at.threshold, f.at.score, c.tp, c.tn, c.fp, c.fn_, f.rows
        );
    }
    let c = p.best.counts;
    let rows: usize = p.files.iter().map(|f| f.rows).sum();
    let score: f64 = p.files.iter().map(|f| f.at.score).sum();
    let _ = writeln!(
        text,
        "Totals,,,,{score:?},{},{},{},{},{rows}",
        c.tp, c.tn, c.fp, c.fn_
    );
    write_file(
        &dir.join(format!("{detector}_{}_scores.csv", p.profile)),
        &text,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::nab::Window;
    use crate::ml::nab::score::score_corpus;

    #[test]
    fn results_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let det = dir.path().join("null");
        let r = ResultsFile {
            key: "realX/f.csv".into(),
            timestamps: vec![0, 300, 600],
            scores: vec![0.0, 0.25, 1.0],
            windows: vec![Window {
                start: 300,
                end: 300,
            }],
        };
        write_results(&det, "null", &r, &[1.0, 2.5, 3.0]).unwrap();
        let path = det.join("realX/null_f.csv");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "timestamp,value,anomaly_score,label\n\
             1970-01-01 00:00:00,1.0,0.0,0\n\
             1970-01-01 00:05:00,2.5,0.25,1\n\
             1970-01-01 00:10:00,3.0,1.0,0\n"
        );
        let mut labels = Labels::default();
        labels.files.insert(r.key.clone(), r.windows.clone());
        let (name, files) = read_results(&labels, &det).unwrap();
        assert_eq!(name, "null");
        assert_eq!(files, std::slice::from_ref(&r));

        // Scores files beside the results are not results.
        let profiles = [crate::ml::nab::Profile {
            name: "standard".into(),
            costs: crate::ml::nab::CostMatrix {
                tp: 1.0,
                fp: 0.11,
                fn_: 1.0,
            },
        }];
        write_scores(&det, "null", &score_corpus(&files, &profiles)[0]).unwrap();
        assert_eq!(read_results(&labels, &det).unwrap().1.len(), 1);

        // A results file without labels is an error, not a silent skip.
        assert!(read_results(&Labels::default(), &det).is_err());
    }

    #[test]
    fn bad_results_files_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(&path, "timestamp,anomaly_score\n2014-01-01 00:00:00,1.5\n").unwrap();
        let e = read_results_file(&path).unwrap_err().to_string();
        assert!(
            e.ends_with("line 2: anomaly score `1.5` is not a number within [0, 1]"),
            "{e}"
        );
        std::fs::write(&path, "timestamp,value\n").unwrap();
        let e = read_results_file(&path).unwrap_err().to_string();
        assert!(e.contains("no `anomaly_score` column"), "{e}");
    }
}
