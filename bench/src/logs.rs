//! Workload 2, log throughput: one build printing 50 MB of 100-byte lines, one printing 5 MB of 2-byte lines
//! (5 MB and 0.5 MB in quick mode), one after the other on the same master. For each: MB/s and lines/s from
//! submitting the build to its request completing, the master's peak RSS during the build and how far it rose
//! over its RSS before, and how much the store (SQLite file + WAL) grew.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};

use crate::measure;
use crate::report::{Better, Row, Target};
use crate::systems::{Builder, Kind, System};
use crate::{figures, Env};

const WORKLOAD: &str = "2 log throughput";

/// A log to print: `lines` lines of `width` bytes (newline included).
#[derive(Clone, Copy)]
struct Variant {
    builder: &'static str,
    width: usize,
    lines: usize,
}

impl Variant {
    fn bytes(self) -> usize {
        self.width * self.lines
    }

    fn builder_def(self) -> Builder {
        let line = "x".repeat(self.width - 1);
        Builder::new(self.builder, &[("print", &format!("yes {line} | head -n {}", self.lines))])
    }

    fn label(self) -> String {
        format!("{} MB of {}-byte lines", self.bytes() as f64 / 1e6, self.width)
    }
}

#[derive(Default, Clone, Copy)]
struct Figures {
    mb_per_s: f64,
    lines_per_s: f64,
    peak_mib: f64,
    growth_mib: f64,
    store_mb: f64,
}

pub async fn run(env: &Env) -> Vec<Row> {
    let scale = if env.quick { 10 } else { 1 };
    let variants = [
        Variant { builder: "lines100", width: 100, lines: 500_000 / scale },
        Variant { builder: "lines2", width: 2, lines: 2_500_000 / scale },
    ];
    let mut per_kind = Vec::new();
    for kind in [Kind::Kiln, Kind::Buildbot] {
        per_kind.push(figures(WORKLOAD, kind, measure_all(env, kind, &variants).await));
    }
    let mut rows = Vec::new();
    for (i, variant) in variants.into_iter().enumerate() {
        let get = |k: usize, f: fn(&Figures) -> f64| per_kind[k].as_ref().map(|all| f(&all[i]));
        let label = variant.label();
        let mut row = |metric: &str, unit: &'static str, better: Better, target: Target, f: fn(&Figures) -> f64| {
            rows.push(Row {
                workload: WORKLOAD,
                metric: format!("{label}: {metric}"),
                unit,
                better,
                kiln: get(0, f),
                buildbot: get(1, f),
                target,
            })
        };
        let (mb_target, lines_target) = match variant.width {
            100 => (Target::AtLeast(200.0), Target::None),
            _ => (Target::None, Target::AtLeast(2e6)),
        };
        row("throughput", "MB/s", Better::Higher, mb_target, |f| f.mb_per_s);
        row("throughput", "lines/s", Better::Higher, lines_target, |f| f.lines_per_s);
        row("master peak RSS", "MiB", Better::Lower, Target::None, |f| f.peak_mib);
        // "Memory does not grow with log size": the peak during the build stays within 16 MiB of the RSS before.
        row("master RSS growth", "MiB", Better::Lower, Target::AtMost(16.0), |f| f.growth_mib);
        row("store growth", "MB", Better::Lower, Target::None, |f| f.store_mb);
    }
    rows
}

async fn measure_all(env: &Env, kind: Kind, variants: &[Variant]) -> Result<Vec<Figures>> {
    let builders: Vec<Builder> = variants.iter().map(|v| v.builder_def()).collect();
    let mut system = System::start(env, kind, &builders).await?;
    let mut all = Vec::new();
    for &variant in variants {
        all.push(measure(env, &mut system, variant).await?);
    }
    Ok(all)
}

async fn measure(env: &Env, system: &mut System, variant: Variant) -> Result<Figures> {
    let pid = system.master_pid().context("no master")?;
    let builder_id = system.builder_id(variant.builder).await?;
    let store_before = measure::store_bytes(&system.store_path());
    let rss_before = measure::rss_mib(pid).context("no VmRSS")?;
    let reset = measure::reset_peak(pid);
    let mut sampled_peak = rss_before;
    let worker = system.worker_pid().context("no worker")?;
    let cpu = |pid| measure::cpu_seconds(pid).unwrap_or(0.0);
    let cpu_before = (cpu(pid), cpu(worker));

    let started = Instant::now();
    let brid = system.force(variant.builder, builder_id).await?;
    let timeout = Duration::from_secs(if env.quick { 180 } else { 900 });
    system
        .poll(&format!("the build printing {}", variant.label()), timeout, async |s: &System| {
            sampled_peak = sampled_peak.max(measure::rss_mib(pid).unwrap_or(0.0));
            let request = s.get_one(&format!("buildrequests/{brid}")).await?;
            Ok(request["complete"].as_bool().unwrap_or(false).then_some(()))
        })
        .await?;
    let elapsed = started.elapsed().as_secs_f64();
    // With the peak reset, VmHWM is the true peak of the build; without, it may be the start-up's.
    let peak = if reset { measure::peak_mib(pid).unwrap_or(sampled_peak).max(sampled_peak) } else { sampled_peak };
    let store_after = measure::store_bytes(&system.store_path());
    let (master_cpu, worker_cpu) = (cpu(pid) - cpu_before.0, cpu(worker) - cpu_before.1);

    let build = system.build_of(brid).await?;
    ensure!(build["results"].as_i64() == Some(0), "the build did not succeed: {build}\n{}", system.diagnostics());
    let lines = stdio_lines(system, build["buildid"].as_i64().context("no buildid")?).await?;
    ensure!(lines >= variant.lines as i64, "the log has {lines} lines, expected {} or more", variant.lines);

    let figures = Figures {
        mb_per_s: variant.bytes() as f64 / 1e6 / elapsed,
        lines_per_s: variant.lines as f64 / elapsed,
        peak_mib: peak,
        growth_mib: peak - rss_before,
        store_mb: store_after.saturating_sub(store_before) as f64 / 1e6,
    };
    println!(
        "  {:?}: {} in {elapsed:.2} s; master RSS {rss_before:.1} → peak {peak:.1} MiB{}; store +{:.1} MB; CPU: master {master_cpu:.2} s, worker {worker_cpu:.2} s",
        system.kind,
        variant.label(),
        if reset { "" } else { " (sampled)" },
        figures.store_mb
    );
    Ok(figures)
}

/// `num_lines` of the stdio log of the step `print` of a build.
async fn stdio_lines(system: &System, build_id: i64) -> Result<i64> {
    let step = system.get_one(&format!("builds/{build_id}/steps/print")).await?;
    let logs = system.get(&format!("steps/{}/logs", step["stepid"])).await?;
    let stdio =
        logs["logs"].as_array().and_then(|l| l.iter().find(|l| l["slug"] == "stdio")).context("no stdio log")?;
    stdio["num_lines"].as_i64().context("no num_lines")
}
