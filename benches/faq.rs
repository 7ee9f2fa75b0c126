//! `cargo bench --bench faq`: how fast one botvisor answers FAQ commands.
//!
//! Drives the release build of `botvisor` with the shipped Tanıtım content
//! against the project's fake Telegram on 127.0.0.1 and prints one table:
//! - the fake's own capacity (sendMessage requests per second a trivial
//!   client gets), so every other figure can be read as a fraction of it;
//! - a burst: 10,000 commands from 1,000 chats injected at once: total time
//!   and replies per second;
//! - a steady load of 200 commands per second: per-reply latency from the
//!   update becoming available to the reply reaching the fake (p50, p99).
//!
//! - a broadcast: one announcement of the Duyuru relay to 1,000 subscribed
//!   chats with Telegram-like rate limits switched on in the fake: time,
//!   messages per second against the 30 allowed, and 429s received.
//!
//! Each scenario runs several times (min / median / max) and checks itself:
//! every command answered exactly once, in its own chat, with the right
//! answer, every chat reached exactly once, or the run fails instead of
//! reporting a number.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fake_telegram::{Chat, FakeTelegram, RateLimits, User};
// The tests' stand-in for the department's web site; the benchmark uses
// only part of it.
#[allow(dead_code)]
#[path = "../tests/common/site.rs"]
mod site;
use site::{Site, announcement_page, list_page};
use tokio::process::{Child, Command};

const TOKEN: &str = "900:token-of-the-benchmarked-bot";
const RUNS: usize = 3;
const BURST_CHATS: u64 = 1_000;
const BURST_PER_CHAT: usize = 10;
const STEADY_RATE: u64 = 200;
const STEADY_SECONDS: u64 = 10;
const LIMIT: Duration = Duration::from_secs(120);

struct Daemon {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// The shipped Tanıtım bot.
    async fn start(tg: &FakeTelegram) -> Daemon {
        let content = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("content/tanitim.toml");
        let bot = format!(
            "[bot.tanitim]\nkind = \"faq\"\ntoken_env = \"BENCH_TOKEN\"\ncontent_file = \"{}\"\n",
            content.display()
        );
        Daemon::start_with(tg, &bot).await
    }

    /// One bot, as given, with its token in BENCH_TOKEN.
    async fn start_with(tg: &FakeTelegram, bot: &str) -> Daemon {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let config = dir.path().join("supervisor.toml");
        std::fs::write(
            &config,
            format!(
                "[supervisor]\napi_url = \"{}\"\npoll_timeout = \"10s\"\nlog_level = \"warn\"\n{bot}",
                tg.url()
            ),
        )
        .expect("write the config");
        let child = Command::new(env!("CARGO_BIN_EXE_botvisor"))
            .arg("--config")
            .arg(&config)
            .env_clear()
            .env("BENCH_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start botvisor");
        tg.wait_for_request(TOKEN, "getUpdates", 1, LIMIT)
            .await
            .expect("botvisor polls");
        Daemon { child, _dir: dir }
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on the child we spawned.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        let status = tokio::time::timeout(LIMIT, self.child.wait())
            .await
            .expect("exit")
            .expect("wait");
        assert!(status.success(), "botvisor exited with {status}");
    }
}

/// The commands cycled through, with the answer each must get.
fn commands() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("supervisor.toml"))
            .expect("read the shipped config");
    let config = botvisor::config::Config::from_str(
        &text,
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("supervisor.toml"),
    )
    .expect("the shipped config is valid");
    let Some(botvisor::config::BotConfig {
        kind: botvisor::config::KindSettings::Faq(faq),
        ..
    }) = config.bot("tanitim")
    else {
        panic!("the shipped tanitim bot is a faq bot");
    };
    faq.content
        .commands
        .iter()
        .map(|c| (format!("/{}", c.name), c.answer.clone()))
        .collect()
}

/// Requests per second the fake serves to a trivial client (64 at once).
async fn fake_capacity() -> f64 {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN, "capacity_bot");
    tg.set_request_log_capacity(1000);
    let client = reqwest::Client::new();
    let url = format!("{}/bot{TOKEN}/sendMessage", tg.url());
    let per_task = 500;
    let tasks = 64;
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let client = client.clone();
        let url = url.clone();
        handles.push(tokio::spawn(async move {
            for _ in 0..per_task {
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(format!("{{\"chat_id\":{},\"text\":\"x\"}}", 10_000 + t))
                    .send()
                    .await
                    .expect("the fake answers");
                assert!(response.status().is_success());
            }
        }));
    }
    for handle in handles {
        handle.await.expect("a client task");
    }
    f64::from(per_task * tasks) / started.elapsed().as_secs_f64()
}

