//! Throughput and latency of the Tanıtım FAQ bot: a burst of 10,000
//! commands from 1,000 chats injected at once, and a steady 200 commands per
//! second with the latency of every reply. Each run checks that every
//! command got exactly its answer, once, in its own chat, in order.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fake_telegram::{Chat, FakeTelegram, User};

use crate::daemon::{Daemon, LIMIT};
use crate::fleet;

const TOKEN: &str = "900:token-of-the-benchmarked-bot";
const BURST_CHATS: u64 = 1_000;
const BURST_PER_CHAT: usize = 10;
const STEADY_RATE: u64 = 200;
const STEADY_SECONDS: u64 = 10;

/// The shipped Tanıtım bot alone.
async fn start(tg: &FakeTelegram) -> Daemon {
    tg.add_bot(TOKEN, "tanitim_bot");
    let content = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("content/tanitim.toml");
    let config = format!(
        "{}[bot.tanitim]\nkind = \"faq\"\ntoken_env = \"BENCH_TOKEN\"\ncontent_file = \"{}\"\n",
        fleet::unpaced(tg, "10s", "warn"),
        content.display()
    );
    let daemon = Daemon::start(&config, &[("BENCH_TOKEN".to_owned(), TOKEN.to_owned())]);
    tg.wait_for_request(TOKEN, "getUpdates", 1, LIMIT)
        .await
        .expect("botvisor polls");
    daemon
}

/// The commands cycled through, with the answer each must get, from the
/// shipped config.
pub fn commands() -> Vec<(String, String)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("supervisor.toml");
    let text = std::fs::read_to_string(&path).expect("read the shipped config");
    let config =
        botvisor::config::Config::from_str(&text, &path).expect("the shipped config is valid");
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

/// Checks that every chat got exactly its expected answers, in order.
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

/// One burst: [seconds, replies per second].
pub async fn burst() -> Vec<f64> {
    let commands = commands();
    let tg = FakeTelegram::start().await.expect("start the fake");
    let mut daemon = start(&tg).await;
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
    daemon.terminate().await;
    daemon.assert_no_errors();
    check_replies(&tg, &expected);
    vec![seconds, total as f64 / seconds]
}

/// One steady run: [p50, p99] latency in milliseconds.
pub async fn steady() -> Vec<f64> {
    let commands = commands();
    let tg = FakeTelegram::start().await.expect("start the fake");
    let mut daemon = start(&tg).await;
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
    daemon.terminate().await;
    daemon.assert_no_errors();
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
    let latencies: Vec<f64> = injected
        .iter()
        .map(|(chat, at)| {
            let i = next.entry(*chat).or_default();
            let reply = sent_by_chat[chat][*i];
            *i += 1;
            ms(reply.saturating_duration_since(*at))
        })
        .collect();
    vec![quantile(&latencies, 0.50), quantile(&latencies, 0.99)]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `q` quantile (0 to 1) of `values`, by rank.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}
