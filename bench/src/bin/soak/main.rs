//! kiln-soak: a master SIGKILLed at random moments under a steady load with bursts (git commits the master
//! polls, `kiln sendchange`, hook POSTs, forced builds), started again each time; at the end, checks that
//! nothing accepted was lost or doubled and prints the figures. Run it through `bench/soak` (bench/README.md).

mod check;
mod load;
mod master;
mod rng;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use clap::Parser;

use check::Stored;
use master::{Binaries, Master, Repo, MAIN_BUILDER};
use rng::Rng;

#[derive(Parser)]
#[command(about = "Kills a Kiln master at random moments under load and checks that nothing accepted is lost")]
struct Args {
    /// How long the load and the kills last.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// The seed of every random choice (kill moments, pauses, bursts); default: from the clock, printed.
    #[arg(long)]
    seed: Option<u64>,
    /// The master's mean uptime between kills, in seconds (uniform in [0.05, 2 × mean)).
    #[arg(long, default_value_t = 5.0)]
    mean_uptime: f64,
    /// The longest time the master stays down after a kill, in seconds (uniform in [0, max)).
    #[arg(long, default_value_t = 1.0)]
    max_downtime: f64,
    /// How long the end may take to settle (every change built, every request complete), in seconds.
    #[arg(long, default_value_t = 900)]
    settle: u64,
    /// The `kiln` binary.
    #[arg(long)]
    kiln: PathBuf,
    /// The `kiln-worker` binary (default: beside `kiln`).
    #[arg(long)]
    kiln_worker: Option<PathBuf>,
    /// Keep the scratch directory (master, store, outputs, repository) and print where it is.
    #[arg(long)]
    keep: bool,
}

/// Exit codes: 0 when every check passed, 1 on a violation, 2 when the soak itself failed.
fn main() {
    let args = Args::parse();
    // One thread: the children's PR_SET_PDEATHSIG watches the thread that spawned them.
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(soak(args)));
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("kiln-soak failed: {e:#}");
            std::process::exit(2);
        }
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn stored(master: &Master, builder_id: i64) -> Result<Stored> {
    Ok(Stored {
        changes: master.all("changes?order=changeid", "changes").await?,
        buildsets: master.all("buildsets?order=bsid", "buildsets").await?,
        requests: master.all("buildrequests?order=buildrequestid", "buildrequests").await?,
        builds: master.all("builds?order=buildid", "builds").await?,
        builder_id,
    })
}

/// `PRAGMA integrity_check` of the stopped master's store.
async fn integrity(path: &std::path::Path) -> Result<String> {
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions as _, Connection as _};
    let mut connection = SqliteConnectOptions::new().filename(path).read_only(true).connect().await?;
    let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check").fetch_all(&mut connection).await?;
    connection.close().await?;
    Ok(rows.join("; "))
}

async fn soak(args: Args) -> Result<bool> {
    let seed = args
        .seed
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1));
    let load_at_start = load_average();
    println!(
        "kiln-soak: seed {seed} (--seed {seed} repeats it), {} s, mean uptime {} s, load average {load_at_start}",
        args.seconds, args.mean_uptime
    );
    let mut rng = Rng::new(seed);
    let kiln_worker = match args.kiln_worker.clone() {
        Some(path) => path,
        None => args.kiln.with_file_name("kiln-worker"),
    };
    let absolute = |path: &PathBuf| std::fs::canonicalize(path).with_context(|| format!("{}", path.display()));
    let bins = Binaries { kiln: absolute(&args.kiln)?, kiln_worker: absolute(&kiln_worker)? };
    let scratch = tempfile::Builder::new().prefix("kiln-soak-").tempdir().context("scratch directory")?;
    let repo = Repo::create(scratch.path()).await?;
    let mut master = Master::create(&bins, scratch.path(), &repo, 4).await?;
    let result = run(&args, &bins, &repo, &mut master, &mut rng).await;
    master.stop_worker().await;
    let _ = master.stop().await;
    if args.keep || !matches!(result, Ok(true)) {
        let kept = scratch.keep();
        println!("scratch directory kept: {}", kept.display());
    }
    result
}

