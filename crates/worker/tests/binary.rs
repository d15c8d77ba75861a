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

/// `kiln-worker create --master` takes a URL of the master's worker port and writes `HOST:PORT`, `tls` and `path`
/// (then prints the URL it will dial); a URL that contradicts `--tls` is refused and nothing is written.
#[test]
fn kiln_worker_create_takes_a_url_of_the_worker_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let create = |name: &str, master: &str, tls: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kiln-worker"));
        command.args(["create"]).arg(dir.path().join(name)).args(["--master", master]);
        command.args(["--name", "w1", "--password", "pw"]);
        if tls {
            command.arg("--tls");
        }
        command.output().expect("run kiln-worker")
    };
    let out = create("wss", "wss://ci.example.org:9443/workers", false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = std::fs::read_to_string(dir.path().join("wss/worker.toml")).expect("worker.toml");
    for line in ["master = \"ci.example.org:9443\"", "tls = true", "path = \"/workers\""] {
        assert!(config.lines().any(|l| l == line), "no line {line:?} in:\n{config}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("connects to wss://ci.example.org:9443/workers"), "{stdout}");

    let out = create("contradiction", "http://ci.example.org:9989/", true);
    assert!(!out.status.success(), "http:// with --tls was accepted");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.path().join("contradiction/worker.toml").exists(), "a refused worker.toml was written");
}
