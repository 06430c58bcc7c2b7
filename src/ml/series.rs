//! Time series: what every metric source returns and every model reads. Timestamps are Unix
//! seconds (UTC); values are f64. CSV files are `timestamp,value` with a header, the format of
//! the Numenta Anomaly Benchmark and of the demand traces.

use std::path::Path;

/// One observation.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Point {
    /// Unix seconds, UTC.
    pub ts: i64,
    pub value: f64,
}

/// A named series, sorted by time.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Series {
    pub name: String,
    pub points: Vec<Point>,
}

#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: String,
        line: usize,
        message: String,
    },
}

impl Series {
    /// A series named "t" of `values` one `step` apart from time 0: traces for tests.
    #[cfg(test)]
    pub fn from_values(values: &[f64], step: i64) -> Series {
        Series {
            name: "t".into(),
            points: values
                .iter()
                .enumerate()
                .map(|(i, v)| Point {
                    ts: i as i64 * step,
                    value: *v,
                })
                .collect(),
        }
    }

    pub fn values(&self) -> Vec<f64> {
        self.points.iter().map(|p| p.value).collect()
    }

    /// The most common interval between consecutive points, in seconds (300 for 5-minute
    /// data); `None` with fewer than two points.
    pub fn step(&self) -> Option<i64> {
        let mut counts = std::collections::HashMap::new();
        for w in self.points.windows(2) {
            *counts.entry(w[1].ts - w[0].ts).or_insert(0usize) += 1;
        }
        counts
            .into_iter()
            .filter(|(d, _)| *d > 0)
            .max_by_key(|(d, n)| (*n, -d))
            .map(|(d, _)| d)
    }

    /// Reads a `timestamp,value` CSV file (header required). Timestamps may be
    /// `YYYY-MM-DD HH:MM:SS` (UTC), RFC 3339, or Unix seconds. Points are sorted by time.
    pub fn read_csv(path: &Path) -> Result<Series, SeriesError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SeriesError::Io {
            path: shown.clone(),
            source,
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Series::parse_csv(&name, &text).map_err(|(line, message)| SeriesError::Parse {
            path: shown,
            line,
            message,
        })
    }

    /// Parses CSV text; errors carry the 1-based line number.
    pub fn parse_csv(name: &str, text: &str) -> Result<Series, (usize, String)> {
        let mut lines = text.lines().enumerate();
        let header = lines.next().map(|(_, l)| l.trim()).unwrap_or("");
        let columns: Vec<&str> = header.split(',').map(str::trim).collect();
        let ts_col = columns.iter().position(|c| *c == "timestamp");
        let value_col = columns.iter().position(|c| *c == "value");
        let (Some(ts_col), Some(value_col)) = (ts_col, value_col) else {
            return Err((
                1,
                format!("expected a header with `timestamp` and `value` columns, found `{header}`"),
            ));
        };
        let mut points = Vec::new();
        for (i, line) in lines {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let field = |c: usize| fields.get(c).copied().unwrap_or("");
            let ts = parse_timestamp(field(ts_col))
                .ok_or_else(|| (i + 1, format!("invalid timestamp `{}`", field(ts_col))))?;
            let value: f64 = field(value_col)
                .parse()
                .map_err(|_| (i + 1, format!("invalid value `{}`", field(value_col))))?;
            points.push(Point { ts, value });
        }
        points.sort_by_key(|p| p.ts);
        Ok(Series {
            name: name.to_string(),
            points,
        })
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC), RFC 3339, or Unix seconds.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    if let Ok(secs) = s.parse::<i64>() {
        return Some(secs);
    }
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Some(ts.as_second());
    }
    let dt: jiff::civil::DateTime = s.parse().ok()?;
    Some(
        dt.to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .ok()?
            .timestamp()
            .as_second(),
    )
}

/// Formats Unix seconds the way NAB and the traces write them: `YYYY-MM-DD HH:MM:SS`.
pub fn format_timestamp(ts: i64) -> String {
    jiff::Timestamp::from_second(ts)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| ts.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nab_style_csv_and_finds_the_step() {
        let s = Series::parse_csv(
            "t",
            "timestamp,value\n2014-04-10 00:09:00,56.0\n2014-04-10 00:04:00,94\n2014-04-10 00:14:00,1e1\n",
        )
        .unwrap();
        assert_eq!(s.values(), vec![94.0, 56.0, 10.0]);
        assert_eq!(s.step(), Some(300));
        assert_eq!(format_timestamp(s.points[0].ts), "2014-04-10 00:04:00");
        assert_eq!(
            parse_timestamp("2014-04-10T00:04:00Z"),
            Some(s.points[0].ts)
        );
    }

    #[test]
    fn bad_rows_name_their_line() {
        let e = Series::parse_csv("t", "timestamp,value\n2014-04-10 00:04:00,x\n").unwrap_err();
        assert_eq!(e, (2, "invalid value `x`".to_string()));
        let e = Series::parse_csv("t", "time,v\n").unwrap_err();
        assert_eq!(e.0, 1);
    }
}
