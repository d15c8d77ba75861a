//! The screenshots of docs/ui.md, taken in a real headless Chromium (the browser tests' harness) on a real
//! `kiln start` master with a real worker that ran a few builds, one failing and one still running. Not a test:
//! it writes `docs/images/*.png` (1280×800) and is run by hand when the pages change:
//!
//!     cargo test -p kiln --test screenshots -- --ignored

mod support;

use std::path::PathBuf;

use support::browser::Browser;
use support::buildbot::WorkerKind;
use support::kiln::{toml_str, KilnMaster};

/// The viewport of every screenshot.
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 800;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/images/*.png: run by hand (`-- --ignored`) when the pages change"]
async fn screenshots_for_the_docs() {
    let Some(browser) = Browser::start().await else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let go = dir.path().join("go");
    let compile = "[[builder.step]]\nname = \"compile\"\ncommand = [\"sh\", \"-c\", \"for f in main parse eval; do echo \\\"cc -c $f.c\\\"; done; printf '\\\\033[32mcompiled 3 files\\\\033[0m\\\\n'\"]\n";
    let test = "[[builder.step]]\nname = \"test\"\ncommand = [\"sh\", \"-c\", \"echo 'running 12 tests'; echo 'test parse ... ok'; echo 'test eval ... FAILED' >&2; exit 1\"]\n";
    let slow = format!(
        "[[builder.step]]\nname = \"package\"\ncommand = [\"sh\", \"-c\", {}]\n",
        toml_str(format!("echo packaging; while [ ! -e '{}' ]; do sleep 0.1; done", go.display()))
    );
    let mut master = KilnMaster::builder()
        .worker("linux-1", "pw")
        .builder("app-linux", &format!("tags = [\"app\", \"linux\"]\n{compile}"))
        .builder("app-tests", &format!("tags = [\"app\"]\n{compile}{test}"))
        .builder("app-package", &format!("tags = [\"app\"]\n{compile}{slow}"))
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "linux-1").await;
    master.wait_worker_connected("linux-1").await;
    for builder in ["app-linux", "app-tests", "app-linux"] {
        let brid = master.force(builder).await;
        master.wait_request_complete(brid).await;
    }
    let running = master.force("app-package").await;
    master.wait_builds_of_request(running, 1).await;

    browser.client().set_window_size(WIDTH, HEIGHT).await.expect("window size");
    let base = master.url().trim_end_matches('/').to_string();
    let images = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/images");
    std::fs::create_dir_all(&images).expect("docs/images");
    let shots = [
        ("home", "/", "document.querySelector('h1') !== null"),
        ("builder", "/builders/app-tests", "document.querySelector('table.builds') !== null"),
        ("build", "/builders/app-tests/builds/1", "document.querySelector('li.step.failure') !== null"),
        (
            "log",
            "/builders/app-tests/builds/1/steps/test/logs/stdio",
            "document.querySelectorAll('#log .rows .l').length > 2",
        ),
        ("waterfall", "/waterfall", "document.querySelector('svg.waterfall') !== null"),
    ];
    for (name, path, ready) in shots {
        browser.goto(&format!("{base}{path}")).await;
        browser.wait_until(&format!("{path} ready"), &format!("document.readyState === 'complete' && {ready}")).await;
        let png = browser.client().screenshot().await.unwrap_or_else(|e| panic!("screenshot of {path}: {e}"));
        let file = images.join(format!("{name}.png"));
        std::fs::write(&file, png).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        eprintln!("wrote {}", file.display());
    }
    std::fs::write(&go, "").expect("end the running build");
    master.wait_request_complete(running).await;
    browser.close().await;
}
