//! The bots a scenario runs, as config text and environment: the shipped
//! two (`supervisor.toml` as it is, with only its two URLs pointed at the
//! fake Telegram and at the stand-in for the department's site), or any
//! number of `echo` bots. Tokens are registered with the fake here.

use std::path::PathBuf;

use fake_telegram::FakeTelegram;

use crate::site::{Site, announcement_page, list_page};

pub const TANITIM: &str = "5001:token-of-the-tanitim-bot";
pub const DUYURU: &str = "5002:token-of-the-duyuru-bot";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Replaces `from` (which must be there exactly once) with `to`, so that a
/// change of the shipped file fails loudly instead of benchmarking
/// something else.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "supervisor.toml no longer has `{from}` once; update benches/suite/fleet.rs"
    );
    text.replacen(from, to, 1)
}

/// The shipped `supervisor.toml`: Tanıtım (faq) and Duyuru (announcements)
/// with their shipped settings (log level, poll timeout, check interval),
/// talking to `tg` and reading the list page of `site`.
pub fn shipped(tg: &FakeTelegram, site: &Site) -> (String, Vec<(String, String)>) {
    tg.add_bot(TANITIM, "tanitim_bot");
    tg.add_bot(DUYURU, "duyuru_bot");
    let text = std::fs::read_to_string(manifest_dir().join("supervisor.toml"))
        .expect("read the shipped supervisor.toml");
    let content = manifest_dir().join("content/tanitim.toml");
    let text = replace_once(
        &text,
        "api_url = \"https://api.telegram.org\"",
        &format!("api_url = \"{}\"", tg.url()),
    );
    let text = replace_once(
        &text,
        "list_url = \"https://mdbf.btu.edu.tr/tr/bilgisayar/duyuru/birim/193\"",
        &format!("list_url = \"{}\"", site.url("/list")),
    );
    let text = replace_once(
        &text,
        "content_file = \"content/tanitim.toml\"",
        &format!("content_file = \"{}\"", content.display()),
    );
    let env = vec![
        ("TANITIM_TOKEN".to_owned(), TANITIM.to_owned()),
        ("DUYURU_TOKEN".to_owned(), DUYURU.to_owned()),
    ];
    (text, env)
}

/// The stand-in site with a list of three announcements, as the relay's
/// first check finds it (it marks them seen and sends nothing).
pub async fn site() -> Site {
    let site = Site::start().await;
    site.set_html(
        "/list",
        &list_page(&[
            ("/goster/3", "Duyuru 3"),
            ("/goster/2", "Duyuru 2"),
            ("/goster/1", "Duyuru 1"),
        ]),
    );
    for id in 1..=3 {
        site.set_html(
            &format!("/goster/{id}"),
            &announcement_page(&[&format!("Duyuru {id}.")]),
        );
    }
    site
}

/// A `[supervisor]` table for `tg`.
pub fn supervisor(tg: &FakeTelegram, poll_timeout: &str, log_level: &str) -> String {
    format!(
        "[supervisor]\napi_url = \"{}\"\npoll_timeout = \"{poll_timeout}\"\nlog_level = \"{log_level}\"\n",
        tg.url()
    )
}

/// A `[supervisor]` table for `tg` with the outbox's pacing off: the
/// engine-speed scenarios measure botvisor, not Telegram's limits.
pub fn unpaced(tg: &FakeTelegram, poll_timeout: &str, log_level: &str) -> String {
    format!(
        "{}[supervisor.outbox]\npacing = false\n",
        supervisor(tg, poll_timeout, log_level)
    )
}

/// `n` echo bots registered with the fake: bot `i` is `[bot.eNNN]` with
/// its token in `ECHO_NNN_TOKEN`.
pub struct Echoes {
    pub tokens: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Echoes {
    pub fn register(tg: &FakeTelegram, n: usize) -> Echoes {
        let tokens: Vec<String> = (0..n)
            .map(|i| format!("{}:echo-bench-token-{i:03}", 10_000 + i))
            .collect();
        for (i, token) in tokens.iter().enumerate() {
            tg.add_bot(token, &format!("echo_{i:03}_bot"));
        }
        let env = tokens
            .iter()
            .enumerate()
            .map(|(i, token)| (format!("ECHO_{i:03}_TOKEN"), token.clone()))
            .collect();
        Echoes { tokens, env }
    }

    /// The config: `supervisor` (a `[supervisor]` table), then one table
    /// per bot with `extra(i)` added to bot `i`'s table.
    pub fn config(&self, supervisor: &str, extra: impl Fn(usize) -> String) -> String {
        let mut text = supervisor.to_owned();
        for i in 0..self.tokens.len() {
            text.push_str(&format!(
                "\n[bot.e{i:03}]\nkind = \"echo\"\ntoken_env = \"ECHO_{i:03}_TOKEN\"\n{}",
                extra(i)
            ));
        }
        text
    }
}
