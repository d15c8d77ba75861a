//! The master's worker port with real workers (the Kiln worker library, in this process) over real sockets on
//! 127.0.0.1: TLS, and a worker that connects twice.

use std::path::Path;
use std::time::Duration;

use kiln_master::master::Master;

const WAIT: Duration = Duration::from_secs(30);

/// A master directory with one worker account and one builder, its worker port on 127.0.0.1.
fn master_dir(dir: &Path, tls: bool) {
    let tls_keys = if tls { "tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n" } else { "" };
    let config = format!(
        "[store]\nurl = \"sqlite:state.sqlite\"\n\n[worker_listener]\naddress = \"127.0.0.1:0\"\n{tls_keys}\n\
         [web]\naddress = \"127.0.0.1:0\"\n\n[[worker]]\nname = \"w1\"\npassword = \"pw\"\n\n\
         [[builder]]\nname = \"b\"\nworkers = [\"w1\"]\n\n  [[builder.step]]\n  command = \"true\"\n"
    );
    std::fs::write(dir.join("master.toml"), config).expect("write master.toml");
}

/// Starts a Kiln worker for `w1` in this process; returns its stop token.
fn start_worker(
    master: std::net::SocketAddr,
    dir: &Path,
    ca_file: Option<&Path>,
) -> (kiln_worker::CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let new = kiln_worker::NewWorker {
        master: master.to_string(),
        name: "w1".into(),
        password: "pw".into(),
        tls: ca_file.is_some(),
        ca_file: ca_file.map(Path::to_path_buf),
        admin: "test".into(),
        host: "test".into(),
    };
    kiln_worker::create(dir, &new).expect("create worker");
    let mut config = kiln_worker::WorkerConfig::load(dir).expect("load worker");
    config.max_retry_delay = 0.5;
    let stop = kiln_worker::CancellationToken::new();
    (stop.clone(), tokio::spawn(kiln_worker::run(config, stop)))
}

async fn wait_connected(master: &Master, name: &str) -> std::sync::Arc<kiln_master::workers::WorkerConnection> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(conn) = master.workers().connected(name) {
            return conn;
        }
        assert!(tokio::time::Instant::now() < deadline, "worker {name} did not attach within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_worker_attaches_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .signed_by(&key, &rcgen::Issuer::from_params(&ca_params, &ca_key))
        .expect("leaf");
    std::fs::write(dir.path().join("cert.pem"), leaf.pem()).expect("cert");
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).expect("key");
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("ca");
    master_dir(dir.path(), true);
    let (master, addresses) = Master::start(dir.path()).await.expect("master starts");

    let (stop, worker) = start_worker(addresses.workers, &dir.path().join("worker"), Some(&dir.path().join("ca.pem")));
    let conn = wait_connected(&master, "w1").await;
    assert_eq!(conn.info.admin(), Some("test"));
    conn.ping(WAIT).await.expect("the worker answers over TLS");
    stop.cancel();
    worker.await.expect("worker task").expect("worker ends cleanly");
    master.shutdown(false).await;
}

