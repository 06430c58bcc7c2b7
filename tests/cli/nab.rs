//! `cairn nab`: the NAB harness end to end on `tests/fixtures/nab`, a NAB tree with two of
//! NAB's data files, its labels, profiles and published results.

use std::path::PathBuf;

use crate::Work;

fn fixtures() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/nab")
        .display()
        .to_string()
}

#[test]
fn run_writes_nab_results_and_prints_the_scores_beside_the_scoreboard() {
    let w = Work::new();
    let nab = fixtures();
    let r = w.ok(
        &[
            "nab",
            "run",
            &nab,
            "--detector",
            "windowedGaussian",
            "--results",
            "out",
        ],
        0,
    );
    insta::assert_snapshot!(r.stdout);

    let results = std::fs::read_to_string(
        w.path("out/windowedGaussian/realTraffic/windowedGaussian_speed_7578.csv"),
    )
    .unwrap();
    let mut lines = results.lines();
    assert_eq!(lines.next(), Some("timestamp,value,anomaly_score,label"));
    assert_eq!(lines.next(), Some("2015-09-08 11:39:00,73.0,0.0,0"));
    assert_eq!(results.lines().count(), 1 + 1127);

    let scores = std::fs::read_to_string(
        w.path("out/windowedGaussian/windowedGaussian_standard_scores.csv"),
    )
    .unwrap();
    let lines: Vec<&str> = scores.lines().collect();
    assert_eq!(
        lines[0],
        "Detector,Profile,File,Threshold,Score,TP,TN,FP,FN,Total_Count"
    );
    assert!(lines[2].starts_with("windowedGaussian,standard,realTraffic/speed_7578.csv,"));
    assert!(lines[3].starts_with("Totals,,,,"));

    // Scoring the written results again gives the same summary.
    let run = w.json(&[
        "nab",
        "run",
        &nab,
        "--detector",
        "windowedGaussian",
        "--results",
        "out",
    ]);
    let score = w.json(&["nab", "score", "out/windowedGaussian", "--nab", &nab]);
    assert_eq!(run["profiles"], score["profiles"]);
    assert_eq!(run["files"], 2);
    assert_eq!(run["missing"].as_array().unwrap().len(), 56);
    assert_eq!(score["missing"], serde_json::Value::Null);
    assert_eq!(run["published"]["standard"], 39.649523496077585);
    let standard = &run["profiles"][0];
    assert_eq!(standard["profile"], "standard");
    assert_eq!(standard["windows"], 6);
    assert_eq!(standard["null_score"], -6.0);
    assert_eq!(standard["files"].as_array().unwrap().len(), 2);
}

#[test]
fn score_reads_nabs_own_results() {
    let w = Work::new();
    let nab = fixtures();
    let r = w.json(&[
        "nab",
        "score",
        &format!("{nab}/results/windowedGaussian"),
        "--nab",
        &nab,
    ]);
    assert_eq!(r["detector"], "windowedGaussian");
    assert_eq!(r["files"], 3);
    let files = r["profiles"][0]["files"].as_array().unwrap();
    let names: Vec<&str> = files.iter().map(|f| f["file"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "artificialNoAnomaly/art_flatline.csv",
            "realAWSCloudwatch/iio_us-east-1_i-a2eb1cd9_NetworkIn.csv",
            "realTraffic/speed_7578.csv"
        ]
    );
}

#[test]
fn errors_say_what_a_nab_tree_is() {
    let w = Work::new();
    let r = w.ok(&["nab", "run", ".", "--detector", "null"], 1);
    assert!(
        r.stderr
            .contains("is not a NAB directory: it has no labels/combined_windows.json"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("pass the root of a NAB tree"),
        "{}",
        r.stderr
    );

    std::fs::create_dir_all(w.path("empty/windowedGaussian")).unwrap();
    let r = w.ok(
        &[
            "nab",
            "score",
            "empty/windowedGaussian",
            "--nab",
            &fixtures(),
        ],
        1,
    );
    assert!(r.stderr.contains("no results files"), "{}", r.stderr);

    let r = w.ok(&["nab", "run", &fixtures(), "--detector", "cairn2"], 1);
    assert!(
        r.stderr
            .contains("[possible values: windowedGaussian, null, cairn]"),
        "{}",
        r.stderr
    );
}

#[test]
fn cairns_own_detector_runs_in_the_harness_and_beats_the_null_detector() {
    let w = Work::new();
    let run = w.json(&[
        "nab",
        "run",
        &fixtures(),
        "--detector",
        "cairn",
        "--results",
        "out",
    ]);
    let results =
        std::fs::read_to_string(w.path("out/cairn/realTraffic/cairn_speed_7578.csv")).unwrap();
    assert_eq!(results.lines().count(), 1 + 1127);
    let scores: Vec<f64> = results
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap().parse().unwrap())
        .collect();
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
    // The first points are learning: no score before there is a forest.
    assert!(scores[..64].iter().all(|&s| s == 0.0));
    let standard = &run["profiles"][0];
    assert_eq!(standard["profile"], "standard");
    assert!(
        standard["windows_detected"].as_u64().unwrap() >= 2,
        "{standard}"
    );
    assert!(
        standard["normalized"].as_f64().unwrap() > 20.0,
        "{standard}"
    );
}
