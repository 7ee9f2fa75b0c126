//! Process bots for the gateway scenarios (issue 21): the reference
//! python-telegram-bot bot (`tests/bots/ptb_bot.py`, in the tests' venv)
//! run alone against the fake or by botvisor as a process bot, and the
//! "probe" process bot (a shell that writes its environment down and
//! sleeps) whose local token and gateway address the load generator uses.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_telegram::FakeTelegram;
use tokio::process::{Child, Command};
use tokio::sync::Notify;

use crate::daemon::{self, Daemon, LIMIT};
use crate::python;

/// How long the Python bot may take to start polling: importing
/// python-telegram-bot takes a few seconds of CPU on a busy 2-core machine.
pub const STARTUP: Duration = Duration::from_secs(120);

/// The line botvisor logs when a process bot's program first asks the
/// gateway for updates.
const POLLING: &str = "the program asks the gateway for updates";

/// botvisor's log filter in these scenarios: warnings, plus the gateway's
/// and the programs' own lines (each at most once or a few per run, and
/// the program's output, which shows a Python traceback).
pub const LOG_FILTER: &str = "warn,botvisor::gateway=info,botvisor::bots::process=info";

/// The command that runs `ptb_bot.py` in the tests' venv (made on first
/// use, which downloads from PyPI: a minute or so).
pub async fn ptb_command() -> Vec<String> {
    let python = tokio::task::spawn_blocking(python::python)
        .await
        .expect("the Python venv");
    let script = python::bot_script("ptb_bot.py");
    vec![python.display().to_string(), script.display().to_string()]
}

/// The bench's `PATH`, for botvisor: a process bot's bare program name is
/// looked up on it, and the program inherits it, as in a deployment.
pub fn path_var() -> (String, String) {
    (
        "PATH".to_owned(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".to_owned()),
    )
}

/// A `[bot.NAME]` table of kind `process` running `command`, its token in
/// `token_env`.
pub fn process_bot(name: &str, token_env: &str, command: &[String]) -> String {
    let argv: Vec<String> = command.iter().map(|part| format!("{part:?}")).collect();
    format!(
        "\n[bot.{name}]\nkind = \"process\"\ntoken_env = \"{token_env}\"\ncommand = [{}]\n",
        argv.join(", ")
    )
}

/// Starts botvisor with `config` (one process bot, its token as
/// `PTB_TOKEN`) and waits until botvisor polls the fake and the program
/// polls the gateway.
pub async fn start_under_botvisor(tg: &FakeTelegram, token: &str, config: &str) -> Daemon {
    let daemon = Daemon::start(
        config,
        &[("PTB_TOKEN".to_owned(), token.to_owned()), path_var()],
    );
    tg.wait_for_request(token, "getUpdates", 1, STARTUP)
        .await
        .unwrap_or_else(|e| panic!("botvisor never polled: {e:?}\n{}", daemon.output()));
    daemon.wait_for_lines(POLLING, 1).await;
    daemon
}

/// The lines of a Python program's output that report an error: a logged
/// ERROR (`logging.basicConfig`'s `ERROR:name:message`) or a traceback.
pub fn python_errors(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.contains("ERROR:") || l.contains("Traceback"))
        .cloned()
        .collect()
}

/// Fails the run if the program under botvisor reported an error (its
/// output is in botvisor's log).
pub fn assert_program_clean(daemon: &Daemon) {
    let lines: Vec<String> = daemon.output().lines().map(str::to_owned).collect();
    let errors = python_errors(&lines);
    assert!(
        errors.is_empty(),
        "the bot's program reported errors:\n{}",
        errors.join("\n")
    );
}

/// The python-telegram-bot bot run alone, straight against the fake: the
/// same program, with the fake's token and URL.
pub struct Alone {
    child: Child,
    pid: i32,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Alone {
    /// Starts it with `BOT_TOKEN=token` and `BOT_API_URL` the fake's (and
    /// only `PATH` besides, as botvisor's children get), and waits for its
    /// first getUpdates.
    pub async fn start(tg: &FakeTelegram, token: &str, command: &[String]) -> Alone {
        let (path_name, path) = path_var();
        let mut child = Command::new(&command[0])
            .args(&command[1..])
            .env_clear()
            .env(path_name, path)
            .env("BOT_TOKEN", token)
            .env("BOT_API_URL", tg.url())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the python-telegram-bot bot");
        let pid = i32::try_from(child.id().expect("a running child")).expect("a pid");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let new_line = Arc::new(Notify::new());
        daemon::collect(
            child.stdout.take().expect("piped stdout"),
            lines.clone(),
            new_line.clone(),
        );
        daemon::collect(
            child.stderr.take().expect("piped stderr"),
            lines.clone(),
            new_line,
        );
        let alone = Alone { child, pid, lines };
        tg.wait_for_request(token, "getUpdates", 1, STARTUP)
            .await
            .unwrap_or_else(|e| panic!("the bot never polled: {e:?}\n{}", alone.output()));
        alone
    }

    pub fn output(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }

    /// Its lines that report an error.
    pub fn errors(&self) -> Vec<String> {
        python_errors(&self.lines.lock().expect("lines"))
    }

    /// SIGTERM (run_polling's stop signal) and a clean exit.
    pub async fn stop(mut self) {
        // SAFETY: kill(2) on the child this handle spawned and still owns.
        let sent = unsafe { libc::kill(self.pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "kill({}, SIGTERM)", self.pid);
        let status = tokio::time::timeout(LIMIT, self.child.wait())
            .await
            .expect("the bot exits")
            .expect("wait for the bot");
        assert!(
            status.success(),
            "the bot exited with {status}; its output:\n{}",
            self.output()
        );
    }
}

/// The probe's program: writes its environment to `env{i}.txt` (whole,
/// then renamed) in the config's folder and sleeps, so its memory is its
/// own shell's and `sleep`'s, not botvisor's.
pub fn probe_command(i: usize) -> Vec<String> {
    vec![
        "sh".to_owned(),
        "-c".to_owned(),
        format!("env > env{i}.tmp && mv env{i}.tmp env{i}.txt && exec sleep 600"),
    ]
}

/// What probe `i` of `daemon` wrote down: its environment, once it is there.
pub async fn probe_env(daemon: &Daemon, i: usize) -> HashMap<String, String> {
    let path: PathBuf = daemon.folder().join(format!("env{i}.txt"));
    let started = Instant::now();
    loop {
        if let Some(vars) = read_env(&path) {
            return vars;
        }
        assert!(
            started.elapsed() < LIMIT,
            "probe {i} never wrote its environment; botvisor's output:\n{}",
            daemon.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn read_env(path: &Path) -> Option<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}

/// The gateway's method URL for a probe's environment:
/// `BOT_API_URL/botBOT_TOKEN/` (append the method).
pub fn gateway_base(vars: &HashMap<String, String>) -> String {
    let url = vars.get("BOT_API_URL").expect("BOT_API_URL is set");
    let token = vars.get("BOT_TOKEN").expect("BOT_TOKEN is set");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    format!("{url}/bot{token}/")
}
