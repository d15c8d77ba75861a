//! The shipped examples stay valid, and the schedule preview prints the seed's calendar.

use std::process::Command;

fn kiln(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .env("RUST_LOG", "warn")
        .output()
        .expect("run kiln");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_scipion_example_checks() {
    let (ok, stdout, stderr) = kiln(&["checkconfig", "examples/scipion"]);
    assert!(ok, "checkconfig failed:\n{stderr}");
    assert!(stdout.contains("OK (1 workers, 9 builders"), "{stdout}");
}

/// The builders of the devel and production schedulers: the branch's, and its matrix of plugins (by pattern).
const DEVEL: &str = "devel,scipion-em-relion-devel,scipion-em-spider-devel,scipion-em-xmipp-devel";
const PRODUCTION: &str =
    "production,scipion-em-relion-production,scipion-em-spider-production,scipion-em-xmipp-production";

#[test]
fn the_scipion_calendar_fires_on_the_seeds_days() {
    let (ok, stdout, stderr) = kiln(&["schedule-preview", "examples/scipion", "--from", "2026-11-23", "--days", "7"]);
    assert!(ok, "schedule-preview failed:\n{stderr}");
    assert_eq!(
        stdout,
        "2026-11-23T02:00:00+01:00 devel-mon-wed-fri {DEVEL}\n\
         2026-11-25T02:00:00+01:00 devel-mon-wed-fri {DEVEL}\n\
         2026-11-27T02:00:00+01:00 devel-mon-wed-fri {DEVEL}\n\
         2026-11-28T02:00:00+01:00 production-saturdays {PRODUCTION}\n\
         2026-11-29T02:00:00+01:00 support-sundays support\n"
            .replace("{DEVEL}", DEVEL)
            .replace("{PRODUCTION}", PRODUCTION)
    );
    // Across the spring change of time in Madrid the offset moves, the days stay.
    let (ok, stdout, _) = kiln(&["schedule-preview", "examples/scipion", "--from", "2026-03-28", "--days", "2"]);
    assert!(ok);
    assert_eq!(
        stdout,
        format!(
            "2026-03-28T02:00:00+01:00 production-saturdays {PRODUCTION}\n\
             2026-03-29T03:00:00+02:00 support-sundays support\n"
        )
    );
}

#[test]
fn a_bad_from_date_is_named() {
    let (ok, _, stderr) = kiln(&["schedule-preview", "examples/scipion", "--from", "23/11/2026"]);
    assert!(!ok);
    assert!(stderr.contains("--from '23/11/2026'"), "{stderr}");
}
