//! Time-series charts as SVG (plotters): named lines over a UTC time axis. Used by
//! `cairn simulate` (demand, capacity, forecast) and `cairn scale explain`.

use std::ops::Range;
use std::path::Path;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::*;

use super::series::format_timestamp;

/// How a line is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    Solid,
    Dashed,
    /// Each value holds until the next point: capacity, replicas.
    Steps,
}

/// A named line: `(unix seconds, value)` points in time order.
#[derive(Debug, Clone)]
pub struct Line {
    pub name: String,
    pub kind: LineKind,
    pub points: Vec<(i64, f64)>,
}

impl Line {
    pub fn new(name: impl Into<String>, kind: LineKind, points: Vec<(i64, f64)>) -> Line {
        Line {
            name: name.into(),
            kind,
            points,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub y_label: String,
    pub lines: Vec<Line>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("cannot draw the chart: {0}")]
    Draw(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 480;
const X_LABELS: usize = 10;
const DAY: i64 = 86_400;

/// A UTC time axis (Unix seconds) whose ticks fall on round times: every 5 minutes up to
/// every 4 weeks, whichever keeps them within the hint.
struct TimeAxis(Range<i64>);

fn tick_step(span: i64, max_points: usize) -> i64 {
    const STEPS: [i64; 13] = [
        300,
        900,
        1800,
        3600,
        7200,
        10_800,
        21_600,
        43_200,
        DAY,
        2 * DAY,
        7 * DAY,
        14 * DAY,
        28 * DAY,
    ];
    let max_points = max_points.max(1) as i64;
    STEPS
        .into_iter()
        .find(|step| span / step < max_points)
        .unwrap_or(28 * DAY)
}

impl Ranged for TimeAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = i64;

    fn map(&self, value: &i64, limit: (i32, i32)) -> i32 {
        let span = (self.0.end - self.0.start).max(1) as f64;
        let at = (value - self.0.start) as f64 / span;
        limit.0 + (at * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<i64> {
        let step = tick_step(self.0.end - self.0.start, hint.max_num_points());
        let first = self.0.start.div_euclid(step) * step;
        (0..)
            .map(|i| first + i * step)
            .skip_while(|ts| *ts < self.0.start)
            .take_while(|ts| *ts <= self.0.end)
            .collect()
    }

    fn range(&self) -> Range<i64> {
        self.0.clone()
    }
}

impl Chart {
    /// The chart as an SVG document.
    pub fn to_svg(&self) -> Result<String, ChartError> {
        let mut svg = String::new();
        self.draw(&mut svg)
            .map_err(|e| ChartError::Draw(e.to_string()))?;
        Ok(svg)
    }

    pub fn write_svg(&self, path: &Path) -> Result<(), ChartError> {
        let svg = self.to_svg()?;
        std::fs::write(path, svg).map_err(|source| ChartError::Write {
            path: path.display().to_string(),
            source,
        })
    }

    fn draw(&self, out: &mut String) -> Result<(), Box<dyn std::error::Error + '_>> {
        let all = self.lines.iter().flat_map(|l| &l.points);
        let (mut x0, mut x1, mut y1) = (i64::MAX, i64::MIN, 0.0f64);
        for &(ts, v) in all {
            x0 = x0.min(ts);
            x1 = x1.max(ts);
            y1 = y1.max(v);
        }
        if x0 > x1 {
            (x0, x1) = (0, 1);
        }
        let y1 = if y1 > 0.0 { y1 * 1.05 } else { 1.0 };
        let root = SVGBackend::with_string(out, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(TimeAxis(x0..x1.max(x0 + 1)), 0.0..y1)?;
        let whole_days = tick_step(x1 - x0, X_LABELS) >= DAY;
        chart
            .configure_mesh()
            .x_labels(X_LABELS)
            .x_label_formatter(&|ts| {
                let text = format_timestamp(*ts);
                if whole_days {
                    text[..10].to_string()
                } else {
                    text[5..16].to_string()
                }
            })
            .y_desc(&self.y_label)
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        for (i, line) in self.lines.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let style = color.stroke_width(if line.kind == LineKind::Dashed { 1 } else { 2 });
            let points = envelope(&shape(line), WIDTH as usize);
            let series = match line.kind {
                LineKind::Dashed => {
                    chart.draw_series(DashedLineSeries::new(points, 6, 4, style))?
                }
                LineKind::Solid | LineKind::Steps => {
                    chart.draw_series(LineSeries::new(points, style))?
                }
            };
            series
                .label(line.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()?;
        root.present()?;
        Ok(())
    }
}

/// The points to draw: a step line holds each value until the next point.
fn shape(line: &Line) -> Vec<(i64, f64)> {
    if line.kind != LineKind::Steps {
        return line.points.clone();
    }
    let mut out = Vec::with_capacity(line.points.len() * 2);
    for w in line.points.windows(2) {
        out.push(w[0]);
        out.push((w[1].0, w[0].1));
    }
    out.extend(line.points.last());
    out
}

/// At most about `2 × buckets` points: the lowest and highest of each time bucket, in time
/// order, so a month of 5-minute steps keeps its peaks without a megabyte of SVG.
fn envelope(points: &[(i64, f64)], buckets: usize) -> Vec<(i64, f64)> {
    if points.len() <= 2 * buckets {
        return points.to_vec();
    }
    let per = points.len().div_ceil(buckets);
    let mut out = Vec::with_capacity(2 * buckets);
    for chunk in points.chunks(per) {
        let lo = chunk.iter().min_by(|a, b| a.1.total_cmp(&b.1));
        let hi = chunk.iter().max_by(|a, b| a.1.total_cmp(&b.1));
        if let (Some(&lo), Some(&hi)) = (lo, hi) {
            if lo.0 <= hi.0 {
                out.extend([lo, hi]);
            } else {
                out.extend([hi, lo]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_named_lines_on_a_time_axis() {
        let day = 1_714_953_600;
        let chart = Chart {
            title: "demo".into(),
            y_label: "load".into(),
            lines: vec![
                Line::new(
                    "demand",
                    LineKind::Solid,
                    (0..100).map(|i| (day + i * 300, i as f64)).collect(),
                ),
                Line::new(
                    "capacity",
                    LineKind::Steps,
                    vec![(day, 10.0), (day + 9_000, 50.0), (day + 29_700, 50.0)],
                ),
                Line::new(
                    "forecast",
                    LineKind::Dashed,
                    vec![(day, 1.0), (day + 600, 2.0)],
                ),
            ],
        };
        let svg = chart.to_svg().unwrap();
        assert!(svg.starts_with("<svg"));
        // 8¼ hours: a tick every 3 hours, on the hour.
        for text in [
            "demo",
            "demand",
            "capacity",
            "forecast",
            "05-06 03:00",
            "05-06 06:00",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
    }

    #[test]
    fn ticks_fall_on_round_times() {
        let axis = TimeAxis(1_000..(1_000 + 9 * DAY));
        let ticks = axis.key_points(10usize);
        assert_eq!(ticks.len(), 9);
        assert!(ticks.iter().all(|t| t % DAY == 0));
    }

    #[test]
    fn envelope_keeps_extremes_in_time_order() {
        let points: Vec<(i64, f64)> = (0..1000).map(|i| (i, (i % 7) as f64)).collect();
        let e = envelope(&points, 100);
        assert!(e.len() <= 200);
        assert!(e.windows(2).all(|w| w[0].0 <= w[1].0));
        assert_eq!(e.iter().map(|p| p.1).fold(0.0, f64::max), 6.0);
    }
}
