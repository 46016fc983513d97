//! The result table: printed, and written as JSON and Markdown.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: String,
    pub n: u64,
    pub metric: String,
    pub ours: f64,
    /// The automerge-repo reference, where the scenario has one.
    pub reference: Option<f64>,
}

impl Row {
    pub fn new(scenario: &str, n: usize, metric: &str, ours: f64, reference: Option<f64>) -> Self {
        Self {
            scenario: scenario.into(),
            n: n as u64,
            metric: metric.into(),
            ours,
            reference,
        }
    }

    /// reference / ours: above 1 means we need less (time, bytes, frames, memory).
    pub fn ratio(&self) -> Option<f64> {
        self.reference
            .filter(|_| self.ours > 0.0)
            .map(|r| r / self.ours)
    }
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        let s = format!("{}", v as i64);
        // thousands separators
        let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
        let mut out = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        format!("{sign}{out}")
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

pub fn markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "| scenario | N | metric | Lotse | automerge-repo | ratio (ref / Lotse) |\n|---|---:|---|---:|---:|---:|\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            r.scenario,
            num(r.n as f64),
            r.metric,
            num(r.ours),
            r.reference.map_or("–".into(), num),
            r.ratio().map_or("–".into(), |x| format!("{x:.1}×")),
        );
    }
    s
}

pub fn write(out: &Path, rows: &[Row], header: &str) -> Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(rows)?,
    )?;
    std::fs::write(
        out.join("results.md"),
        format!("{header}\n\n{}", markdown(rows)),
    )?;
    Ok(())
}
