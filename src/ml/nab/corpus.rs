//! A NAB tree on disk: the labeled anomaly windows, the scoring profiles, the data files and
//! the published scoreboard; and the results files detectors write and the scorer reads.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};

use crate::ml::series::{self, SeriesError};

/// Where NAB keeps the combined labels, relative to its root.
pub const LABELS_FILE: &str = "labels/combined_windows.json";
/// The scoring profiles (cost matrices).
pub const PROFILES_FILE: &str = "config/profiles.json";
/// The published scoreboard: normalized score per detector and profile.
pub const SCOREBOARD_FILE: &str = "results/final_results.json";

#[derive(Debug, thiserror::Error)]
pub enum NabError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    /// A file that was read but does not hold what NAB puts there.
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{root} is not a NAB directory: it has no {LABELS_FILE}")]
    NotNab { root: String },
    #[error("unknown detector `{name}` (known: {known})")]
    UnknownDetector { name: String, known: String },
    #[error(transparent)]
    Series(#[from] SeriesError),
}

pub(super) fn invalid(path: &Path, message: impl Into<String>) -> NabError {
    NabError::Invalid {
        path: path.display().to_string(),
        message: message.into(),
    }
}

pub(super) fn read_text(path: &Path) -> Result<String, NabError> {
    std::fs::read_to_string(path).map_err(|source| NabError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The probationary period: the first 15% of a file's rows, at most 750 (15% of 5,000), are
/// the detector's to learn from and are not scored. NAB's `getProbationPeriod`, computed in
/// floating point as NAB does so that the boundary row is the same.
pub fn probation_len(rows: usize) -> usize {
    const PERCENT: f64 = 0.15;
    ((PERCENT * rows as f64).floor()).min(PERCENT * 5000.0) as usize
}

/// A labeled anomaly window: the rows whose timestamps fall within `start..=end` (Unix
/// seconds), the way NAB's labeler marks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

/// `labels/combined_windows.json`: for each data file (`category/file.csv`), its windows in
/// time order.
#[derive(Debug, Clone, Default)]
pub struct Labels {
    pub files: BTreeMap<String, Vec<Window>>,
}

impl Labels {
    pub fn read(path: &Path) -> Result<Labels, NabError> {
        let raw: BTreeMap<String, Vec<[String; 2]>> = serde_json::from_str(&read_text(path)?)
            .map_err(|e| invalid(path, format!("not NAB labels: {e}")))?;
        let mut files = BTreeMap::new();
        for (file, limits) in raw {
            let mut windows: Vec<Window> = Vec::with_capacity(limits.len());
            for [start, end] in &limits {
                let ts = |s: &str| {
                    series::parse_timestamp(s).ok_or_else(|| {
                        invalid(path, format!("{file}: invalid window timestamp `{s}`"))
                    })
                };
                let w = Window {
                    start: ts(start)?,
                    end: ts(end)?,
                };
                // The scorer walks windows in order and measures false positives from the
                // last window before them: windows must be ordered and disjoint.
                if w.start > w.end || windows.last().is_some_and(|p| p.end >= w.start) {
                    return Err(invalid(
                        path,
                        format!(
                            "{file}: window [{start}, {end}] is reversed, out of order or overlaps the previous one"
                        ),
                    ));
                }
                windows.push(w);
            }
            files.insert(file, windows);
        }
        Ok(Labels { files })
    }

    pub fn windows(&self, file: &str) -> Option<&[Window]> {
        self.files.get(file).map(Vec::as_slice)
    }
}

/// How a profile weighs detections. NAB's profiles also carry a true-negative weight, which
/// its scorer never uses.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, serde::Serialize)]
pub struct CostMatrix {
    #[serde(rename = "tpWeight")]
    pub tp: f64,
    #[serde(rename = "fpWeight")]
    pub fp: f64,
    #[serde(rename = "fnWeight")]
    pub fn_: f64,
}

/// A scoring profile of `config/profiles.json`: `standard`, `reward_low_FP_rate`,
/// `reward_low_FN_rate`.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    pub costs: CostMatrix,
}

#[derive(Deserialize)]
struct RawProfile {
    #[serde(rename = "CostMatrix")]
    cost_matrix: CostMatrix,
}

/// Reads the profiles in file order (NAB's own order, which reports follow).
pub fn read_profiles(path: &Path) -> Result<Vec<Profile>, NabError> {
    let InOrder(raw): InOrder<RawProfile> = serde_json::from_str(&read_text(path)?)
        .map_err(|e| invalid(path, format!("not NAB profiles: {e}")))?;
    if raw.is_empty() {
        return Err(invalid(path, "no profiles"));
    }
    Ok(raw
        .into_iter()
        .map(|(name, p)| Profile {
            name,
            costs: p.cost_matrix,
        })
        .collect())
}

/// A JSON object's entries in document order (serde_json's maps sort their keys).
struct InOrder<T>(Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for InOrder<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Entries<T> {
            type Value = InOrder<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<InOrder<T>, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(InOrder(entries))
            }
        }
        d.deserialize_map(Entries(std::marker::PhantomData))
    }
}

