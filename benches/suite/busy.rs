//! The busy group (issue 12): 40 members of one supergroup ask the shipped
//! Tanıtım bot at once while 100 private users ask, 5 a second, with
//! Telegram's rate limits on at the fake and the shipped pacing on at
//! botvisor. Reports how long private users wait, how long the group's 40
//! answers take at 20 a minute, and how many 429s Telegram had to send.
//! Each run checks every answer arrived once, the group's in order.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fake_telegram::{Chat, FakeTelegram, RateLimits, User};

use crate::daemon::{Daemon, LIMIT};
use crate::faq::{commands, ms, quantile};
use crate::fleet;

const TOKEN: &str = "901:token-of-the-busy-bot";

/// One run: [private p50 ms, private p99 ms, private max ms, group's 40
/// answers s, 429s].
pub async fn run() -> Vec<f64> {
    let commands = commands();
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.set_rate_limits(RateLimits::telegram());
    tg.add_bot(TOKEN, "tanitim_bot");
    let content = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("content/tanitim.toml");
    let config = format!(
        "{}[bot.tanitim]\nkind = \"faq\"\ntoken_env = \"BENCH_TOKEN\"\ncontent_file = \"{}\"\n",
        fleet::supervisor(&tg, "10s", "warn"),
        content.display()
    );
    let mut daemon = Daemon::start(&config, &[("BENCH_TOKEN".to_owned(), TOKEN.to_owned())]);
    tg.wait_for_request(TOKEN, "getUpdates", 1, LIMIT)
        .await
        .expect("botvisor polls");
    let group = Chat::supergroup(-1_001_777_000_001, "Aday öğrenciler");
    let started = Instant::now();
    let mut expected_group = Vec::new();
    for i in 0..40u64 {
        let member = User::new(600_000 + i, "Aday");
        let (command, answer) = &commands[i as usize % commands.len()];
        tg.inject_message(TOKEN, &group, &member, &format!("{command}@tanitim_bot"));
        expected_group.push(answer.clone());
    }
    let staj = commands
        .iter()
        .find(|(command, _)| command == "/staj")
        .map(|(_, answer)| answer.clone())
        .expect("a /staj command");
    let mut asked: HashMap<i64, Instant> = HashMap::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    for i in 0..100u64 {
        ticker.tick().await;
        let user = User::new(610_000 + i, "Öğrenci");
        asked.insert(user.id as i64, Instant::now());
        tg.inject_message(TOKEN, &Chat::private(&user), &user, "/staj");
    }
    tg.wait_for_sent(TOKEN, 140, Duration::from_secs(150))
        .await
        .expect("every answer");
    let group_done = started.elapsed().as_secs_f64();
    daemon.terminate().await;
    daemon.assert_no_errors();
    let sent = tg.sent_messages(TOKEN);
    assert_eq!(sent.len(), 140, "each answer once");
    let group_texts: Vec<&str> = sent
        .iter()
        .filter(|m| m.chat_id == group.id)
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(group_texts.len(), 40);
    for (text, answer) in group_texts.iter().zip(&expected_group) {
        assert!(
            text.starts_with(answer.as_str()),
            "group answers out of order"
        );
    }
    let latencies: Vec<f64> = sent
        .iter()
        .filter(|m| m.chat_id > 0)
        .map(|m| {
            assert!(m.text.starts_with(&staj), "a wrong private answer");
            ms(m.at.saturating_duration_since(asked[&m.chat_id]))
        })
        .collect();
    assert_eq!(latencies.len(), 100);
    let limited = tg
        .requests_of(TOKEN, "sendMessage")
        .iter()
        .filter(|r| r.status() == Some(429))
        .count();
    vec![
        quantile(&latencies, 0.50),
        quantile(&latencies, 0.99),
        quantile(&latencies, 1.0),
        group_done,
        limited as f64,
    ]
}
