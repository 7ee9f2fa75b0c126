//! One `botvisor` process under measurement: the release binary started
//! with a config written into its own temporary folder and a clean
//! environment, its log lines collected, its memory and CPU time read from
//! `/proc`, and signals sent to it. Dropping a `Daemon` kills the process.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The longest anything in a scenario may take; it only catches hangs.
pub const LIMIT: Duration = Duration::from_secs(120);

pub struct Daemon {
    child: Child,
    pid: i32,
    /// Taken just before the process was spawned.
    pub spawned: Instant,
    config: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
    new_line: Arc<Notify>,
    readers: Vec<JoinHandle<()>>,
    exit: Arc<Mutex<Option<Instant>>>,
    dir: tempfile::TempDir,
}

impl Daemon {
    /// Writes `config` as `supervisor.toml` into a new temporary folder
    /// (where the default SQLite store then lives too) and starts
    /// `botvisor --config` on it with only `env` in its environment: the
    /// binary cargo built for this bench, or the one `BOTVISOR_BENCH_BIN`
    /// names (to compare builds).
    pub fn start(config: &str, env: &[(String, String)]) -> Daemon {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("supervisor.toml");
        std::fs::write(&path, config).expect("write the config");
        let binary = std::env::var_os("BOTVISOR_BENCH_BIN")
            .unwrap_or_else(|| OsString::from(env!("CARGO_BIN_EXE_botvisor")));
        let mut command = Command::new(binary);
        command
            .arg("--config")
            .arg(&path)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let spawned = Instant::now();
        let mut child = command.spawn().expect("start botvisor");
        let pid = i32::try_from(child.id().expect("a running child")).expect("a pid");
        let exit = watch_exit(pid);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let new_line = Arc::new(Notify::new());
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let readers = vec![
            collect(stdout, lines.clone(), new_line.clone()),
            collect(stderr, lines.clone(), new_line.clone()),
        ];
        Daemon {
            child,
            pid,
            spawned,
            config: path,
            lines,
            new_line,
            readers,
            exit,
            dir,
        }
    }

    /// The config file, to change before a SIGHUP.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The config's folder: the store's, and the one process bots run in.
    pub fn folder(&self) -> &Path {
        self.dir.path()
    }

    /// The process id, to read `/proc/PID/status` from another thread.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// A field of `/proc/PID/status` given in kB, in bytes.
    fn status_bytes(&self, field: &str) -> u64 {
        status_bytes(self.pid, field)
    }

    /// Resident memory now (`VmRSS` of `/proc/PID/status`), in bytes.
    pub fn rss(&self) -> u64 {
        self.status_bytes("VmRSS")
    }

    /// The file-backed part of [`rss`](Self::rss) (`RssFile`): pages of
    /// the binary and the shared libraries, which the kernel can drop and
    /// read again, unlike the heap and the stacks (`RssAnon`).
    pub fn rss_file(&self) -> u64 {
        self.status_bytes("RssFile")
    }