/// `results/final_results.json`: the published normalized score of each detector (by name)
/// under each profile (by name).
pub type Scoreboard = BTreeMap<String, BTreeMap<String, f64>>;

/// An opened NAB tree.
#[derive(Debug, Clone)]
pub struct Nab {
    pub root: PathBuf,
    pub labels: Labels,
    pub profiles: Vec<Profile>,
    /// The published scoreboard, when the tree has one.
    pub scoreboard: Option<Scoreboard>,
}

/// A labeled data file: `key` is its path under `data/` (`realTraffic/speed_7578.csv`), the
/// name labels and results use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    pub key: String,
    pub path: PathBuf,
}

impl Nab {
    /// Opens the NAB tree at `path`, or whose `data/` directory `path` is.
    pub fn open(path: &Path) -> Result<Nab, NabError> {
        let root = if path.join(LABELS_FILE).is_file() {
            path.to_path_buf()
        } else {
            match path.parent() {
                Some(parent) if path.ends_with("data") && parent.join(LABELS_FILE).is_file() => {
                    parent.to_path_buf()
                }
                _ => {
                    return Err(NabError::NotNab {
                        root: path.display().to_string(),
                    });
                }
            }
        };
        let labels = Labels::read(&root.join(LABELS_FILE))?;
        let profiles = read_profiles(&root.join(PROFILES_FILE))?;
        let board = root.join(SCOREBOARD_FILE);
        let scoreboard = if board.is_file() {
            Some(
                serde_json::from_str(&read_text(&board)?)
                    .map_err(|e| invalid(&board, format!("not a NAB scoreboard: {e}")))?,
            )
        } else {
            None
        };
        Ok(Nab {
            root,
            labels,
            profiles,
            scoreboard,
        })
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The labeled files present under `data/`, in label order, and the labeled files that
    /// are missing. Files without labels are not NAB's and are left out.
    pub fn data_files(&self) -> (Vec<DataFile>, Vec<String>) {
        let data = self.data_dir();
        let (present, missing): (Vec<DataFile>, Vec<DataFile>) = self
            .labels
            .files
            .keys()
            .map(|key| DataFile {
                key: key.clone(),
                path: data.join(key),
            })
            .partition(|f| f.path.is_file());
        (present, missing.into_iter().map(|f| f.key).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probation_is_fifteen_percent_capped_at_750() {
        assert_eq!(probation_len(4032), 604);
        assert_eq!(probation_len(1127), 169);
        assert_eq!(probation_len(5000), 750);
        assert_eq!(probation_len(15842), 750);
        assert_eq!(probation_len(0), 0);
    }

    #[test]
    fn labels_parse_nab_timestamps_and_reject_overlaps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.json");
        std::fs::write(
            &path,
            r#"{"a/x.csv": [["2014-04-10 07:15:00.000000", "2014-04-11 16:45:00.000000"]], "a/y.csv": []}"#,
        )
        .unwrap();
        let labels = Labels::read(&path).unwrap();
        let w = labels.windows("a/x.csv").unwrap();
        assert_eq!(
            w,
            [Window {
                start: series::parse_timestamp("2014-04-10 07:15:00").unwrap(),
                end: series::parse_timestamp("2014-04-11 16:45:00").unwrap(),
            }]
        );
        assert_eq!(labels.windows("a/y.csv"), Some(&[][..]));

        std::fs::write(
            &path,
            r#"{"a/x.csv": [["2014-04-10 00:00:00", "2014-04-11 00:00:00"], ["2014-04-10 12:00:00", "2014-04-12 00:00:00"]]}"#,
        )
        .unwrap();
        let e = Labels::read(&path).unwrap_err().to_string();
        assert!(e.contains("overlaps"), "{e}");
    }

    #[test]
    fn profiles_keep_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(
            &path,
            r#"{"standard": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0}},
                "b_second": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 2.0, "fpWeight": 0.22, "tnWeight": 1.0}}}"#,
        )
        .unwrap();
        let p = read_profiles(&path).unwrap();
        assert_eq!(p[0].name, "standard");
        assert_eq!(p[1].name, "b_second");
        assert_eq!(
            p[1].costs,
            CostMatrix {
                tp: 1.0,
                fp: 0.22,
                fn_: 2.0
            }
        );
    }
}
