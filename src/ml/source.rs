//! Metric sources: a stack's metrics read as time series, from Prometheus (PromQL over its
//! HTTP API), from CSV files, or from the sandbox, which replays a trace as live load.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::series::{Point, Series, SeriesError};
use crate::config::{Metric, MetricsConfig};

const WEEK: i64 = 7 * 86_400;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Series(#[from] SeriesError),
    #[error("Prometheus at {url}: {message}")]
    Prometheus { url: String, message: String },
    #[error("{path}: no points to replay")]
    EmptyTrace { path: String },
}

/// Reads a stack's metrics. Cheap to clone; one per stack.
#[derive(Clone)]
pub struct MetricReader {
    dir: PathBuf,
    prometheus: Option<(String, prometheus_http_query::Client)>,
}

impl MetricReader {
    /// `dir` is the stack directory, against which `file` and `trace` paths resolve.
    pub fn new(dir: &Path, config: &MetricsConfig) -> Result<MetricReader, SourceError> {
        let prometheus = match &config.prometheus {
            None => None,
            Some(url) => {
                let http = reqwest::Client::builder()
                    .timeout(config.timeout.unwrap_or(Duration::from_secs(10)))
                    .build()
                    .map_err(|e| SourceError::Prometheus {
                        url: url.clone(),
                        message: e.to_string(),
                    })?;
                let client = prometheus_http_query::Client::from(http, url).map_err(|e| {
                    SourceError::Prometheus {
                        url: url.clone(),
                        message: e.to_string(),
                    }
                })?;
                Some((url.clone(), client))
            }
        };
        Ok(MetricReader {
            dir: dir.to_path_buf(),
            prometheus,
        })
    }

    /// The metric's values from `start` to `end` (Unix seconds, inclusive) every `step`
    /// seconds. A file is returned as recorded, cut to the range.
    pub async fn range(
        &self,
        metric: &Metric,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<Series, SourceError> {
        match metric {
            Metric::Query(query) => self.query_range(query, start, end, step).await,
            Metric::File(path) => {
                let mut series = Series::read_csv(&self.dir.join(path))?;
                series.points.retain(|p| p.ts >= start && p.ts <= end);
                Ok(series)
            }
            Metric::Trace(path) => {
                let trace = Series::read_csv(&self.dir.join(path))?;
                replay(&trace, start, end, step).ok_or_else(|| SourceError::EmptyTrace {
                    path: path.display().to_string(),
                })
            }
        }
    }

    /// The last `span` seconds of the metric every `step`, ending `now` — except for a file,
    /// a recording that may end in the past, which gives its own last `span` seconds.
    pub async fn history(
        &self,
        metric: &Metric,
        now: i64,
        span: i64,
        step: i64,
    ) -> Result<Series, SourceError> {
        match metric {
            Metric::File(path) => {
                let mut series = Series::read_csv(&self.dir.join(path))?;
                let end = series.points.last().map_or(now, |p| p.ts);
                series.points.retain(|p| p.ts > end - span);
                Ok(series)
            }
            _ => self.range(metric, now - span, now, step).await,
        }
    }

    async fn query_range(
        &self,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<Series, SourceError> {
        // Compilation refuses a `query` metric without a server.
        let (url, client) = self
            .prometheus
            .as_ref()
            .expect("a query metric has a Prometheus server");
        let failed = |message: String| SourceError::Prometheus {
            url: url.clone(),
            message,
        };
        let result = client
            .query_range(query, start, end, step as f64)
            .get()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let Some(matrix) = result.data().as_matrix() else {
            return Err(failed(format!("`{query}` did not return a range vector")));
        };
        match matrix.as_slice() {
            [] => Ok(Series {
                name: query.to_string(),
                points: Vec::new(),
            }),
            [one] => Ok(Series {
                name: query.to_string(),
                points: one
                    .samples()
                    .iter()
                    .map(|s| Point {
                        ts: s.timestamp() as i64,
                        value: s.value(),
                    })
                    .collect(),
            }),
            many => Err(failed(format!(
                "`{query}` returned {} series; aggregate them into one (e.g. with sum(…))",
                many.len()
            ))),
        }
    }
}

/// The trace replayed as if it were live: shifted by whole weeks so that its last point is
/// at or before `end` (keeping weekday and time of day), looping over its span for older
/// times. Sampled every `step` from `start` to `end`, each time taking the latest trace point.
pub fn replay(trace: &Series, start: i64, end: i64, step: i64) -> Option<Series> {
    let first = trace.points.first()?.ts;
    let last = trace.points.last()?.ts;
    let trace_step = trace.step().unwrap_or(step.max(1));
    let span = last - first + trace_step;
    // How far the trace is moved forward: whole weeks, until its end reaches `end`.
    let shift = (end - last).div_euclid(WEEK) * WEEK;
    let value_at = |t: i64| {
        let offset = (t - shift - first).rem_euclid(span);
        let at = first + offset;
        let i = trace.points.partition_point(|p| p.ts <= at);
        trace.points[i.saturating_sub(1)].value
    };
    let points = (0..)
        .map(|k| start + k * step.max(1))
        .take_while(|t| *t <= end)
        .map(|ts| Point {
            ts,
            value: value_at(ts),
        })
        .collect();
    Some(Series {
        name: trace.name.clone(),
        points,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace() -> Series {
        // Two weeks of hourly points whose value is the hour index.
        Series {
            name: "t".into(),
            points: (0..14 * 24)
                .map(|h| Point {
                    ts: 1_700_000_000 - 1_700_000_000 % WEEK + h * 3600,
                    value: h as f64,
                })
                .collect(),
        }
    }

    #[test]
    fn replay_keeps_the_weekly_phase_and_loops() {
        let t = trace();
        let first = t.points[0].ts;
        // Asked up to three weeks after its start, the trace is moved one week forward, so it
        // ends an hour before `later` with its last value, then starts over: hour 0 again,
        // on the same weekday and hour as the original start.
        let later = first + 3 * WEEK;
        let r = replay(&t, later - 3600, later + 3600, 3600).unwrap();
        assert_eq!(r.values(), vec![335.0, 0.0, 1.0]);
        // Half-hour steps take the latest trace point.
        let r = replay(&t, later, later + 3600, 1800).unwrap();
        assert_eq!(r.values(), vec![0.0, 0.0, 1.0]);
    }

    #[test]
    fn replay_of_an_empty_trace_is_none() {
        assert!(replay(&Series::default(), 0, 10, 1).is_none());
    }
}