async fn run(args: &Args, bins: &Binaries, repo: &Repo, master: &mut Master, rng: &mut Rng) -> Result<bool> {
    master.spawn()?;
    master.wait_ready().await?;
    let builder_id = master.get(&format!("builders/{MAIN_BUILDER}")).await?["builders"][0]["builderid"]
        .as_i64()
        .context("the main builder's id")?;
    // The poller's first poll records the heads; the commits after it are changes.
    let mirrors = master.dir.join("gitpoller");
    let first_poll = Instant::now();
    loop {
        let fetched = std::fs::read_dir(&mirrors)
            .into_iter()
            .flatten()
            .flatten()
            .any(|mirror| master::BRANCHES.iter().all(|b| mirror.path().join("refs/heads").join(b).exists()));
        if fetched {
            break;
        }
        if first_poll.elapsed() > Duration::from_secs(60) {
            bail!("the poller did not fetch both branches within 60 s\n{}", master.tail(1));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ledger = load::Shared::default();
    for branch in master::BRANCHES {
        let hash = repo.commit(branch, &format!("warm-up on {branch}")).await?;
        ledger.lock().unwrap_or_else(|e| e.into_inner()).commits.push((hash, branch));
    }
    let warm = Instant::now();
    while master.all("changes", "changes").await?.len() < master::BRANCHES.len() {
        if warm.elapsed() > Duration::from_secs(60) {
            bail!("the warm-up commits were not polled within 60 s\n{}", master.tail(1));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let load = load::Load {
        ledger: ledger.clone(),
        url: master.url.clone(),
        builder_id,
        bins: bins.clone(),
        http: reqwest::Client::builder().timeout(Duration::from_secs(20)).build()?,
        until,
    };
    let tasks = vec![
        tokio::spawn(load::commits(load.clone(), Repo { root: repo.root.clone() }, rng.fork())),
        tokio::spawn(load::sendchanges(load.clone(), rng.fork())),
        tokio::spawn(load::hooks(load.clone(), rng.fork())),
        tokio::spawn(load::forces(load.clone(), rng.fork())),
    ];

    // The kills.
    let (mut kills, mut kills_starting) = (0usize, 0usize);
    let mut restarts: Vec<Duration> = Vec::new();
    let mut next_report = started + Duration::from_secs(30);
    while Instant::now() < until {
        let uptime = Duration::from_secs_f64(rng.between(0.05, 2.0 * args.mean_uptime));
        tokio::time::sleep_until((Instant::now() + uptime).min(until).into()).await;
        if Instant::now() >= until {
            break;
        }
        master.kill().await?;
        kills += 1;
        tokio::time::sleep(Duration::from_secs_f64(rng.between(0.0, args.max_downtime))).await;
        // Sometimes killed again while starting, before its API answers.
        loop {
            let spawned = Instant::now();
            master.spawn()?;
            if rng.chance(0.1) {
                let early = Duration::from_secs_f64(rng.between(0.0, 0.3));
                if tokio::time::timeout(early, master.wait_ready()).await.is_err() {
                    master.kill().await?;
                    kills += 1;
                    kills_starting += 1;
                    continue;
                }
            } else {
                master.wait_ready().await?;
            }
            restarts.push(spawned.elapsed());
            break;
        }
        if !master.worker_alive() {
            bail!("the worker died");
        }
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(30);
            let l = ledger.lock().unwrap_or_else(|e| e.into_inner());
            println!(
                "  {:>4} s: {kills} kills; {} commits, {} changes sent, {} forced; load average {}",
                started.elapsed().as_secs(),
                l.commits.len(),
                l.sent.len(),
                l.forced.len(),
                load_average()
            );
        }
    }
    for task in tasks {
        task.await.context("a load task panicked")??;
    }
    let load_at_end = load_average();

    // Settle: every commit polled, every change built, every request complete.
    let settling = Instant::now();
    let ledger = std::mem::take(&mut *ledger.lock().unwrap_or_else(|e| e.into_inner()));
    let stored = loop {
        let stored = stored(master, builder_id).await?;
        if check::settled(&ledger, &stored) {
            break stored;
        }
        if settling.elapsed() > Duration::from_secs(args.settle) {
            println!("did not settle within {} s: checking what there is", args.settle);
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let settle_time = settling.elapsed();
    let clean_stop = master.stop().await?;
    let integrity = integrity(&master.dir.join("state.sqlite")).await?;

    let verdict = check::check(&ledger, &stored);
    restarts.sort();
    println!("kiln-soak: seed {seed}", seed = args.seed.map_or("(clock)".into(), |s| s.to_string()));
    println!("  load average at the end of the load {load_at_end}, after settling {}", load_average());
    println!(
        "  kills: {kills} ({kills_starting} while starting) in {} s; restarts to API answering: p50 {:.3} s, \
         max {:.3} s ({} restarts)",
        args.seconds,
        percentile(&restarts, 0.5).as_secs_f64(),
        restarts.last().copied().unwrap_or_default().as_secs_f64(),
        restarts.len()
    );
    println!("  bursts (commits, sendchange, hooks, forces): {:?}", ledger.bursts);
    for line in &verdict.lines {
        println!("  {line}");
    }
    println!("  settled {:.1} s after the load; clean stop at the end: {clean_stop}", settle_time.as_secs_f64());
    println!("  PRAGMA integrity_check: {integrity}");
    let mut violations = verdict.violations;
    if integrity != "ok" {
        violations.push(format!("integrity_check: {integrity}"));
    }
    if violations.is_empty() {
        println!("kiln-soak: OK");
        Ok(true)
    } else {
        println!("kiln-soak: {} VIOLATIONS", violations.len());
        for v in violations.iter().take(50) {
            println!("  - {v}");
        }
        Ok(false)
    }
}
