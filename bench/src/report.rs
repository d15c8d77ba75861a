//! The results: one [`Row`] per metric, printed as a table and written as JSON.

use serde_json::{json, Value};

/// Which way a metric is better.
#[derive(Debug, Clone, Copy)]
pub enum Better {
    /// A rate (builds/s, MB/s).
    Higher,
    /// A time, a size.
    Lower,
}

/// What a metric must reach.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    None,
    /// Kiln at least this many times better than Buildbot.
    Ratio(f64),
    /// Kiln's figure at least this.
    AtLeast(f64),
    /// Kiln's figure at most this.
    AtMost(f64),
}

#[derive(Debug, Clone)]
pub struct Row {
    pub workload: &'static str,
    pub metric: String,
    pub unit: &'static str,
    pub better: Better,
    pub kiln: Option<f64>,
    pub buildbot: Option<f64>,
    pub target: Target,
}

impl Row {
    /// How many times better Kiln is (> 1 is better, for rates and times alike).
    pub fn ratio(&self) -> Option<f64> {
        let (kiln, buildbot) = (self.kiln?, self.buildbot?);
        let ratio = match self.better {
            Better::Higher => kiln / buildbot,
            Better::Lower => buildbot / kiln,
        };
        ratio.is_finite().then_some(ratio)
    }

    pub fn target_text(&self) -> Option<String> {
        match self.target {
            Target::None => None,
            Target::Ratio(r) => Some(format!("≥ {}× Buildbot", fmt(r))),
            Target::AtLeast(v) => Some(format!("≥ {} {}", fmt(v), self.unit)),
            Target::AtMost(v) => Some(format!("≤ {} {}", fmt(v), self.unit)),
        }
    }

    /// Whether the target is met; `None` without a target or a figure.
    pub fn met(&self) -> Option<bool> {
        match self.target {
            Target::None => None,
            Target::Ratio(r) => Some(self.ratio()? >= r),
            Target::AtLeast(v) => Some(self.kiln? >= v),
            Target::AtMost(v) => Some(self.kiln? <= v),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "workload": self.workload,
            "metric": self.metric,
            "unit": self.unit,
            "kiln": self.kiln,
            "buildbot": self.buildbot,
            "ratio": self.ratio(),
            "target": self.target_text(),
        })
    }
}

/// A figure with 3 significant digits (at least), without exponent.
pub fn fmt(v: f64) -> String {
    let abs = v.abs();
    if abs >= 100.0 || v == v.trunc() && abs < 1e15 {
        format!("{v:.0}")
    } else if abs >= 10.0 {
        format!("{v:.1}")
    } else if abs >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

pub fn table(rows: &[Row]) -> String {
    let figure = |v: Option<f64>| v.map(fmt).unwrap_or_else(|| "–".into());
    let mut lines = vec![[
        "workload".to_owned(),
        "metric".into(),
        "unit".into(),
        "kiln".into(),
        "buildbot".into(),
        "ratio".into(),
        "target".into(),
    ]];
    for row in rows {
        let status = match row.met() {
            Some(true) => "ok",
            Some(false) => "MISSED",
            None if row.target_text().is_some() => "n/a",
            None => "",
        };
        let target = row.target_text().map(|t| format!("{t} {status}")).unwrap_or_default();
        let ratio = row.ratio().map(|r| format!("{}×", fmt(r))).unwrap_or_else(|| "–".into());
        lines.push([
            row.workload.to_owned(),
            row.metric.clone(),
            row.unit.to_owned(),
            figure(row.kiln),
            figure(row.buildbot),
            ratio,
            target,
        ]);
    }
    let mut widths = [0; 7];
    for line in &lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                let pad = " ".repeat(w - cell.chars().count());
                // Figures right-aligned, text left-aligned.
                if (3..=5).contains(&i) {
                    format!("{pad}{cell}")
                } else {
                    format!("{cell}{pad}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
