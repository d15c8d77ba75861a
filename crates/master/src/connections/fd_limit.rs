//! The file-descriptor limit: raised to the hard limit at start (systemd's default soft limit is 1024, its hard
//! limit far more), and the listeners' caps fitted under it, so that the two listeners together can never take
//! the descriptors the store, the logs and the pollers need.

use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};

use super::Limits;

/// Descriptors kept out of the listeners' caps (at most a quarter of the limit): the store, log files, git
/// pollers' pipes, the runtime's own.
pub const RESERVED_FDS: usize = 256;
/// The most the soft limit is raised to when the hard limit is unlimited.
const UNLIMITED_TARGET: u64 = 1 << 20;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit in force afterwards (`None` when it
/// cannot be read).
pub fn raise_fd_limit() -> Option<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    let target = if hard == RLIM_INFINITY { UNLIMITED_TARGET.max(soft) } else { hard };
    if soft < target {
        match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
            Ok(()) => {
                tracing::info!(from = soft, to = target, "raised the file-descriptor limit");
                return Some(target);
            }
            Err(e) => tracing::warn!(soft, hard, error = %e, "could not raise the file-descriptor limit"),
        }
    }
    Some(soft)
}

/// The listeners' caps as they apply under a file-descriptor limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fitted {
    pub workers: Limits,
    pub web: Limits,
    /// Whether a cap was lowered to fit.
    pub lowered: bool,
}

/// Fits the configured caps under `fd_limit`: [`RESERVED_FDS`] (at most a quarter of the limit) stay free, the
/// web port gets at most a quarter of the rest, the worker port at most what is left.
pub fn fit(fd_limit: u64, workers: Limits, web: Limits) -> Fitted {
    let limit = usize::try_from(fd_limit).unwrap_or(usize::MAX);
    let available = limit - RESERVED_FDS.min(limit / 4);
    let web_max = web.max.min((available / 4).max(1));
    let workers_max = workers.max.min(available.saturating_sub(web_max).max(1));
    let capped = |configured: Limits, max: usize| Limits { max, per_address: configured.per_address.min(max) };
    Fitted {
        workers: capped(workers, workers_max),
        web: capped(web, web_max),
        lowered: workers_max < workers.max || web_max < web.max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKERS: Limits = Limits { max: 4096, per_address: 2048 };
    const WEB: Limits = Limits { max: 512, per_address: 128 };

    #[test]
    fn the_caps_fit_under_the_limit_with_room_to_spare() {
        let fitted = fit(1024, WORKERS, WEB);
        assert!(fitted.lowered);
        assert_eq!(fitted.web, Limits { max: 192, per_address: 128 });
        assert_eq!(fitted.workers, Limits { max: 576, per_address: 576 });
        assert!(fitted.web.max + fitted.workers.max + RESERVED_FDS <= 1024);

        let roomy = fit(1 << 20, WORKERS, WEB);
        assert_eq!((roomy.workers, roomy.web, roomy.lowered), (WORKERS, WEB, false));

        let tiny = fit(16, WORKERS, WEB);
        assert!(tiny.web.max >= 1 && tiny.workers.max >= 1);
        assert!(tiny.web.max + tiny.workers.max <= 16);
    }
}
