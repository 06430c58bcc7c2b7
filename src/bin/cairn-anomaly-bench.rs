//! Anomaly detector benchmark (docs/anomaly.md): throughput in points per second and memory
//! per monitored series, over every `timestamp,value` CSV given (e.g. NAB's data):
//!
//!   cargo run --release --bin cairn-anomaly-bench -- ../shared/data/nab/data
//!
//! Each series runs through a fresh detector with the default configuration, one series at a
//! time on one core. Memory is the detector's own struct plus every buffer and forest it
//! holds once the series has been read (the buffers are rings of fixed capacity, so this is
//! also the steady state).

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;

use cairn::ml::anomaly::{AnomalyConfig, AnomalyDetector};
use cairn::ml::series::Series;

#[derive(Parser)]
#[command(about = "Anomaly detector benchmark: points per second and memory per series")]
struct Args {
    /// Series files (`timestamp,value` CSV) or directories of them (searched recursively).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

fn main() {
    let args = Args::parse();
    let mut files = Vec::new();
    for p in &args.paths {
        collect(p, &mut files);
    }
    files.sort();
    println!("| series | points | points/s | memory (KiB) |");
    println!("|---|---:|---:|---:|");
    let (mut points, mut secs, mut memory) = (0usize, 0.0f64, Vec::new());
    for path in &files {
        let series = Series::read_csv(path).unwrap_or_else(|e| panic!("{e}"));
        let mut detector = AnomalyDetector::new(AnomalyConfig::default());
        let started = Instant::now();
        for &p in &series.points {
            std::hint::black_box(detector.observe(p));
        }
        let elapsed = started.elapsed().as_secs_f64();
        let bytes = detector.heap_bytes() + std::mem::size_of::<AnomalyDetector>();
        println!(
            "| {} | {} | {:.0} | {:.1} |",
            series.name,
            series.points.len(),
            series.points.len() as f64 / elapsed,
            bytes as f64 / 1024.0
        );
        points += series.points.len();
        secs += elapsed;
        memory.push(bytes);
    }
    let max = memory.iter().copied().max().unwrap_or(0);
    let mean = memory.iter().sum::<usize>() as f64 / memory.len().max(1) as f64;
    println!(
        "\n{} series, {points} points in {secs:.2} s: {:.0} points/s on one core; memory per \
series {:.1} KiB mean, {:.1} KiB max.",
        files.len(),
        points as f64 / secs,
        mean / 1024.0,
        max as f64 / 1024.0
    );
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
            collect(&entry.expect("directory entry").path(), out);
        }
    } else if path.extension().is_some_and(|x| x == "csv") {
        out.push(path.to_path_buf());
    } else if !path.exists() {
        panic!("{}: no such file or directory", path.display());
    }
}
