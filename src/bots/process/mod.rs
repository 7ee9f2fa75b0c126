//! The `process` kind: a bot that is a program of its own (written with
//! python-telegram-bot, aiogram, grammY, teloxide…), run as a child
//! process that speaks the Bot API to botvisor's gateway.
//!
//! The child starts with its bot's first session and outlives sessions
//! that end for botvisor's own reasons (an outage of the Bot API, the
//! store): its long poll simply waits. It is stopped when its bot stops,
//! parks or loses its lease: SIGTERM to its process group, then SIGKILL at
//! the grace's end. When it exits by itself, the bot's restart policy
//! applies, up to parking. It never sees the real token: its environment
//! is botvisor's own, less every secret botvisor reads, plus `BOT_TOKEN`
//! (the gateway's local token) and `BOT_API_URL`. It dies with botvisor
//! (`PR_SET_PDEATHSIG`), even at a kill -9.
//!
//! Its stdout and stderr go into botvisor's log line by line under the
//! bot's name: redacted, control characters escaped, each line cut at
//! [`LINE_CHARS`], at most [`LINES_PER_SECOND`] lines a second (the rest
//! counted and summed up in one line), read through a fixed buffer so a
//! child printing without end costs neither memory nor the other bots.

pub mod reaper;

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;
use tracing::{Instrument, error, info, warn};

use crate::config::{Config, Environment, ProcessSettings};
use crate::gateway::Gateway;
use crate::secret::Token;
use crate::status::ProcessFigures;

/// The `botvisor` binary, when it can be the reaper ([`reaper`]) between
/// botvisor and each program; set by `main`. Without it (botvisor used as
/// a library) programs are started directly.
static REAPER: OnceLock<PathBuf> = OnceLock::new();

/// Starts every program through `binary __reap …` from now on.
pub fn use_reaper(binary: PathBuf) {
    let _ = REAPER.set(binary);
}

/// A line of the child's output is cut here, in characters.
pub const LINE_CHARS: usize = 2_000;
/// Lines of a child's output logged per second, on average.
pub const LINES_PER_SECOND: u32 = 100;
/// Lines logged at once after a quiet spell.
const LINE_BURST: u32 = 500;
/// The shortest time between two lines about dropped output.
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);
/// Bytes read from a pipe at once.
const READ_BUFFER: usize = 64 << 10;
/// How long a child killed with SIGKILL may take to be reaped.
const REAP_WAIT: Duration = Duration::from_secs(5);

/// What every process bot's child is given besides its own settings: the
/// gateway to talk to and the environment to inherit.
#[derive(Clone, Debug)]
pub struct ProcessHost {
    pub gateway: Gateway,
    pub env: ChildEnv,
}

/// botvisor's own environment less every secret it reads: each bot's
/// token variable, the store's URL, any variable whose value holds a bot's
/// token or anything shaped like one; and less what belongs to botvisor
/// alone (systemd's notification socket and passed descriptors).
#[derive(Clone, Default)]
pub struct ChildEnv {
    vars: Arc<Vec<(OsString, OsString)>>,
}

impl std::fmt::Debug for ChildEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildEnv")
            .field("vars", &self.vars.len())
            .finish()
    }
}

/// Variables of botvisor's that a child must not inherit, whatever their
/// value.
const NOT_INHERITED: &[&str] = &[
    "NOTIFY_SOCKET",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
];

impl ChildEnv {
    /// The process's environment, less the secrets `config` names and
    /// every variable holding a token of `env`'s.
    pub fn from_process(config: &Config, env: &Environment) -> ChildEnv {
        ChildEnv::filtered(std::env::vars_os(), config, env)
    }

    fn filtered(
        vars: impl Iterator<Item = (OsString, OsString)>,
        config: &Config,
        env: &Environment,
    ) -> ChildEnv {
        let mut secret_names: Vec<&str> = config
            .bots
            .iter()
            .map(|bot| bot.token_env.as_str())
            .filter(|name| !name.is_empty())
            .collect();
        secret_names.push(&config.supervisor.store_env);
        secret_names.extend(NOT_INHERITED);
        let mut tokens: Vec<String> = config
            .bots
            .iter()
            .filter_map(|bot| env.token_of(bot).ok())
            .map(|token| token.expose().to_owned())
            .filter(|token| token.len() >= 8)
            .collect();
        // The store's URL under any other name (Heroku sets the same URL
        // as HEROKU_POSTGRESQL_<COLOR>_URL), by its password.
        let store_urls = [
            env.var(&config.supervisor.store_env),
            Some(config.supervisor.store.clone()),
        ];
        for url in store_urls.into_iter().flatten() {
            if let Ok(parsed) = url::Url::parse(&url)
                && let Some(password) = parsed.password()
                && password.len() >= 6
            {
                tokens.push(password.to_owned());
            }
        }
        let kept = vars
            .filter(|(name, value)| {
                let named = name
                    .to_str()
                    .is_some_and(|name| secret_names.contains(&name));
                let value = value.to_string_lossy();
                let holds_token = tokens.iter().any(|token| value.contains(token.as_str()))
                    || crate::secret::looks_like_token(&value);
                !named && !holds_token
            })
            .collect();
        ChildEnv {
            vars: Arc::new(kept),
        }
    }

