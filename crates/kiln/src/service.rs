//! Running under systemd: readiness and stopping notices (`sd_notify`, for `Type=notify` units), and the unit
//! files `kiln systemd-unit` prints (`contrib/systemd/`, with this machine's paths filled in).

use std::path::Path;

use anyhow::{bail, Context};

/// The master's unit: `@KILN@` the binary, `@DIR@` the master's directory, `@USER@` the account it runs as.
const MASTER_UNIT: &str = include_str!("../../../contrib/systemd/kiln-master.service");
/// The worker's unit, with the same placeholders (`@DIR@` the worker's directory).
const WORKER_UNIT: &str = include_str!("../../../contrib/systemd/kiln-worker.service");

/// Tells systemd (the service manager whose socket `$NOTIFY_SOCKET` names) the service's `state`, e.g.
/// `READY=1` or `STOPPING=1`. Without `$NOTIFY_SOCKET` (not started by systemd as `Type=notify`) it does nothing.
/// A failure is logged, never fatal: the service runs on.
pub fn notify(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else { return };
    if let Err(e) = send(&socket, state) {
        tracing::warn!(error = %e, socket = ?socket, "telling systemd {state} failed");
    }
}

fn send(socket: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let bytes = socket.as_bytes();
    let address = match bytes.strip_prefix(b"@") {
        // An abstract socket (Linux).
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        }
        None => SocketAddr::from_pathname(Path::new(socket))?,
    };
    let datagram = UnixDatagram::unbound()?;
    datagram.send_to_addr(state.as_bytes(), &address)?;
    Ok(())
}

/// The unit file of `kind` (`master` or `worker`) for the directory `dir`, run as `user`, with this `kiln`.
pub fn unit(kind: &str, dir: &Path, user: &str) -> anyhow::Result<String> {
    let template = match kind {
        "master" => MASTER_UNIT,
        "worker" => WORKER_UNIT,
        other => bail!("no unit for '{other}': say master or worker"),
    };
    let dir = std::path::absolute(dir).with_context(|| format!("the absolute path of {}", dir.display()))?;
    let kiln = std::env::current_exe().context("the path of this kiln binary")?;
    for (what, path) in [("directory", &dir), ("kiln binary", &kiln)] {
        let text = path.to_string_lossy();
        if text.contains(char::is_whitespace) || text.contains('%') {
            bail!("the {what} path {text:?} has a space or a '%': systemd would need it quoted; use another path");
        }
    }
    if user.is_empty() || !user.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
        bail!("'{user}' is not a user name systemd takes");
    }
    Ok(template
        .replace("@KILN@", &kiln.to_string_lossy())
        .replace("@DIR@", &dir.to_string_lossy())
        .replace("@USER@", user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_reaches_the_notify_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let receiver = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
        send(path.as_os_str(), "READY=1").expect("send");
        let mut buffer = [0u8; 64];
        let n = receiver.recv(&mut buffer).expect("recv");
        assert_eq!(&buffer[..n], b"READY=1");
    }

    #[test]
    fn units_get_the_paths_and_refuse_what_systemd_cannot_take() {
        let master = unit("master", Path::new("/var/lib/kiln/master"), "kiln").expect("unit");
        assert!(master.contains("ExecStart=") && master.contains(" start /var/lib/kiln/master\n"), "{master}");
        assert!(master.contains("User=kiln\n"), "{master}");
        assert!(["@DIR@", "@KILN@", "@USER@"].iter().all(|p| !master.contains(p)), "{master}");
        assert!(unit("worker", Path::new("/var/lib/kiln/worker"), "kiln").is_ok());
        assert!(unit("master", Path::new("/a dir"), "kiln").is_err());
        assert!(unit("master", Path::new("/d"), "a b").is_err());
        assert!(unit("queue", Path::new("/d"), "kiln").is_err());
    }
}
