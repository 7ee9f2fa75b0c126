//! Shared test harness: runs the real `botvisor` binary with a config written
//! into a temporary folder, collects every line it prints, and lets a test
//! wait for a line or for the process to exit, each bounded by a timeout.

#![allow(dead_code)]

pub mod programs;
pub mod python;
pub mod site;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Executor as _;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// A generous ceiling for anything that should happen promptly; it only
/// catches hangs.
pub const PROMPT: Duration = Duration::from_secs(15);

/// A token of Telegram's real shape (digits, colon, 35 characters), so that
/// the redaction of real-shaped tokens is exercised too.
pub const REAL_SHAPED_TOKEN: &str = "123456789:AAEhBP0av28GiHRuDu9OmTj-kYm3qB2CmTc";
pub const SECOND_TOKEN: &str = "987654321:AAFqW9dX3k2LmNoPqRsTuVwXyZ0123456_-";

/// The path of the binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_botvisor")
}

/// A temporary folder holding a config file.
pub struct ConfigDir {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl ConfigDir {
    /// Writes `text` as `supervisor.toml` in a new temporary folder.
    pub fn new(text: &str) -> ConfigDir {
        let dir = tempfile::tempdir().expect("create a temporary folder");
        let path = dir.path().join("supervisor.toml");
        std::fs::write(&path, text).expect("write the config");
        ConfigDir { dir, path }
    }

    /// Writes another file beside the config.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write a file beside the config");
        path
    }

    pub fn folder(&self) -> &Path {
        self.dir.path()
    }
}

/// A `Command` for the binary with a clean environment: only `PATH` and
/// `HOME` from the test's, plus `vars`.
pub fn command(args: &[&str], vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(binary());
    command.args(args).env_clear().kill_on_drop(true);
    for key in ["PATH", "HOME"] {
        if let Ok(value) = std::env::var(key) {
            command.env(key, value);
        }
    }
    for (key, value) in vars {
        command.env(key, value);
    }
    command
}

/// What a finished run printed.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Runs the binary to completion (bounded by [`PROMPT`]).
pub async fn run_to_end(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let output = tokio::time::timeout(PROMPT, command(args, vars).output())
        .await
        .expect("botvisor finished in time")
        .expect("botvisor ran");
    Output {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A running daemon whose output is collected line by line.
pub struct Daemon {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    count: watch::Receiver<usize>,
}

impl Daemon {
    /// Starts `botvisor --config <config>` with `vars` as its environment.
    pub fn start(config: &Path, vars: &[(&str, &str)]) -> Daemon {
        let config = config.to_str().expect("a UTF-8 path");
        let mut command = command(&["--config", config], vars);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("start botvisor");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, count) = watch::channel(0usize);
        let tx = Arc::new(tx);
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        spawn_reader(stdout, "", lines.clone(), tx.clone());
        spawn_reader(stderr, "stderr: ", lines.clone(), tx);
        Daemon {
            child,
            lines,
            count,
        }
    }

    /// Everything printed so far, one line per entry (stderr lines start
    /// with `stderr: `).
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines lock").clone()
    }

    pub fn output(&self) -> String {
        self.lines().join("\n")
    }

    /// Waits until a printed line contains `needle`; returns that line.
    pub async fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let waited = tokio::time::timeout(timeout, async {
            loop {
                if let Some(line) = self.lines().into_iter().find(|l| l.contains(needle)) {
                    return line;
                }
                if self.count.changed().await.is_err() {
                    // Output closed: one last look, then give up.
                    if let Some(line) = self.lines().into_iter().find(|l| l.contains(needle)) {
                        return line;
                    }
                    std::future::pending::<()>().await;
                }
            }
        })
        .await;
        match waited {
            Ok(line) => line,
            Err(_) => panic!(
                "no line containing {needle:?} within {timeout:?}; output:\n{}",
                self.output()
            ),
        }
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the daemon is running")
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until at least `n` printed lines contain `needle`.
    pub async fn wait_for_lines(&mut self, needle: &str, n: usize, timeout: Duration) {
        let waited = tokio::time::timeout(timeout, async {
            loop {
                if self.lines().iter().filter(|l| l.contains(needle)).count() >= n {
                    return;
                }
                if self.count.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await;
        if waited.is_err() {
            panic!(
                "fewer than {n} lines containing {needle:?} within {timeout:?}; output:\n{}",
                self.output()
            );
        }
    }

    /// Sends SIGTERM and asserts a clean exit (code 0) within [`PROMPT`].
    pub async fn stop_cleanly(&mut self) {
        self.signal(libc::SIGTERM);
        let status = self.wait_exit(PROMPT).await;
        assert_eq!(status.code(), Some(0), "output:\n{}", self.output());
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, signal: i32) {
        let pid = self.child.id().expect("the daemon is running");
        let pid = i32::try_from(pid).expect("a pid fits in i32");
        // SAFETY: kill(2) with a pid we spawned and a valid signal number.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "kill({pid}, {signal})");
    }

    /// Waits for the daemon to exit, at most `timeout`; returns its status
    /// once its output has been read to the end.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let status = match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.expect("wait for botvisor"),
            Err(_) => panic!(
                "botvisor did not exit within {timeout:?}; output:\n{}",
                self.output()
            ),
        };
        // The readers finish when the pipes close.
        let _ = tokio::time::timeout(PROMPT, async {
            while self.count.changed().await.is_ok() {}
        })
        .await;
        status
    }
}

/// Collects `stream` line by line into `lines` (each with `prefix`),
/// announcing the new count on `tx`.
pub fn spawn_reader(
    stream: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    prefix: &'static str,
    lines: Arc<Mutex<Vec<String>>>,
    tx: Arc<watch::Sender<usize>>,
) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            let count = {
                let mut lines = lines.lock().expect("lines lock");
                lines.push(format!("{prefix}{line}"));
                lines.len()
            };
            tx.send_replace(count);
        }
    });
}

