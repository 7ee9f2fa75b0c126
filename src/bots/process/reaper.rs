//! The reaper: a small process botvisor puts between itself and a process
//! bot's program (`botvisor __reap <botvisor's pid> <program> <args…>`), so
//! that the program's whole process group dies with botvisor.
//!
//! `PR_SET_PDEATHSIG` reaches only botvisor's direct child, and a program
//! started through `npm start`, `poetry run` or `sh -c` has children of its
//! own that a kill -9 of botvisor would leave running. The reaper leads the
//! process group and runs the program in it. It asks the kernel for
//! SIGUSR1 when botvisor dies; then it sends SIGTERM to the group, waits a
//! few seconds, and sends SIGKILL to the group, itself included. Otherwise
//! it only waits: botvisor's own SIGTERM reaches the group, program and
//! reaper alike, and the reaper ends as the program ends, with its exit
//! status (or the signal that killed it), so botvisor sees the program's.
//!
//! It is synchronous and tiny: no runtime, no logging, nothing that could
//! hold a token; every signal it cares about is blocked and taken with
//! `sigwait`.

use std::ffi::OsString;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

/// The argument that makes `botvisor` the reaper.
pub const ARG: &str = "__reap";
/// How long the program's group has to stop after botvisor died.
const ORPHAN_GRACE: Duration = Duration::from_secs(5);

/// The signals the reaper takes with `sigwait` (blocked in it, unblocked
/// in the program).
const SIGNALS: [i32; 5] = [
    libc::SIGUSR1,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGCHLD,
];

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        for signal in SIGNALS {
            libc::sigaddset(&raw mut set, signal);
        }
        set
    }
}

/// Runs as the reaper with `args` (what follows [`ARG`]): botvisor's pid,
/// the program, its arguments. Returns only through the exit code.
pub fn run(args: Vec<OsString>) -> ExitCode {
    let mut args = args.into_iter();
    let parent = args
        .next()
        .and_then(|p| p.to_str().and_then(|p| p.parse::<i32>().ok()));
    let (Some(parent), Some(program)) = (parent, args.next()) else {
        return ExitCode::from(2);
    };
    let set = signal_set();
    // SAFETY: blocking signals for this (only) thread, then asking for one
    // at botvisor's death, then checking botvisor did not die before.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut());
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGUSR1);
        if libc::getppid() != parent {
            return ExitCode::from(1);
        }
    }
    let mut command = Command::new(&program);
    command.args(args);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(|| {
            let empty = {
                let mut empty: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&raw mut empty);
                empty
            };
            libc::pthread_sigmask(libc::SIG_SETMASK, &raw const empty, std::ptr::null_mut());
            Ok(())
        });
    }
    let child = match command.spawn() {
        Ok(child) => child,
        Err(err) => {
            // Reaches botvisor's log through the program's stderr pipe.
            eprintln!("botvisor could not start the program: {err}");
            return ExitCode::from(127);
        }
    };
    let pid = i32::try_from(child.id()).unwrap_or(0);
    let mut orphaned: Option<Instant> = None;
    loop {
        let signal = match orphaned {
            None => wait_signal(&set, None),
            Some(since) => wait_signal(&set, Some(ORPHAN_GRACE.saturating_sub(since.elapsed()))),
        };
        if let Some(status) = reap(pid) {
            if orphaned.is_some() {
                // Whatever the program left in the group goes too.
                // SAFETY: kill(0, …) signals this process's own group.
                unsafe { libc::kill(0, libc::SIGKILL) };
            }
            exit_like(status);
        }
        match signal {
            Some(libc::SIGUSR1) if orphaned.is_none() => {
                // botvisor is gone: the whole group follows it.
                orphaned = Some(Instant::now());
                // SAFETY: kill(0, …) signals this process's own group.
                unsafe { libc::kill(0, libc::SIGTERM) };
            }
            None if orphaned.is_some() => {
                // The grace is over.
                // SAFETY: as above; this ends the reaper too.
                unsafe { libc::kill(0, libc::SIGKILL) };
            }
            // botvisor's own stop reaches the program directly; SIGCHLD was
            // looked at above.
            _ => {}
        }
    }
}

/// Waits for one of `set`, at most `timeout` (for ever without one); the
/// signal, or `None` when the time is up.
fn wait_signal(set: &libc::sigset_t, timeout: Option<Duration>) -> Option<i32> {
    // SAFETY: sigwaitinfo/sigtimedwait read a valid set and write into a
    // local siginfo.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let signal = match timeout {
            None => libc::sigwaitinfo(set, &raw mut info),
            Some(timeout) => {
                let spec = libc::timespec {
                    tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(0),
                    tv_nsec: libc::c_long::from(timeout.subsec_nanos()),
                };
                libc::sigtimedwait(set, &raw mut info, &raw const spec)
            }
        };
        (signal > 0).then_some(signal)
    }
}

/// The program's wait status, once it has ended.
fn reap(pid: i32) -> Option<i32> {
    let mut status = 0;
    // SAFETY: waitpid on our own child, writing into a local.
    let done = unsafe { libc::waitpid(pid, &raw mut status, libc::WNOHANG) };
    (done == pid).then_some(status)
}

/// Ends the reaper as the program ended: with its exit code, or killed by
/// the same signal.
fn exit_like(status: i32) -> ! {
    if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        // SAFETY: back to the default action for the signal, unblocked,
        // then raised: the reaper dies of it as the program did.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&raw mut set);
            libc::sigaddset(&raw mut set, signal);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &raw const set, std::ptr::null_mut());
            libc::raise(signal);
        }
    }
    std::process::exit(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        1
    })
}
