//! `cairn nab run|score`: the Numenta Anomaly Benchmark harness.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::ui::Ui;
use super::{CmdResult, EXIT_OK, Failure};
use crate::diag::{Diag, plural};
use crate::ml::nab::{self, Nab, NabError, ProfileScore, ResultsFile};

const NAB_DIR_HELP: &str = "\
NAB_DIR is a Numenta Anomaly Benchmark tree (github.com/numenta/NAB): data/<category>/*.csv, \
labels/combined_windows.json, config/profiles.json and, to compare with, the published \
scoreboard results/final_results.json.";

const SCORING_HELP: &str = "\
Scoring is NAB's: rows of the first 15% of each file (at most 750) are not scored; in each \
labeled window the first alert earns up to 1, less the later it comes; a missed window costs; \
alerts outside windows cost, least just after a window. For each profile (standard, \
reward_low_FP_rate, reward_low_FN_rate) the threshold with the best total is chosen and the \
total normalized: 0 is the null detector (never alerting), 100 is every window caught at its \
first row. See docs/nab.md.";

#[derive(Debug, Subcommand)]
pub enum NabCommand {
    /// Run a detector over NAB's data, write NAB results files, and score them.
    #[command(after_help = format!("Example:\n  cairn nab run ../shared/data/nab --detector windowedGaussian\n\n\
{NAB_DIR_HELP} Every labeled data file present is run, files in parallel. Results go to \
RESULTS/<detector>/<category>/<detector>_<file>.csv (timestamp,value,anomaly_score,label), the \
per-file scores to RESULTS/<detector>/<detector>_<profile>_scores.csv.\n\n{SCORING_HELP}"))]
    Run(RunArgs),

    /// Score a detector's NAB results directory (from `cairn nab run` or from NAB itself).
    #[command(after_help = format!("Example:\n  cairn nab score nab-results/windowedGaussian --nab ../shared/data/nab\n\n\
The directory is named after the detector and holds <category>/<detector>_<file>.csv files with \
timestamp and anomaly_score columns. {NAB_DIR_HELP}\n\n{SCORING_HELP}"))]
    Score(ScoreArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The NAB tree (its data/ directory is accepted too).
    #[arg(value_name = "NAB_DIR")]
    pub nab: PathBuf,
    /// The detector to run.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(nab::detector_names()))]
    pub detector: String,
    /// Where to write the results (a directory per detector is made in it).
    #[arg(long, value_name = "RESULTS", default_value = "nab-results")]
    pub results: PathBuf,
}

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// A detector's results directory, e.g. nab-results/windowedGaussian.
    #[arg(value_name = "RESULTS_DIR")]
    pub results: PathBuf,
    /// The NAB tree whose labels and profiles to score with.
    #[arg(long, value_name = "NAB_DIR")]
    pub nab: PathBuf,
}

pub fn run(cmd: NabCommand, ui: &Ui) -> CmdResult {
    match cmd {
        NabCommand::Run(a) => {
            let nab = open(&a.nab)?;
            let run = nab::run(&nab, &a.detector, &a.results).map_err(error)?;
            if run.files.is_empty() {
                return Err(Diag::error(
                    "nab::no_data",
                    format!("no labeled data file in `{}`", nab.data_dir().display()),
                )
                .help("NAB's data files are data/<category>/<file>.csv, named as in labels/combined_windows.json")
                .into());
            }
            let scores = nab::score_corpus(&run.files, &nab.profiles);
            for p in &scores {
                nab::write_scores(&run.dir, &a.detector, p).map_err(error)?;
            }
            let report = Report {
                nab: &nab,
                detector: &a.detector,
                dir: &run.dir,
                files: &run.files,
                missing: Some(&run.missing),
                scores: &scores,
            };
            report.print(ui);
            Ok(EXIT_OK)
        }
        NabCommand::Score(a) => {
            let nab = open(&a.nab)?;
            let (detector, files) = nab::read_results(&nab.labels, &a.results).map_err(error)?;
            let scores = nab::score_corpus(&files, &nab.profiles);
            let report = Report {
                nab: &nab,
                detector: &detector,
                dir: &a.results,
                files: &files,
                missing: None,
                scores: &scores,
            };
            report.print(ui);
            Ok(EXIT_OK)
        }
    }
}

fn open(dir: &Path) -> Result<Nab, Failure> {
    Nab::open(dir).map_err(|e| {
        let not_nab = matches!(e, NabError::NotNab { .. });
        let d = error(e);
        if not_nab {
            d.help("pass the root of a NAB tree (with data/, labels/ and config/), e.g. ../shared/data/nab")
                .into()
        } else {
            d.into()
        }
    })
}

fn error(e: NabError) -> Diag {
    let code = match e {
        NabError::Read { .. } | NabError::Write { .. } => "nab::io",
        NabError::Invalid { .. } | NabError::Series(_) => "nab::invalid",
        NabError::NotNab { .. } => "nab::not_nab",
        NabError::UnknownDetector { .. } => "nab::detector",
    };
    Diag::error(code, e.to_string())
}