/// Checks that chat `chat` got exactly `expected` answers, in order.
fn check_replies(tg: &FakeTelegram, expected: &HashMap<i64, Vec<String>>) {
    let sent = tg.sent_messages(TOKEN);
    let total: usize = expected.values().map(Vec::len).sum();
    assert_eq!(
        sent.len(),
        total,
        "replies: {} for {total} commands",
        sent.len()
    );
    let mut got: HashMap<i64, Vec<&str>> = HashMap::new();
    for message in &sent {
        got.entry(message.chat_id).or_default().push(&message.text);
    }
    for (chat, answers) in expected {
        let texts = got.get(chat).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(texts.len(), answers.len(), "chat {chat}");
        for (text, answer) in texts.iter().zip(answers) {
            assert!(
                text.starts_with(answer.as_str()),
                "chat {chat}: wrong or out of order"
            );
        }
    }
}

/// One burst: returns (seconds, replies per second).
async fn burst(commands: &[(String, String)]) -> (f64, f64) {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN, "tanitim_bot");
    let daemon = Daemon::start(&tg).await;
    let mut expected: HashMap<i64, Vec<String>> = HashMap::new();
    let users: Vec<User> = (0..BURST_CHATS)
        .map(|i| User::new(100_000 + i, "Aday"))
        .collect();
    let started = Instant::now();
    for round in 0..BURST_PER_CHAT {
        for (i, user) in users.iter().enumerate() {
            let (command, answer) = &commands[(i + round) % commands.len()];
            tg.inject_message(TOKEN, &Chat::private(user), user, command);
            expected
                .entry(user.id as i64)
                .or_default()
                .push(answer.clone());
        }
    }
    let total = BURST_CHATS as usize * BURST_PER_CHAT;
    tg.wait_for_sent(TOKEN, total, LIMIT)
        .await
        .expect("every command answered");
    let seconds = started.elapsed().as_secs_f64();
    daemon.stop().await;
    check_replies(&tg, &expected);
    (seconds, total as f64 / seconds)
}

/// One steady run: returns (p50, p99) latency in milliseconds.
async fn steady(commands: &[(String, String)]) -> (f64, f64) {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN, "tanitim_bot");
    let daemon = Daemon::start(&tg).await;
    let total = (STEADY_RATE * STEADY_SECONDS) as usize;
    let interval = Duration::from_secs(1) / STEADY_RATE as u32;
    let mut injected = Vec::with_capacity(total);
    let mut expected: HashMap<i64, Vec<String>> = HashMap::new();
    let mut ticker = tokio::time::interval(interval);
    for i in 0..total {
        ticker.tick().await;
        let user = User::new(200_000 + (i as u64 % 100), "Aday");
        let (command, answer) = &commands[i % commands.len()];
        expected
            .entry(user.id as i64)
            .or_default()
            .push(answer.clone());
        injected.push((user.id as i64, Instant::now()));
        tg.inject_message(TOKEN, &Chat::private(&user), &user, command);
    }
    tg.wait_for_sent(TOKEN, total, LIMIT)
        .await
        .expect("every command answered");
    daemon.stop().await;
    check_replies(&tg, &expected);
    // Replies of one chat arrive in order: pair them with that chat's
    // injections in order.
    let mut sent_by_chat: HashMap<i64, Vec<Instant>> = HashMap::new();
    for message in tg.sent_messages(TOKEN) {
        sent_by_chat
            .entry(message.chat_id)
            .or_default()
            .push(message.at);
    }
    let mut next: HashMap<i64, usize> = HashMap::new();
    let mut latencies: Vec<f64> = injected
        .iter()
        .map(|(chat, at)| {
            let i = next.entry(*chat).or_default();
            let reply = sent_by_chat[chat][*i];
            *i += 1;
            reply.saturating_duration_since(*at).as_secs_f64() * 1000.0
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    (pick(0.50), pick(0.99))
}

/// One broadcast: returns (seconds, messages per second, 429s).
async fn broadcast() -> (f64, f64, f64) {
    const CHATS: u64 = 1_000;
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN, "duyuru_bot");
    let site = Site::start().await;
    site.set_html("/list", &list_page(&[("/goster/1", "Duyuru 1")]));
    site.set_html("/goster/1", &announcement_page(&["Eski duyuru."]));
    site.set_html("/goster/2", &announcement_page(&["Yeni duyuru."]));
    let bot = format!(
        "[bot.duyuru]\nkind = \"announcements\"\ntoken_env = \"BENCH_TOKEN\"\nlist_url = \"{}\"\n\
         link_selector = \"div.ann-list ul li a\"\ntext_selector = \"div.page-about\"\ncheck_every = \"200ms\"\n",
        site.url("/list")
    );
    let daemon = Daemon::start_with(&tg, &bot).await;
    // The second check means the first (which only marks what is listed) is done.
    site.wait_for_requests("/list", 2, LIMIT)
        .await
        .expect("checks");
    for i in 0..CHATS {
        let user = User::new(300_000 + i, "Abone");
        tg.inject_message(TOKEN, &Chat::private(&user), &user, "/start");
    }
    tg.wait_for_sent(TOKEN, CHATS as usize, LIMIT)
        .await
        .expect("every chat subscribed");
    tg.set_rate_limits(RateLimits::telegram());
    site.set_html(
        "/list",
        &list_page(&[("/goster/2", "Duyuru 2"), ("/goster/1", "Duyuru 1")]),
    );
    let sent = tg
        .wait_for_sent(TOKEN, 2 * CHATS as usize, LIMIT)
        .await
        .expect("every chat reached");
    daemon.stop().await;
    let broadcast: Vec<_> = sent[CHATS as usize..].iter().collect();
    let chats: std::collections::HashSet<i64> = broadcast.iter().map(|m| m.chat_id).collect();
    assert_eq!(chats.len(), CHATS as usize, "every chat once");
    assert_eq!(
        tg.sent_messages(TOKEN).len(),
        2 * CHATS as usize,
        "nothing sent twice"
    );
    assert!(
        broadcast
            .iter()
            .all(|m| m.text.starts_with("DUYURU: Yeni duyuru."))
    );
    let seconds = broadcast[broadcast.len() - 1]
        .at
        .duration_since(broadcast[0].at)
        .as_secs_f64();
    let rate = (broadcast.len() - 1) as f64 / seconds;
    (seconds, rate, tg.too_many_requests_count(TOKEN) as f64)
}