#[tokio::test]
async fn a_second_connection_is_refused_while_the_first_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    master_dir(dir.path(), false);
    let (master, addresses) = Master::start(dir.path()).await.expect("master starts");
    let mut events = master.workers().subscribe();
    let (first_stop, first) = start_worker(addresses.workers, &dir.path().join("first"), None);
    let first_conn = wait_connected(&master, "w1").await;
    assert_eq!(
        tokio::time::timeout(WAIT, events.recv()).await.expect("an event").expect("event"),
        kiln_master::workers::WorkerEvent::Connected("w1".into())
    );

    // The same name again: the first connection still answers, so the second is turned away (it keeps
    // retrying, and keeps being turned away).
    let (second_stop, second) = start_worker(addresses.workers, &dir.path().join("second"), None);
    let refused_for = Duration::from_secs(3);
    let outcome = tokio::time::timeout(refused_for, events.recv()).await;
    assert!(outcome.is_err(), "no worker event while the first connection is alive: {outcome:?}");
    let current = master.workers().connected("w1").expect("still connected");
    assert!(std::sync::Arc::ptr_eq(&current, &first_conn), "the first connection is kept");
    assert!(current.info.basedir.ends_with("first"), "{}", current.info.basedir);

    // When the first worker goes, the second one takes the name over.
    first_stop.cancel();
    first.await.expect("worker task").expect("first worker ends");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(conn) = master.workers().connected("w1") {
            if conn.info.basedir.ends_with("second") {
                break;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "the second worker never took over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    second_stop.cancel();
    second.await.expect("worker task").expect("second worker ends");
    master.shutdown(false).await;
}

/// Starts a Kiln worker `name` with `password` in this process; returns its stop token.
fn start_named_worker(
    master: std::net::SocketAddr,
    dir: &Path,
    name: &str,
    password: &str,
) -> (kiln_worker::CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let new = kiln_worker::NewWorker {
        master: master.to_string(),
        name: name.into(),
        password: password.into(),
        tls: false,
        ca_file: None,
        admin: "test".into(),
        host: "test".into(),
    };
    kiln_worker::create(dir, &new).expect("create worker");
    let mut config = kiln_worker::WorkerConfig::load(dir).expect("load worker");
    config.max_retry_delay = 0.5;
    let stop = kiln_worker::CancellationToken::new();
    (stop.clone(), tokio::spawn(kiln_worker::run(config, stop)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_passwords_may_be_argon2_hashes_or_secrets() {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let dir = tempfile::tempdir().expect("tempdir");
    // A cheap hash (the cost is in the hash itself), so that the test is quick in a debug build.
    let params = argon2::Params::new(8, 1, 1, None).expect("params");
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::from_b64("c2FsdHNhbHRzYWx0").expect("salt");
    let hash = argon.hash_password(b"hashed-pw", &salt).expect("hash").to_string();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).expect("secrets dir");
    std::fs::write(secrets.join("w2pw"), "w2-secret-pw\n").expect("write the secret");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(secrets.join("w2pw"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let config = format!(
        "[store]\nurl = \"sqlite:state.sqlite\"\n\n[worker_listener]\naddress = \"127.0.0.1:0\"\n\n\
         [web]\naddress = \"127.0.0.1:0\"\n\n[[secret_provider]]\ntype = \"dir\"\npath = \"secrets\"\n\n\
         [[worker]]\nname = \"w1\"\npassword_hash = \"{hash}\"\n\n\
         [[worker]]\nname = \"w2\"\npassword = \"%(secret:w2pw)s\"\n\n\
         [[builder]]\nname = \"b\"\nworkers = [\"w1\", \"w2\"]\n\n  [[builder.step]]\n  command = \"true\"\n"
    );
    std::fs::write(dir.path().join("master.toml"), config).expect("write master.toml");
    let (master, addresses) = Master::start(dir.path()).await.expect("master starts");
    let (stop1, worker1) = start_named_worker(addresses.workers, &dir.path().join("w1"), "w1", "hashed-pw");
    let (stop2, worker2) = start_named_worker(addresses.workers, &dir.path().join("w2"), "w2", "w2-secret-pw");
    wait_connected(&master, "w1").await.ping(WAIT).await.expect("w1 answers");
    wait_connected(&master, "w2").await.ping(WAIT).await.expect("w2 answers");
    assert!(master.workers().address("w1").is_some_and(|a| a.ip().is_loopback()));
    for (stop, worker) in [(stop1, worker1), (stop2, worker2)] {
        stop.cancel();
        worker.await.expect("worker task").expect("worker ends cleanly");
    }
    master.shutdown(false).await;
}

/// A CA's certificate and the means to sign with it.
struct Authority {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pem: String,
}

impl Authority {
    fn new() -> Authority {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key).expect("CA").pem();
        Authority { params, key, pem }
    }

    /// A certificate with common name `cn` (and `names` as its subject alternative names) and its key, PEM.
    fn sign(&self, cn: &str, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let cert = params.signed_by(&key, &rcgen::Issuer::from_params(&self.params, &self.key)).expect("signed");
        (cert.pem(), key.serialize_pem())
    }
}

/// One WebSocket handshake with the worker port over TLS (trusting `ca`), as worker `name` with a client
/// certificate or none: `Ok` once the master accepted it, else why not.
async fn handshake(
    port: std::net::SocketAddr,
    ca: &str,
    client: Option<&(String, String)>,
    name: &str,
) -> Result<(), String> {
    use base64::Engine;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA");
    }
    let builder =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = rustls_pemfile::certs(&mut cert.as_bytes()).collect::<Result<Vec<_>, _>>().expect("PEM");
            let key = rustls_pemfile::private_key(&mut key.as_bytes()).expect("PEM").expect("a key");
            builder.with_client_auth_cert(chain, key).expect("client certificate")
        }
    };
    let tcp = tokio::net::TcpStream::connect(port).await.map_err(|e| e.to_string())?;
    let server = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let stream = tls.connect(server, tcp).await.map_err(|e| format!("TLS: {e}"))?;
    let mut request = format!("wss://{port}/").into_client_request().expect("request");
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{name}:pw"));
    let header = format!("Basic {credentials}").parse().expect("header");
    request.headers_mut().insert("authorization", header);
    // TLS 1.3 reports a refused client certificate with the first read after the handshake: here.
    match tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, stream)).await {
        Err(_) => Err("no answer".to_string()),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => Err(format!("HTTP {}", response.status())),
        Ok(Err(e)) => Err(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_need_a_client_certificate_of_the_ca_for_their_own_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (servers, clients, strangers) = (Authority::new(), Authority::new(), Authority::new());
    let (cert, key) = servers.sign("master", &["127.0.0.1"]);
    std::fs::write(dir.path().join("cert.pem"), cert).expect("cert");
    std::fs::write(dir.path().join("key.pem"), key).expect("key");
    std::fs::write(dir.path().join("workers-ca.pem"), &clients.pem).expect("client CA");
    let config = "[store]\nurl = \"sqlite:state.sqlite\"\n\n[worker_listener]\naddress = \"127.0.0.1:0\"\n\
         tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\ntls_client_ca = \"workers-ca.pem\"\n\n\
         [web]\naddress = \"127.0.0.1:0\"\n\n[[worker]]\nname = \"w1\"\npassword = \"pw\"\n\n\
         [[worker]]\nname = \"w2\"\npassword = \"pw\"\n\n\
         [[builder]]\nname = \"b\"\nworkers = [\"w1\"]\n\n  [[builder.step]]\n  command = \"true\"\n";
    std::fs::write(dir.path().join("master.toml"), config).expect("write master.toml");
    let (master, addresses) = Master::start(dir.path()).await.expect("master starts");
    let port = addresses.workers;

    let none = handshake(port, &servers.pem, None, "w1").await;
    assert!(none.is_err(), "no client certificate: {none:?}");
    let wrong_ca = handshake(port, &servers.pem, Some(&strangers.sign("w1", &[])), "w1").await;
    assert!(wrong_ca.is_err(), "a certificate of another CA: {wrong_ca:?}");
    let other_name = handshake(port, &servers.pem, Some(&clients.sign("w2", &[])), "w1").await;
    assert_eq!(other_name, Err("HTTP 403 Forbidden".to_string()), "w2's certificate used by w1");
    assert!(master.workers().connected("w1").is_none() && master.workers().connected("w2").is_none());
    let by_san = handshake(port, &servers.pem, Some(&clients.sign("someone", &["w2"])), "w2").await;
    assert_eq!(by_san, Ok(()), "the worker's name as a subject alternative name");

    // The Kiln worker with its certificate in worker.toml attaches and builds.
    let worker_dir = dir.path().join("worker");
    let new = kiln_worker::NewWorker {
        master: port.to_string(),
        name: "w1".into(),
        password: "pw".into(),
        tls: true,
        ca_file: Some(dir.path().join("master-ca.pem")),
        admin: "test".into(),
        host: "test".into(),
    };
    std::fs::write(dir.path().join("master-ca.pem"), &servers.pem).expect("master CA");
    kiln_worker::create(&worker_dir, &new).expect("create worker");
    let (cert, key) = clients.sign("w1", &[]);
    std::fs::write(worker_dir.join("w1.pem"), cert).expect("worker cert");
    std::fs::write(worker_dir.join("w1.key"), key).expect("worker key");
    let toml = std::fs::read_to_string(worker_dir.join("worker.toml")).expect("worker.toml");
    std::fs::write(worker_dir.join("worker.toml"), format!("{toml}tls_cert = \"w1.pem\"\ntls_key = \"w1.key\"\n"))
        .expect("worker.toml");
    let mut config = kiln_worker::WorkerConfig::load(&worker_dir).expect("load worker");
    config.max_retry_delay = 0.5;
    let stop = kiln_worker::CancellationToken::new();
    let worker = tokio::spawn(kiln_worker::run(config, stop.clone()));
    wait_connected(&master, "w1").await;
    let mut events = master.store().events().subscribe();
    let submitted = master.force("force-b", None, &serde_json::Map::new()).await.expect("force");
    let bsid = submitted.buildsetid;
    let done = tokio::time::timeout(
        WAIT,
        events.recv_where(|e| matches!(e, kiln_master::events::Event::BuildsetCompleted { bsid: b, .. } if *b == bsid)),
    )
    .await
    .expect("the build ends")
    .expect("events not lagged")
    .expect("the bus is open");
    assert!(matches!(done.event, kiln_master::events::Event::BuildsetCompleted { results: 0, .. }), "{:?}", done.event);
    stop.cancel();
    worker.await.expect("worker task").expect("worker ends cleanly");
    master.shutdown(false).await;
}
