//! Process limits botvisor sets for itself at start.
//!
//! Every bot needs file descriptors for its connections to Telegram and the
//! store, and the status endpoint for its clients; the usual soft limit of
//! 1,024 is a default from another era, while the hard limit (set by the
//! administrator, or systemd's `LimitNOFILE`) is what the system allows.
//! [`raise_fd_limit`] takes the soft limit up to the hard one. It only asks
//! the kernel; it never fails the start. [`keep_environment_private`] makes
//! the process non-dumpable once it runs programs of its own.

/// Raises the soft limit on open file descriptors (`RLIMIT_NOFILE`) to the
/// hard limit. Returns the soft limit in force afterwards (the old one when
/// it could not be raised, `None` when it cannot even be read).
///
/// Call it once at start, before any bot opens a connection.
pub fn raise_fd_limit() -> Option<libc::rlim_t> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a valid pointer to a
    // local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "cannot read the file descriptor limit"
        );
        return None;
    }
    let before = limit.rlim_cur;
    if before >= limit.rlim_max {
        return Some(before);
    }
    let wanted = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads one `rlimit` through a valid pointer to a
    // local.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const wanted) } != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            soft = before,
            hard = limit.rlim_max,
            "cannot raise the file descriptor limit; keeping the soft one"
        );
        return Some(before);
    }
    tracing::debug!(
        from = before,
        to = limit.rlim_max,
        "file descriptor limit raised to the hard limit"
    );
    Some(limit.rlim_max)
}

/// Makes botvisor non-dumpable: its `/proc/<pid>/environ` and memory become
/// readable by root alone, so a process bot's program, which runs as the
/// same user, cannot read the tokens from its parent (on Heroku they are in
/// the environment). It also means no core dump and no debugger attached
/// by the same user. Called before the first program starts.
pub fn keep_environment_private() {
    // SAFETY: prctl with PR_SET_DUMPABLE takes plain integers.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "cannot make botvisor non-dumpable; a process bot's program could read botvisor's environment"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> (libc::rlim_t, libc::rlim_t) {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as in `raise_fd_limit`.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) },
            0
        );
        (limit.rlim_cur, limit.rlim_max)
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let (soft, hard) = limits();
        // Lower the soft limit first (always allowed), so the test shows a
        // raise whatever limit it started with; to half the hard one, not
        // lower, so the tests running beside it keep their descriptors.
        let lowered = libc::rlimit {
            rlim_cur: soft.min(hard / 2),
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads a valid local.
        assert_eq!(
            unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lowered) },
            0
        );
        assert_eq!(raise_fd_limit(), Some(hard));
        assert_eq!(limits(), (hard, hard));
    }
}