fn stats(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        values[0],
        values[values.len() / 2],
        values[values.len() - 1],
    )
}

fn row(name: &str, unit: &str, values: Vec<f64>, target: &str) {
    let (min, median, max) = stats(values);
    println!("| {name} | {min:.1} | {median:.1} | {max:.1} | {unit} | {target} |");
}

#[tokio::main]
async fn main() {
    let commands = commands();
    let mut capacity = Vec::new();
    let mut burst_seconds = Vec::new();
    let mut burst_rate = Vec::new();
    let mut p50 = Vec::new();
    let mut p99 = Vec::new();
    let mut broadcast_seconds = Vec::new();
    let mut broadcast_rate = Vec::new();
    let mut broadcast_429 = Vec::new();
    for _ in 0..RUNS {
        capacity.push(fake_capacity().await);
        let (seconds, rate) = burst(&commands).await;
        burst_seconds.push(seconds);
        burst_rate.push(rate);
        let (a, b) = steady(&commands).await;
        p50.push(a);
        p99.push(b);
        let (seconds, rate, limited) = broadcast().await;
        broadcast_seconds.push(seconds);
        broadcast_rate.push(rate);
        broadcast_429.push(limited);
    }
    println!("\nbotvisor FAQ benchmark ({RUNS} runs; release build; fake Telegram on 127.0.0.1)\n");
    println!("| scenario | min | median | max | unit | target |");
    println!("|---|---|---|---|---|---|");
    row(
        "fake capacity, trivial client, 64 at once",
        "requests/s",
        capacity,
        "(ruler)",
    );
    row(
        "burst: 10,000 commands from 1,000 chats, total time",
        "s",
        burst_seconds,
        "",
    );
    row(
        "burst: replies per second",
        "replies/s",
        burst_rate,
        "≥ 5,000",
    );
    row("steady 200 commands/s: latency p50", "ms", p50, "");
    row("steady 200 commands/s: latency p99", "ms", p99, "≤ 5");
    row(
        "broadcast to 1,000 chats under Telegram's limits: time",
        "s",
        broadcast_seconds,
        "",
    );
    row(
        "broadcast: messages per second (30 allowed)",
        "messages/s",
        broadcast_rate,
        "≥ 27 (90 %)",
    );
    row("broadcast: 429s received", "count", broadcast_429, "0");
}
