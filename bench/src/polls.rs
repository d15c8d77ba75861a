//! When a git poller polls a local repository, seen with inotify: every `git fetch` or `git ls-remote` of the
//! repository lists its refs, which opens the directory `.git/refs/tags`; committing into it does not. A thread
//! blocks on the inotify descriptor and notes the instant each such open arrives.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Result};

/// The instants of the polls of one repository, from [`Polls::watch`] on.
pub struct Polls {
    seen: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<AtomicBool>,
    fd: i32,
    watch: i32,
}

impl Polls {
    /// Watches the git repository (working tree) at `repo`.
    pub fn watch(repo: &Path) -> Result<Polls> {
        let refs = CString::new(repo.join(".git/refs").as_os_str().as_bytes())?;
        // SAFETY: plain system calls on a descriptor this struct owns; `refs` outlives the call.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        if fd < 0 {
            bail!("inotify_init1: {}", std::io::Error::last_os_error());
        }
        // SAFETY: as above.
        let watch = unsafe { libc::inotify_add_watch(fd, refs.as_ptr(), libc::IN_OPEN) };
        if watch < 0 {
            let error = std::io::Error::last_os_error();
            // SAFETY: fd is ours and open.
            unsafe { libc::close(fd) };
            bail!("inotify_add_watch {}: {error}", repo.display());
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_seen, thread_stop) = (seen.clone(), stop.clone());
        std::thread::spawn(move || read_events(fd, &thread_seen, &thread_stop));
        Ok(Polls { seen, stop, fd, watch })
    }

    /// The first poll at or after `instant`.
    pub fn first_after(&self, instant: Instant) -> Option<Instant> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter().copied().find(|&t| t >= instant)
    }
}

impl Drop for Polls {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // SAFETY: removing the watch queues an IN_IGNORED event, which wakes the reading thread; it then sees
        // `stop` and closes the descriptor.
        unsafe { libc::inotify_rm_watch(self.fd, self.watch) };
    }
}

/// Reads events until `stop`; notes each open of `tags`.
fn read_events(fd: i32, seen: &Mutex<Vec<Instant>>, stop: &AtomicBool) {
    let header = std::mem::size_of::<libc::inotify_event>();
    let mut buffer = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::SeqCst) {
        // SAFETY: reading into a buffer we own, of its length.
        let n = unsafe { libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len()) };
        let now = Instant::now();
        if n <= 0 {
            break;
        }
        let mut offset = 0;
        let mut polled = false;
        while offset + header <= n as usize {
            // SAFETY: the kernel wrote whole events; read_unaligned copes with the byte buffer's alignment.
            let event: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(buffer[offset..].as_ptr().cast::<libc::inotify_event>()) };
            let name_start = offset + header;
            let name_end = (name_start + event.len as usize).min(n as usize);
            let name = &buffer[name_start..name_end];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            polled |= name == b"tags";
            offset = name_end;
        }
        if polled {
            seen.lock().unwrap_or_else(|e| e.into_inner()).push(now);
        }
    }
    // SAFETY: the descriptor is ours and no longer used.
    unsafe { libc::close(fd) };
}