/// What both commands print.
struct Report<'a> {
    nab: &'a Nab,
    detector: &'a str,
    dir: &'a Path,
    files: &'a [ResultsFile],
    /// Labeled files absent from data/ (`run` only).
    missing: Option<&'a [String]>,
    scores: &'a [ProfileScore],
}

impl Report<'_> {
    fn print(&self, ui: &Ui) {
        if ui.json {
            ui.print_json(&self.json());
        } else {
            print!("{}", self.text());
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "detector": self.detector,
            "results": self.dir,
            "files": self.files.len(),
            "labeled_files": self.nab.labels.files.len(),
            "missing": self.missing,
            "profiles": self.scores,
            "published": self.nab.scoreboard.as_ref().and_then(|b| b.get(self.detector)),
            "scoreboard": self.nab.scoreboard,
        })
    }

    fn text(&self) -> String {
        let mut out = String::new();
        let n = self.files.len();
        let windows = self.scores.first().map_or(0, |p| p.windows);
        if let Some(missing) = self.missing {
            let _ = write!(
                out,
                "Ran {} over {n} labeled file{}",
                self.detector,
                plural(n)
            );
            if !missing.is_empty() {
                let _ = write!(
                    out,
                    " ({} more listed in the labels are not in data/)",
                    missing.len()
                );
            }
            let _ = writeln!(out, "; results in {}.", self.dir.display());
        }
        let _ = writeln!(
            out,
            "\nNAB score of {} on {n} file{}, {windows} anomaly window{}:\n",
            self.detector,
            plural(n),
            plural(windows)
        );
        let rows: Vec<Vec<String>> = self
            .scores
            .iter()
            .map(|p| {
                let c = p.best.counts;
                vec![
                    p.profile.clone(),
                    threshold(p.best.threshold),
                    format!("{:.2}", p.best.score),
                    format!("{:.2}", p.null_score),
                    format!("{:.2}", p.normalized),
                    format!("{}/{}", p.best.windows_detected, p.windows),
                    c.tp.to_string(),
                    c.fp.to_string(),
                    c.fn_.to_string(),
                    p.precision
                        .map_or("-".to_string(), |x| format!("{:.1}%", 100.0 * x)),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "profile",
                "threshold",
                "score",
                "null",
                "normalized",
                "windows",
                "TP rows",
                "FP rows",
                "FN rows",
                "precision",
            ],
            &rows,
        ));
        if let Some(board) = &self.nab.scoreboard {
            out.push_str(&self.scoreboard(board));
        }
        out
    }

    /// The published scoreboard, best first by the first profile, with this run ranked among
    /// it.
    fn scoreboard(&self, board: &nab::Scoreboard) -> String {
        let labeled = self.nab.labels.files.len();
        let mut out = String::new();
        let _ = write!(
            out,
            "\nPublished NAB scoreboard (normalized, {labeled} files"
        );
        if self.files.len() < labeled {
            let _ = write!(
                out,
                "; this run's {} files are a subset, so its score is not directly comparable",
                self.files.len()
            );
        }
        out.push_str("):\n\n");
        let this_run = format!("{} (this run)", self.detector);
        let mut rows: Vec<(String, Vec<Option<f64>>)> = board
            .iter()
            .map(|(name, scores)| {
                let cells = self
                    .nab
                    .profiles
                    .iter()
                    .map(|p| scores.get(&p.name).copied());
                (name.clone(), cells.collect())
            })
            .collect();
        rows.push((
            this_run,
            self.scores.iter().map(|p| Some(p.normalized)).collect(),
        ));
        // Best first by the first profile's score.
        let first = |cells: &[Option<f64>]| cells.first().copied().flatten().unwrap_or(f64::MIN);
        rows.sort_by(|a, b| first(&b.1).total_cmp(&first(&a.1)));
        let rows: Vec<Vec<String>> = rows
            .into_iter()
            .map(|(name, cells)| {
                let cells = cells
                    .into_iter()
                    .map(|c| c.map_or("-".to_string(), |x| format!("{x:.2}")));
                std::iter::once(name).chain(cells).collect()
            })
            .collect();
        let header: Vec<&str> = std::iter::once("detector")
            .chain(self.nab.profiles.iter().map(|p| p.name.as_str()))
            .collect();
        out.push_str(&table(&header, &rows));
        out
    }
}

/// Lays rows out under a header: the first column left-aligned, the others right-aligned,
/// each as wide as its widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i == 0 {
                let _ = write!(line, "{cell:<w$}");
            } else {
                let _ = write!(line, "  {cell:>w$}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A threshold to 12 decimals, trailing zeros dropped: enough to tell NAB's thresholds apart
/// (its published scores have 12 significant digits) without the noise of the last bits.
fn threshold(t: f64) -> String {
    let s = format!("{t:.12}");
    let s = s.trim_end_matches('0');
    if s.ends_with('.') {
        format!("{s}0")
    } else {
        s.to_string()
    }
}
