//! The Numenta Anomaly Benchmark (NAB) harness: run a streaming [`Detector`] over NAB's
//! labeled data, write NAB's results files, and score them as NAB does, so that a cairn
//! detector's score is comparable with NAB's published scoreboard.
//!
//! - [`corpus`]: a NAB tree (labels, profiles, data files, published scoreboard).
//! - [`harness`]: running a detector over the data; reading and writing results files.
//! - [`score`]: NAB's scorer: windows, scaled sigmoid, profiles, threshold sweep,
//!   normalization.
//! - [`detectors`]: the detectors by name, including NAB's `windowedGaussian` and `null`.
//!
//! [`Detector`]: crate::ml::detector::Detector

pub mod corpus;
pub mod detectors;
pub mod gaussian;
pub mod harness;
pub mod score;

#[cfg(test)]
mod published;

pub use corpus::{CostMatrix, Labels, Nab, NabError, Profile, Scoreboard, Window, probation_len};
pub use detectors::{detector, detector_names};
pub use harness::{Run, read_results, run, write_scores};
pub use score::{FileScore, ProfileScore, ResultsFile, ThresholdScore, score_corpus, score_file};