/// The status endpoint's base URL, from the line botvisor logs when it
/// listens (`[supervisor.http] listen = "127.0.0.1:0"`).
pub async fn endpoint(daemon: &mut Daemon) -> String {
    let line = daemon
        .wait_for_line("status endpoint listening", PROMPT)
        .await;
    let addr = line
        .split_whitespace()
        .find_map(|word| word.strip_prefix("addr="))
        .unwrap_or_else(|| panic!("no addr= in {line:?}"));
    format!("http://{addr}")
}

/// GETs `path`: the status code and the body.
pub async fn get(base: &str, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("{base}{path}"))
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let code = response.status().as_u16();
    let body = response.text().await.expect("a body");
    (code, body)
}

/// GETs `path` until its status code is `code` (the workers change state
/// on their own schedule); panics after [`PROMPT`].
pub async fn get_until(base: &str, path: &str, code: u16) -> String {
    let started = std::time::Instant::now();
    loop {
        let (got, body) = get(base, path).await;
        if got == code {
            return body;
        }
        assert!(
            started.elapsed() < PROMPT,
            "GET {path} stayed {got}, not {code}:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Bot `bot`'s entry in `/status`.
pub async fn bot_status(base: &str, bot: &str) -> serde_json::Value {
    let (code, body) = get(base, "/status").await;
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    status["bots"]
        .as_array()
        .and_then(|bots| bots.iter().find(|b| b["name"] == bot))
        .cloned()
        .unwrap_or_else(|| panic!("no bot {bot} in {body}"))
}

/// Waits until `/status` shows bot `bot` in which `check` holds; that entry.
/// Panics after `timeout`.
pub async fn wait_for_status(
    base: &str,
    bot: &str,
    timeout: Duration,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let started = std::time::Instant::now();
    loop {
        let status = bot_status(base, bot).await;
        if check(&status) {
            return status;
        }
        assert!(
            started.elapsed() < timeout,
            "bot {bot} never got there; last status: {status}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until `/status` shows bot `bot` in `state`.
pub async fn wait_for_state(base: &str, bot: &str, state: &str) -> serde_json::Value {
    wait_for_status(base, bot, PROMPT, |s| s["state"] == state).await
}

/// A `[supervisor.http]` table on a free loopback port, for a
/// `supervisor_table` extra.
pub const HTTP: &str = "[supervisor.http]\nlisten = \"127.0.0.1:0\"\n";

/// A `[supervisor]` table pointing at the fake, with short backoffs so
/// error paths run quickly.
pub fn supervisor_table(api_url: &str, extra: &str) -> String {
    format!(
        "[supervisor]\napi_url = \"{api_url}\"\npoll_timeout = \"2s\"\nshutdown_timeout = \"5s\"\n{extra}\n\
         [supervisor.restart]\ninitial_backoff = \"100ms\"\nmax_backoff = \"300ms\"\npark_for = \"300ms\"\n"
    )
}

/// Sends `text` to bot `token` in the private chat of user `user_id` and
/// waits until the echo bot has sent it back.
pub async fn assert_echoes(
    tg: &fake_telegram::FakeTelegram,
    token: &str,
    user_id: u64,
    text: &str,
) {
    let user = fake_telegram::User::new(user_id, "Tester");
    let before = tg.sent_messages(token).len();
    tg.inject_message(token, &fake_telegram::Chat::private(&user), &user, text);
    let mut seen = before;
    loop {
        let sent = tg
            .wait_for_sent(token, seen + 1, PROMPT)
            .await
            .unwrap_or_else(|e| panic!("no echo of {text:?}: {e:?}"));
        if sent[before..].iter().any(|m| m.text == text) {
            return;
        }
        seen = sent.len();
    }
}

/// A fresh PostgreSQL database for one test, dropped at the end; `None`
/// (with a note) when no test server is configured.
pub struct TestDatabase {
    pub admin_url: String,
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create(test: &str) -> Option<TestDatabase> {
        let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
            // Written past the test harness's capture, so it shows in the run.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: TEST_DATABASE_URL is not set (no PostgreSQL to test against)"
            );
            return None;
        };
        let name = format!("botvisor_test_{}_{}", std::process::id(), rand_suffix());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
            .await
            .expect("connect to TEST_DATABASE_URL");
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await
            .expect("create a test database");
        let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
        url.set_path(&format!("/{name}"));
        Some(TestDatabase {
            admin_url,
            name,
            url: url.to_string(),
        })
    }

    pub async fn drop_database(self) {
        if let Ok(mut conn) =
            <sqlx::PgConnection as sqlx::Connection>::connect(&self.admin_url).await
        {
            let _ = conn
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.name
                )))
                .await;
        }
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(std::time::Instant::now().elapsed().as_nanos());
    hasher.finish() % 1_000_000_007
}
