//! A listener whose process has no file descriptor left: `accept` fails at once every time it is tried, and
//! must back off rather than spin, then take the waiting connection once descriptors are back.
//!
//! Alone in its test binary: it lowers the process's own RLIMIT_NOFILE, which no other test may see.

use std::time::Duration;

use kiln_master::connections::Acceptor;
use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// The lowest descriptor number not in use (the kernel gives a new file the lowest): with the soft limit
/// there, no new descriptor can be made.
fn lowest_free_fd() -> u64 {
    use std::os::fd::AsRawFd;
    let probe = std::fs::File::open("/dev/null").expect("open /dev/null");
    u64::try_from(probe.as_raw_fd()).expect("a descriptor is not negative")
}

#[tokio::test(start_paused = true)]
async fn accept_backs_off_while_no_descriptor_is_left_and_then_accepts() {
    // If accept spun instead, the paused clock would never move and this test would hang: a watchdog ends it.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(120));
        eprintln!("accept did not back off: the paused clock never advanced");
        std::process::exit(101);
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let _client = std::net::TcpStream::connect(address).expect("connect: the kernel queues it");
    let mut acceptor = Acceptor::new(listener, "test");
    let failures = acceptor.failures();

    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, lowest_free_fd(), hard).expect("lower the limit");
    let started = tokio::time::Instant::now();
    let accept = acceptor.accept();
    tokio::pin!(accept);
    while failures.get() < 10 {
        tokio::select! {
            _ = &mut accept => panic!("accepted without a descriptor"),
            () = tokio::time::sleep(Duration::from_millis(1)) => {}
        }
    }
    let waited = started.elapsed();
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).expect("restore the limit");

    // Ten failures are nine waits of 5 ms doubling up to 1 s: 2.275 s of the (paused) clock.
    assert!(waited >= Duration::from_millis(2_275), "10 failed accepts in {waited:?}: no backoff");
    let (_, peer) =
        tokio::time::timeout(Duration::from_secs(5), accept).await.expect("accepted once descriptors are back");
    assert_eq!(peer.ip(), address.ip());
}
