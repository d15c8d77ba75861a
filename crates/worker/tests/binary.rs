//! The worker-only binary has the worker's commands and writes the same directory as `kiln worker create`.

use std::process::Command;

#[test]
fn kiln_worker_creates_a_worker_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let worker = dir.path().join("w");
    let out = Command::new(env!("CARGO_BIN_EXE_kiln-worker"))
        .args(["create"])
        .arg(&worker)
        .args(["--master", "127.0.0.1:9989", "--name", "w1", "--password", "pw"])
        .output()
        .expect("run kiln-worker");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = std::fs::read_to_string(worker.join("worker.toml")).expect("worker.toml");
    assert!(config.contains("name = \"w1\""), "{config}");
    assert!(worker.join("info/admin").exists());

    let out = Command::new(env!("CARGO_BIN_EXE_kiln-worker")).args(["start"]).arg(dir.path().join("none")).output();
    let out = out.expect("run kiln-worker");
    assert!(!out.status.success(), "start without a worker directory fails");
    assert!(String::from_utf8_lossy(&out.stderr).contains("worker.toml"), "{}", String::from_utf8_lossy(&out.stderr));
}
