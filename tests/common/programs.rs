//! Helpers for tests of process bots: a "probe" program (a shell that
//! writes down its environment, the gateway's local token and address
//! among it, and sleeps), a plain JSON client for the gateway, and what
//! the test sees of a program's process.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::PROMPT;

/// The probe's script: at each start it writes its environment to a new
/// `env-<n>.txt` (whole, then renamed) in the folder it runs in, and sleeps.
pub const PROBE: &str = "n=$(ls env-*.txt 2>/dev/null | wc -l); env > env.tmp && mv env.tmp env-$n.txt && exec sleep 600";

/// `[bot.<name>]` for a process bot running `sh -c <script>`, its token in
/// `<NAME>_TOKEN`.
pub fn program_table(name: &str, script: &str, extra: &str) -> String {
    format!(
        "[bot.{name}]\nkind = \"process\"\ntoken_env = \"{}_TOKEN\"\ncommand = [\"sh\", \"-c\", {script:?}]\n{extra}",
        name.to_uppercase()
    )
}

/// What a probe wrote down at one start: its environment.
pub struct Probe {
    pub vars: Vec<(String, String)>,
}

impl Probe {
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `BOT_TOKEN`: the gateway's local token.
    pub fn token(&self) -> &str {
        self.var("BOT_TOKEN").expect("BOT_TOKEN is set")
    }

    /// `BOT_API_URL`: the gateway's root.
    pub fn url(&self) -> &str {
        self.var("BOT_API_URL").expect("BOT_API_URL is set")
    }

    /// The gateway's URL of `method` with the local token.
    pub fn method(&self, method: &str) -> String {
        format!("{}/bot{}/{method}", self.url(), self.token())
    }
}

/// Waits for the probe's `n`-th start (from 0) in folder `dir`; what it
/// wrote.
pub async fn probe(dir: &Path, n: usize) -> Probe {
    let path = dir.join(format!("env-{n}.txt"));
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&path) {
            let vars = text
                .lines()
                .filter_map(|line| line.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            return Probe { vars };
        }
        assert!(
            started.elapsed() < PROMPT,
            "the probe never started: {}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// POSTs `body` as JSON: the status code and the answer (as JSON, or the
/// text as a JSON string when it is not JSON).
pub async fn post(url: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let code = response.status().as_u16();
    let text = response.text().await.expect("a body");
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The program's pid in a bot's `/status` entry.
pub fn pid_of(status: &Value) -> Option<u32> {
    status["process"]["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
}

/// Bot `bot`'s program's pid, once it runs.
pub async fn program_pid(base: &str, bot: &str) -> u32 {
    let status =
        super::wait_for_status(base, bot, PROMPT, |s| s["process"]["pid"].is_number()).await;
    pid_of(&status).expect("a pid")
}

/// Whether process `pid` exists (a zombie counts as gone).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'))
    })
}

/// Waits until process `pid` is gone.
pub async fn gone(pid: u32, within: Duration) {
    let started = Instant::now();
    while alive(pid) {
        assert!(started.elapsed() < within, "process {pid} is still there");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The resident memory of process `pid`, bytes.
pub fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