    /// CPU time used so far, user plus system, all threads (`utime` +
    /// `stime` of `/proc/PID/stat`; clock-tick resolution, 10 ms).
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .expect("read /proc/PID/stat");
        // The command name may hold spaces; the fields after it do not.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .expect("a stat line")
            .1
            .split_whitespace()
            .collect();
        // Fields 14 and 15 of proc(5); `fields[0]` is field 3.
        let ticks: u64 =
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Duration::from_secs_f64(ticks as f64 / per_second as f64)
    }

    /// CPU time of each live thread (`/proc/PID/task/TID/schedstat`, in
    /// nanoseconds).
    fn thread_times(&self) -> HashMap<String, u64> {
        let mut times = HashMap::new();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) else {
            return times;
        };
        for task in tasks.flatten() {
            // A thread may end between the listing and the read.
            if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat"))
                && let Some(ns) = text.split_whitespace().next().and_then(|n| n.parse().ok())
            {
                times.insert(task.file_name().to_string_lossy().into_owned(), ns);
            }
        }
        times
    }

    /// CPU seconds per minute used over an idle `window` (scaled to a
    /// minute). The per-thread times are read to the nanosecond, but lose
    /// a thread that ends within the window; `/proc/PID/stat` keeps every
    /// thread's time but counts in 10 ms ticks. The fine reading is used
    /// unless the coarse one shows it missed something.
    pub async fn idle_cpu_per_minute(&self, window: Duration) -> f64 {
        let (coarse, fine) = (self.cpu_time(), self.thread_times());
        tokio::time::sleep(window).await;
        let coarse = self.cpu_time().saturating_sub(coarse);
        let fine = Duration::from_nanos(
            self.thread_times()
                .iter()
                .map(|(tid, ns)| ns.saturating_sub(fine.get(tid).copied().unwrap_or(0)))
                .sum(),
        );
        let used = if coarse > fine + Duration::from_millis(20) {
            coarse
        } else {
            fine
        };
        used.as_secs_f64() * 60.0 / window.as_secs_f64()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the child this handle spawned and still owns.
        let sent = unsafe { libc::kill(self.pid, signal) };
        assert_eq!(sent, 0, "kill({}, {signal})", self.pid);
    }

    /// Sends SIGTERM, waits for a clean exit (status 0) and returns how
    /// long it took and the instant it exited.
    pub async fn terminate(&mut self) -> (Duration, Instant) {
        let sent = Instant::now();
        self.signal(libc::SIGTERM);
        let status = tokio::time::timeout(LIMIT, self.child.wait())
            .await
            .expect("botvisor exits")
            .expect("wait for botvisor");
        let reaped = Instant::now();
        // The exit as the watching thread saw it, unless it lost the race
        // with tokio's reaping.
        let exited = self
            .exit
            .lock()
            .expect("exit")
            .map_or(reaped, |seen| seen.min(reaped));
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(LIMIT, reader).await;
        }
        assert!(
            status.success(),
            "botvisor exited with {status}; its output:\n{}",
            self.output()
        );
        (exited - sent, exited)
    }

    /// Every line printed so far, stdout and stderr.
    pub fn output(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }

    /// The printed lines that report an error (level ERROR, or a panic).
    pub fn errors(&self) -> Vec<String> {
        self.lines
            .lock()
            .expect("lines")
            .iter()
            .filter(|l| l.contains(" ERROR ") || l.contains("panicked"))
            .cloned()
            .collect()
    }

    /// Fails the run if botvisor logged an error.
    pub fn assert_no_errors(&self) {
        let errors = self.errors();
        assert!(
            errors.is_empty(),
            "botvisor logged errors:\n{}",
            errors.join("\n")
        );
    }

    /// Waits until `n` printed lines contain `needle`.
    pub async fn wait_for_lines(&self, needle: &str, n: usize) {
        let found = tokio::time::timeout(LIMIT, async {
            loop {
                let notified = self.new_line.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let count = self
                    .lines
                    .lock()
                    .expect("lines")
                    .iter()
                    .filter(|l| l.contains(needle))
                    .count();
                if count >= n {
                    return;
                }
                notified.await;
            }
        })
        .await;
        assert!(
            found.is_ok(),
            "botvisor did not print {n} lines with {needle:?}; its output:\n{}",
            self.output()
        );
    }
}

/// A field of `/proc/PID/status` given in kB, in bytes.
pub fn status_bytes(pid: i32, field: &str) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/PID/status"));
    kb * 1024
}

/// Reads a pipe line by line into `lines` (so botvisor never blocks on a
/// full pipe), waking waiters at each line.
pub fn collect(
    pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    lines: Arc<Mutex<Vec<String>>>,
    new_line: Arc<Notify>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut reader = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            lines.lock().expect("lines").push(line);
            new_line.notify_waiters();
        }
    })
}

/// Notes the instant process `pid` (a child of ours) exits, from a thread
/// of its own blocked in `waitid` with `WNOWAIT` (the child stays for
/// tokio to reap): the bench's runtime may be busy when tokio reaps it
/// (say, with 500 long polls ending at the fake), which would add its
/// delay to a shutdown time.
fn watch_exit(pid: i32) -> Arc<Mutex<Option<Instant>>> {
    let exit = Arc::new(Mutex::new(None));
    let seen = exit.clone();
    std::thread::spawn(move || {
        loop {
            // SAFETY: a zeroed siginfo_t is valid; waitid only writes it.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: waitid(2) on our own child, with a valid out-pointer.
            let rc = unsafe {
                libc::waitid(
                    libc::P_PID,
                    pid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOWAIT,
                )
            };
            if rc == 0 {
                *seen.lock().expect("exit") = Some(Instant::now());
                return;
            }
            if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return;
            }
        }
    });
    exit
}
