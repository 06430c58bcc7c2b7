//! The detectors the harness can run, by the names NAB's results use.

use super::gaussian::WindowedGaussian;
use crate::ml::anomaly::AnomalyDetector;
use crate::ml::detector::{Detector, SeriesInfo};
use crate::ml::series::Point;

/// What NAB's null detector scores every point: a constant. Its best threshold is never to
/// alert, which is the floor of NAB's normalized scale.
pub const NULL_SCORE: f64 = 0.5;

/// NAB's null detector.
#[derive(Debug, Clone, Copy, Default)]
pub struct Null;

impl Detector for Null {
    fn score(&mut self, _point: Point) -> f64 {
        NULL_SCORE
    }
}

type Constructor = fn(SeriesInfo) -> Box<dyn Detector>;

/// Every detector by name; a new detector is one line here.
const DETECTORS: &[(&str, Constructor)] = &[
    (
        "windowedGaussian",
        |_| Box::new(WindowedGaussian::default()),
    ),
    ("null", |_| Box::new(Null)),
    ("cairn", |info| Box::new(AnomalyDetector::for_series(info))),
];

/// A fresh detector for one series, or `None` for an unknown name.
pub fn detector(name: &str, info: SeriesInfo) -> Option<Box<dyn Detector>> {
    DETECTORS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, make)| make(info))
}

/// The names [`detector`] knows, in registry order.
pub fn detector_names() -> impl Iterator<Item = &'static str> + Clone {
    DETECTORS.iter().map(|(n, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_builds_detectors_by_name() {
        let info = SeriesInfo {
            len: 10,
            min: 0.0,
            max: 1.0,
            probation: 1,
        };
        let point = Point { ts: 0, value: 3.0 };
        let mut null = detector("null", info).unwrap();
        assert_eq!(null.score(point), NULL_SCORE);
        let mut gaussian = detector("windowedGaussian", info).unwrap();
        assert_eq!(gaussian.score(point), 0.0);
        assert!(detector("nope", info).is_none());
        assert_eq!(
            detector_names().collect::<Vec<_>>(),
            ["windowedGaussian", "null", "cairn"]
        );
    }
}
