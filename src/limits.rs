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
    let limit = match nofile() {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot read the file descriptor limit");
            return None;
        }
    };
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
        let limit = nofile().expect("the limit can be read");
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

/// Descriptors botvisor keeps for itself whatever the bots: the store, the
/// status listener and its clients, the gateway, logging.
const DESCRIPTORS_RESERVED: u64 = 128;

/// Descriptors one bot needs at most while idle: its long poll's
/// connection (its lease shares one open file with every other bot's).
const DESCRIPTORS_PER_BOT: u64 = 1;

/// Descriptors a process bot adds: its program's pipes, its connection to
/// the gateway and the gateway's end of it.
const DESCRIPTORS_PER_PROGRAM: u64 = 4;

/// The descriptors `bots` enabled bots, `programs` of them process bots,
/// need (an estimate from what each holds while idle).
pub fn descriptors_needed(bots: usize, programs: usize) -> u64 {
    let bots = u64::try_from(bots).unwrap_or(u64::MAX);
    let programs = u64::try_from(programs).unwrap_or(u64::MAX);
    DESCRIPTORS_RESERVED
        .saturating_add(bots.saturating_mul(DESCRIPTORS_PER_BOT))
        .saturating_add(programs.saturating_mul(DESCRIPTORS_PER_PROGRAM))
}

/// The hard limit on open descriptors: what [`raise_fd_limit`] takes the
/// soft one up to. `None` when it cannot be read or is unlimited.
pub fn descriptor_hard_limit() -> Option<u64> {
    nofile()
        .ok()
        .map(|limit| limit.rlim_max)
        .filter(|hard| *hard != libc::RLIM_INFINITY)
}

/// The process's `RLIMIT_NOFILE`, soft and hard.
fn nofile() -> std::io::Result<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a valid pointer to a
    // local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(limit)
}

/// A sentence for `check` and the start when `needed` descriptors exceed
/// `hard`, the most the process may open.
pub fn descriptor_warning(needed: u64, hard: Option<u64>) -> Option<String> {
    let hard = hard?;
    (needed > hard).then(|| {
        format!(
            "the enabled bots need about {needed} file descriptors, and this process may open \
             at most {hard} (`ulimit -Hn`; systemd's LimitNOFILE): some bots will not reach \
             Telegram, and say so in their state; raise the hard limit"
        )
    })
}

/// True when `err` or one of its causes is "too many open files", the
/// process's limit (EMFILE) or the system's (ENFILE).
pub fn out_of_descriptors(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(io.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
        {
            return true;
        }
        cause = err.source();
    }
    false
}

#[cfg(test)]
mod descriptor_tests {
    use super::*;

    #[test]
    fn the_need_grows_with_the_bots_and_is_told_past_the_limit() {
        assert_eq!(descriptors_needed(0, 0), DESCRIPTORS_RESERVED);
        assert_eq!(descriptors_needed(10_000, 0), 10_128);
        assert_eq!(descriptors_needed(10, 10), 128 + 10 + 40);
        assert!(descriptor_warning(10_128, Some(20_000)).is_none());
        assert!(descriptor_warning(10_128, None).is_none());
        let warning = descriptor_warning(20_128, Some(20_000)).expect("too many");
        assert!(
            warning.contains("about 20128 file descriptors"),
            "{warning}"
        );
        assert!(warning.contains("at most 20000"), "{warning}");
    }

    #[test]
    fn running_out_of_descriptors_is_recognised_through_causes() {
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("error sending request")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let emfile = Wrapper(std::io::Error::from_raw_os_error(libc::EMFILE));
        assert!(out_of_descriptors(&emfile));
        let refused = Wrapper(std::io::Error::from_raw_os_error(libc::ECONNREFUSED));
        assert!(!out_of_descriptors(&refused));
    }
}
