//! The streaming anomaly detector interface: what the daemon's monitors and the NAB harness
//! both drive. A detector sees one point at a time, in time order, and never the future.

use super::series::Point;

/// What a detector may know about a series before it starts: NAB gives every detector the
/// series' length, its value range and its probationary period (the first 15% of points,
/// which are not scored).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesInfo {
    pub len: usize,
    pub min: f64,
    pub max: f64,
    pub probation: usize,
}

pub trait Detector: Send {
    /// Scores the next point: 0 (normal) to 1 (certainly anomalous).
    fn score(&mut self, point: Point) -> f64;
}
