//! `lotse-bench all --quick` against the debug server: every scenario completes and
//! reports sane numbers (positive, finite, frames > 0). Never a time threshold.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

fn server_bin() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("debug").join("lotse-server");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "-p", "lotse-server"])
            .current_dir(&root)
            .status()
            .unwrap()
            .success();
        assert!(ok, "building lotse-server");
    }
    bin
}

#[test]
fn quick_run_completes_with_sane_numbers() {
    let out = lotse_testkit::TempDir::new("bench-quick");
    let out = out.path();
    let status = Command::new(env!("CARGO_BIN_EXE_lotse-bench"))
        .args(["all", "--quick", "--out"])
        .arg(out)
        .arg("--server-bin")
        .arg(server_bin())
        .status()
        .unwrap();
    assert!(status.success(), "lotse-bench all --quick failed");
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    for scenario in ["1 ", "2 ", "3 ", "4 ", "5 ", "6 ", "7 ", "8 "] {
        assert!(
            rows.iter()
                .any(|r| r["scenario"].as_str().unwrap().starts_with(scenario)),
            "scenario {scenario}missing"
        );
    }
    for r in &rows {
        // An idle server may well use no measurable CPU, and an evicted cache may hold
        // nothing, and under load no change should go unseen; everything else is positive.
        let metric = r["metric"].as_str().unwrap();
        let zero_ok =
            metric.contains("CPU") || metric.contains("resident") || metric.contains("not seen");
        let sane = |v: f64| v.is_finite() && (v > 0.0 || (zero_ok && v == 0.0));
        let ours = r["ours"].as_f64().unwrap();
        assert!(sane(ours), "{r}");
        if let Some(reference) = r["reference"].as_f64() {
            assert!(sane(reference), "{r}");
        }
        if metric.starts_with("frames") {
            assert!(ours >= 2.0, "{r}");
        }
        // Nobody touches the documents after the sync, so eviction leaves none in memory.
        if metric == "documents resident after eviction" {
            assert_eq!(ours, 0.0, "{r}");
        }
        // Under load every change reaches the other phone (the dashboard's stream may be
        // renewed just then, which the bench counts rather than hides).
        if metric == "changes not seen by the other device" {
            assert_eq!(ours, 0.0, "{r}");
        }
        // Every subscription got its push (the bench decrypted each before reporting).
        if metric.starts_with("posts received") {
            assert!(ours >= r["n"].as_f64().unwrap(), "{r}");
        }
    }
    assert!(
        std::fs::read_to_string(out.join("results.md"))
            .unwrap()
            .contains("| scenario |")
    );
}