    /// Whether variable `name` is passed on.
    pub fn has(&self, name: &str) -> bool {
        self.vars.iter().any(|(n, _)| n == name)
    }
}

/// A process bot's program and the child running it, if one runs.
pub struct Process {
    settings: ProcessSettings,
    child: Mutex<Option<Running>>,
    /// Whether this worker's spool folder was swept (once, before the
    /// first child).
    swept: std::sync::atomic::AtomicBool,
}

struct Running {
    pid: u32,
    started: Instant,
    /// Set once the child has ended: how.
    exited: watch::Receiver<Option<String>>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("program", &self.settings.command.first())
            .finish_non_exhaustive()
    }
}

/// Why a child could not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SpawnError(String);

impl Process {
    pub fn new(settings: &ProcessSettings) -> Process {
        Process {
            settings: settings.clone(),
            child: Mutex::new(None),
            swept: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// True the first time it is asked: the spool may be swept now.
    pub fn first_start(&self) -> bool {
        !self.swept.swap(true, std::sync::atomic::Ordering::SeqCst)
    }

    /// The running child's pid and how long it has run.
    pub fn running(&self) -> Option<(u32, Duration)> {
        let child = lock(&self.child);
        child
            .as_ref()
            .filter(|running| running.exited.borrow().is_none())
            .map(|running| (running.pid, running.started.elapsed()))
    }

    /// How the child ended, once, if it did; it is forgotten then.
    pub fn take_exit(&self) -> Option<String> {
        let mut child = lock(&self.child);
        let ended = child.as_ref()?.exited.borrow().clone()?;
        *child = None;
        Some(ended)
    }

    /// Resolves when the running child ends (never while none runs).
    pub async fn ended(&self) {
        let exited = lock(&self.child).as_ref().map(|r| r.exited.clone());
        match exited {
            Some(mut exited) => {
                let _ = exited.wait_for(Option::is_some).await;
            }
            None => std::future::pending().await,
        }
    }

    /// Starts the program with `token` and `url` for the gateway; its pid.
    /// Its output is logged in the current span (the bot's).
    ///
    /// # Errors
    /// When the program cannot be found or started.
    pub fn start(
        &self,
        env: &ChildEnv,
        token: &Token,
        url: &str,
        figures: &Arc<ProcessFigures>,
    ) -> Result<u32, SpawnError> {
        let mut slot = lock(&self.child);
        let settings = &self.settings;
        let Some(program) = settings.command.first() else {
            return Err(SpawnError("the command names no program".to_owned()));
        };
        let path_var = settings.env.get("PATH").map(OsString::from).or_else(|| {
            env.vars
                .iter()
                .find(|(name, _)| name == "PATH")
                .map(|(_, value)| value.clone())
        });
        let program = crate::config::process::find_program(
            program,
            &settings.workdir,
            path_var.as_ref().and_then(|p| p.to_str()),
        )
        .map_err(SpawnError)?;
        let mut command = match REAPER.get() {
            Some(reaper) => {
                let mut command = tokio::process::Command::new(reaper);
                command
                    .arg(reaper::ARG)
                    .arg(std::process::id().to_string())
                    .arg(&program);
                command
            }
            None => tokio::process::Command::new(&program),
        };
        command
            .args(settings.command.iter().skip(1))
            .current_dir(&settings.workdir)
            .env_clear()
            .envs(env.vars.iter().map(|(k, v)| (k, v)))
            .envs(&settings.env)
            .env("BOT_TOKEN", token.expose())
            .env("BOT_API_URL", url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let parent = std::process::id();
        // SAFETY: only async-signal-safe calls (prctl, getppid, _exit)
        // run between fork and exec.
        unsafe {
            command.pre_exec(move || {
                // The child dies with botvisor, even at a kill -9.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // botvisor died before the line above: nothing would kill it.
                if u32::try_from(libc::getppid()).ok() != Some(parent) {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|err| {
            SpawnError(format!(
                "could not start {}: {err}",
                crate::sanitize::excerpt(&program.display().to_string(), 200)
            ))
        })?;
        let pid = child.id().unwrap_or(0);
        let pump = Arc::new(Mutex::new(Pump::new()));
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(pump_lines(stdout, "stdout", pump.clone()).in_current_span());
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(pump_lines(stderr, "stderr", pump).in_current_span());
        }
        let (tx, exited) = watch::channel(None);
        let figures = figures.clone();
        figures.set_reaped(REAPER.get().is_some());
        figures.set_pid(Some(pid));
        tokio::spawn(
            async move {
                let ended = match child.wait().await {
                    Ok(status) => describe_exit(status),
                    Err(err) => format!("could not be waited for: {err}"),
                };
                figures.set_pid(None);
                // The rest of its process group (what it started and left
                // behind) goes with it. The group keeps its id while any
                // member lives, and pids are not reused this soon.
                kill_group(pid, libc::SIGKILL);
                tx.send_replace(Some(ended));
            }
            .in_current_span(),
        );
        info!(
            pid,
            program = %crate::sanitize::excerpt(&program.display().to_string(), 200),
            "started the bot's program"
        );
        *slot = Some(Running {
            pid,
            started: Instant::now(),
            exited,
        });
        Ok(pid)
    }

    /// Stops the running child: SIGTERM to its process group, then, if it
    /// has not ended within `grace`, SIGKILL.
    pub async fn stop(&self, grace: Duration) {
        let running = lock(&self.child)
            .as_ref()
            .map(|running| (running.pid, running.exited.clone()));
        let Some((pid, mut exited)) = running else {
            return;
        };
        if exited.borrow().is_none() {
            kill_group(pid, libc::SIGTERM);
            let timed_out = tokio::time::timeout(grace, exited.wait_for(Option::is_some))
                .await
                .is_err();
            if timed_out {
                warn!(
                    pid,
                    grace = %crate::status::short(grace),
                    "the bot's program did not stop after SIGTERM; killing it"
                );
                kill_group(pid, libc::SIGKILL);
                if tokio::time::timeout(REAP_WAIT, exited.wait_for(Option::is_some))
                    .await
                    .is_err()
                {
                    error!(pid, "the bot's program did not end after SIGKILL");
                }
            }
        }
        let ended = exited.borrow().clone();
        if let Some(ended) = ended {
            info!(pid, "the bot's program stopped: it {ended}");
        }
        *lock(&self.child) = None;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends `signal` to the process group `pid` leads.
fn kill_group(pid: u32, signal: i32) {
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    if pid > 1 {
        // SAFETY: kill has no memory effects; a group that is gone is ESRCH.
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}

/// How a child ended, for a reason: `exited with status 1`, `was killed by
/// signal 9 (SIGKILL)`.
pub fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    match status.signal() {
        Some(signal) => {
            let name = match signal {
                libc::SIGKILL => " (SIGKILL)",
                libc::SIGTERM => " (SIGTERM)",
                libc::SIGSEGV => " (SIGSEGV)",
                libc::SIGABRT => " (SIGABRT)",
                libc::SIGINT => " (SIGINT)",
                _ => "",
            };
            format!("was killed by signal {signal}{name}")
        }
        None => "ended".to_owned(),
    }
}

/// How many of a child's lines may be logged: a token bucket, and the
/// lines dropped since the last line about them.
struct Pump {
    tokens: f64,
    last: Instant,
    dropped: u64,
    dropped_logged: Option<Instant>,
}

impl Pump {
    fn new() -> Pump {
        Pump {
            tokens: f64::from(LINE_BURST),
            last: Instant::now(),
            dropped: 0,
            dropped_logged: None,
        }
    }

    /// Whether one more line may be logged now.
    fn admit(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * f64::from(LINES_PER_SECOND);
        self.tokens = (self.tokens + refill).min(f64::from(LINE_BURST));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    /// The count of lines dropped, when it is time to say so.
    fn dropped_due(&mut self, at_end: bool) -> Option<u64> {
        let due = self
            .dropped_logged
            .is_none_or(|at| at.elapsed() >= DROP_LOG_EVERY);
        (self.dropped > 0 && (due || at_end)).then(|| {
            self.dropped_logged = Some(Instant::now());
            std::mem::take(&mut self.dropped)
        })
    }
}

/// Logs `reader`'s lines until it ends.
async fn pump_lines(
    mut reader: impl AsyncRead + Unpin,
    stream: &'static str,
    pump: Arc<Mutex<Pump>>,
) {
    let mut buffer = vec![0u8; READ_BUFFER];
    // The line being read, at most a line's worth of bytes.
    let mut line: Vec<u8> = Vec::new();
    let mut overlong = false;
    let max_bytes = LINE_CHARS * 4;
    loop {
        let read = match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let mut rest = &buffer[..read];
        while !rest.is_empty() {
            match memchr::memchr(b'\n', rest) {
                Some(end) => {
                    if !overlong {
                        let room = max_bytes.saturating_sub(line.len());
                        line.extend_from_slice(&rest[..end.min(room)]);
                    }
                    emit(&line, stream, &pump);
                    line.clear();
                    overlong = false;
                    rest = &rest[end + 1..];
                }
                None => {
                    if !overlong {
                        let room = max_bytes.saturating_sub(line.len());
                        line.extend_from_slice(&rest[..rest.len().min(room)]);
                        if line.len() >= max_bytes {
                            // Logged now, cut; the rest of it is skipped.
                            emit(&line, stream, &pump);
                            line.clear();
                            overlong = true;
                        }
                    }
                    rest = &[];
                }
            }
        }
    }
    if !line.is_empty() {
        emit(&line, stream, &pump);
    }
    let dropped = lock(&pump).dropped_due(true);
    log_dropped(dropped);
}

/// Logs one line of the child's output, if the rate allows.
fn emit(line: &[u8], stream: &'static str, pump: &Mutex<Pump>) {
    let (admitted, dropped) = {
        let mut pump = lock(pump);
        let admitted = pump.admit();
        (admitted, pump.dropped_due(false))
    };
    log_dropped(dropped);
    if !admitted {
        return;
    }
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches('\r');
    if text.trim().is_empty() {
        return;
    }
    info!(stream, "{}", crate::sanitize::excerpt(text, LINE_CHARS));
}

fn log_dropped(dropped: Option<u64>) {
    if let Some(dropped) = dropped {
        warn!(
            dropped,
            "dropped {dropped} line(s) of the program's output: more than {LINES_PER_SECOND} a second"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_described_for_a_person() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            describe_exit(ExitStatus::from_raw(1 << 8)),
            "exited with status 1"
        );
        assert_eq!(
            describe_exit(ExitStatus::from_raw(9)),
            "was killed by signal 9 (SIGKILL)"
        );
    }

    #[test]
    fn the_child_inherits_no_secret() {
        let config = Config::from_str(
            "[supervisor]\nstore_env = \"DB_URL\"\n\
             [bot.a]\nkind = \"echo\"\ntoken_env = \"A_TOKEN\"\n\
             [bot.b]\nkind = \"echo\"\ntoken_env = \"B_TOKEN\"\nenabled = false\n",
            std::path::Path::new("x.toml"),
        )
        .expect("valid");
        let token = format!("{}:{}", 123_456, "s".repeat(35));
        let env = Environment::from_pairs([
            ("A_TOKEN", token.as_str()),
            ("DB_URL", "postgres://u:s3cretpw@h/d"),
        ]);
        let vars = [
            ("PATH", "/usr/bin".to_owned()),
            ("A_TOKEN", token.clone()),
            ("B_TOKEN", "x".to_owned()),
            ("DB_URL", "postgres://u:s3cretpw@h/d".to_owned()),
            ("COPY_OF_IT", format!("prefix {token}")),
            ("SOME_OTHER_BOT", format!("{}:{}", 987_654, "t".repeat(35))),
            ("NOTIFY_SOCKET", "/run/systemd/notify".to_owned()),
            ("LANG", "tr_TR.UTF-8".to_owned()),
            (
                "HEROKU_POSTGRESQL_RED_URL",
                "postgres://u:s3cretpw@h/d".to_owned(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let child = ChildEnv::filtered(vars, &config, &env);
        let names: Vec<String> = child
            .vars
            .iter()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["PATH", "LANG"]);
    }

    #[test]
    fn output_is_rate_limited_and_the_drops_are_counted() {
        let mut pump = Pump::new();
        let admitted = (0..LINE_BURST + 50).filter(|_| pump.admit()).count();
        // The burst, and whatever trickled in meanwhile.
        assert!(admitted >= LINE_BURST as usize && admitted < LINE_BURST as usize + 10);
        assert_eq!(
            pump.dropped_due(false),
            Some(u64::from(LINE_BURST + 50) - admitted as u64)
        );
        assert_eq!(pump.dropped_due(true), None, "counted once");
    }

    #[tokio::test]
    async fn long_lines_are_cut_and_the_reader_keeps_no_more_than_a_line() {
        let long = "x".repeat(LINE_CHARS * 10);
        let text = format!("short\n{long}\nafter\n");
        let pump = Arc::new(Mutex::new(Pump::new()));
        // Reads to the end without growing past a line.
        pump_lines(text.as_bytes(), "stdout", pump.clone()).await;
        assert_eq!(lock(&pump).dropped, 0);
    }
}
