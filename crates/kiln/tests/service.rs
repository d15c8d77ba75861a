//! Running under systemd: `kiln start` tells the service manager when it is ready and when it stops
//! (`$NOTIFY_SOCKET`, as for a `Type=notify` unit), and the units `kiln systemd-unit` prints pass
//! `systemd-analyze verify` where it is installed.
//!
//!     cargo test -p kiln --test service

mod support;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use support::kiln::{kiln_bin, run_kiln, show, KilnMaster};
use support::process::free_ports;

/// The next notice on `socket`, within a bounded wait.
async fn notice(socket: &UnixDatagram) -> String {
    let socket = socket.try_clone().expect("clone the socket");
    tokio::task::spawn_blocking(move || {
        socket.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
        let mut buffer = [0u8; 256];
        let n = socket.recv(&mut buffer).expect("a notice within a minute");
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    })
    .await
    .expect("join")
}

#[tokio::test]
async fn kiln_start_tells_systemd_it_is_ready_and_then_that_it_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (worker_port, web_port) = free_ports();
    let toml = KilnMaster::builder()
        .worker("w", "pw")
        .builder("b", "[[builder.step]]\ncommand = \"true\"\n")
        .master_toml(worker_port, web_port);
    std::fs::write(dir.path().join("master.toml"), toml).expect("write master.toml");
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    let mut master = tokio::process::Command::new(kiln_bin())
        .args(["start", &dir.path().display().to_string()])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("run kiln start");
    assert_eq!(notice(&socket).await, "READY=1");
    // Ready means serving: the API answers.
    let api = reqwest::get(format!("http://127.0.0.1:{web_port}/api/v2/builders")).await.expect("GET builders");
    assert!(api.status().is_success());
    let pid = nix::unistd::Pid::from_raw(master.id().expect("pid") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    assert_eq!(notice(&socket).await, "STOPPING=1");
    let status = tokio::time::timeout(Duration::from_secs(60), master.wait()).await.expect("exits").expect("status");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn the_printed_units_pass_systemd_analyze() {
    let dir = tempfile::tempdir().expect("tempdir");
    for kind in ["master", "worker"] {
        let output =
            run_kiln(&["systemd-unit", kind, "/var/lib/kiln/x", "--user", "kiln"], Duration::from_secs(30)).await;
        assert!(output.status.success(), "{}", show(&output));
        let unit = dir.path().join(format!("kiln-{kind}.service"));
        std::fs::write(&unit, &output.stdout).expect("write the unit");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains(&format!("{} ", kiln_bin())) && text.contains("/var/lib/kiln/x"), "{text}");
        if std::path::Path::new("/usr/bin/systemd-analyze").exists() {
            let verify = std::process::Command::new("systemd-analyze").arg("verify").arg(&unit).output().expect("run");
            assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
        }
    }
}
