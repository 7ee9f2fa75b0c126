//! The reference python-telegram-bot bot (`tests/bots/ptb_bot.py`: echoes
//! every text, `concurrent_updates(True)`) through botvisor's gateway as a
//! process bot, beside the same program alone against the fake (issue 21):
//! what the gateway costs it with botvisor's pacing off (a burst and a
//! steady stream), and what it gives it with the pacing on and Telegram's
//! limits at the fake (a busy group, a burst of 3,000). The bot echoes, so
//! every injected text is unique and its reply is the same text: each run
//! checks every reply arrived exactly once (in any order: the bot handles
//! updates concurrently).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use fake_telegram::{Chat, FakeTelegram, RateLimits, User};

use crate::daemon::Daemon;
use crate::faq::{ms, quantile};
use crate::fleet;
use crate::program::{self, Alone, LOG_FILTER};

const TOKEN: &str = "2101:token-of-the-python-telegram-bot";
const BURST_USERS: u64 = 200;
const BURST_PER_USER: u64 = 10;
const STEADY_RATE: u64 = 20;
const STEADY_SECONDS: u64 = 10;
const LIMITED_USERS: u64 = 1_000;
const LIMITED_PER_USER: u64 = 3;
/// The burst under Telegram's limits: 3,000 replies at 30 a second take
/// 100 s; the bound only catches hangs.
const LIMITED_WAIT: Duration = Duration::from_secs(300);

/// botvisor running the bot as process bot `ptb` under `supervisor` (a
/// `[supervisor]` table), once the program polls the gateway.
async fn under_botvisor(tg: &FakeTelegram, supervisor: &str, command: &[String]) -> Daemon {
    let config = format!(
        "{supervisor}{}",
        program::process_bot("ptb", "PTB_TOKEN", command)
    );
    program::start_under_botvisor(tg, TOKEN, &config).await
}

/// A fake with the bot's token registered.
async fn fake() -> FakeTelegram {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN, "ptb_bot");
    tg
}

/// Injects `texts` (chat, sender, text) at once; the instant of the first.
fn inject_all(tg: &FakeTelegram, texts: &[(Chat, User, String)]) -> Instant {
    let started = Instant::now();
    for (chat, user, text) in texts {
        tg.inject_message(TOKEN, chat, user, text);
    }
    started
}

/// Checks that the bot's replies from the `skip`-th on are exactly
/// `expected` (chat, text), each once, in any order.
fn check_replies(tg: &FakeTelegram, skip: usize, expected: &[(i64, String)]) {
    let sent = tg.sent_messages(TOKEN);
    assert_eq!(
        sent.len(),
        skip + expected.len(),
        "replies: {} for {} texts",
        sent.len() - skip.min(sent.len()),
        expected.len()
    );
    let mut wanted: HashSet<(i64, &str)> = expected.iter().map(|(c, t)| (*c, t.as_str())).collect();
    for message in &sent[skip..] {
        assert!(
            wanted.remove(&(message.chat_id, message.text.as_str())),
            "an unexpected or repeated reply in chat {}: {:?}",
            message.chat_id,
            message.text
        );
    }
}

/// A burst of 2,000 texts from 200 users; replies per second from the
/// first injection to the last reply.
async fn burst(tg: &FakeTelegram) -> f64 {
    let skip = tg.sent_messages(TOKEN).len();
    let users: Vec<User> = (0..BURST_USERS)
        .map(|i| User::new(400_000 + i, "Aday"))
        .collect();
    let mut texts = Vec::new();
    for round in 0..BURST_PER_USER {
        for user in &users {
            texts.push((
                Chat::private(user),
                user.clone(),
                format!("burst {} {round}", user.id),
            ));
        }
    }
    let started = inject_all(tg, &texts);
    let total = texts.len();
    let sent = tg
        .wait_for_sent(TOKEN, skip + total, Duration::from_secs(120))
        .await
        .expect("every text answered");
    let last = sent[skip..].iter().map(|m| m.at).max().expect("replies");
    let expected: Vec<(i64, String)> = texts
        .into_iter()
        .map(|(chat, _, text)| (chat.id, text))
        .collect();
    check_replies(tg, skip, &expected);
    total as f64 / last.duration_since(started).as_secs_f64()
}

/// 20 texts a second for 10 s from 100 users: [p50, p99] latency in ms
/// from the injection to the reply reaching the fake.
async fn steady(tg: &FakeTelegram) -> [f64; 2] {
    let skip = tg.sent_messages(TOKEN).len();
    let total = (STEADY_RATE * STEADY_SECONDS) as usize;
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / STEADY_RATE as u32);
    let mut injected: HashMap<String, Instant> = HashMap::new();
    let mut expected = Vec::new();
    for i in 0..total {
        ticker.tick().await;
        let user = User::new(410_000 + (i as u64 % 100), "Aday");
        let text = format!("steady {i}");
        injected.insert(text.clone(), Instant::now());
        tg.inject_message(TOKEN, &Chat::private(&user), &user, &text);
        expected.push((user.id as i64, text));
    }
    let sent = tg
        .wait_for_sent(TOKEN, skip + total, Duration::from_secs(60))
        .await
        .expect("every text answered");
    check_replies(tg, skip, &expected);
    let latencies: Vec<f64> = sent[skip..]
        .iter()
        .map(|m| ms(m.at.saturating_duration_since(injected[&m.text])))
        .collect();
    [quantile(&latencies, 0.50), quantile(&latencies, 0.99)]
}

/// One run of `gateway-burst`: [alone replies/s, gateway replies/s,
/// gateway ÷ alone, alone p50, gateway p50, gateway − alone p50, alone
/// p99, gateway p99].
pub async fn burst_and_steady() -> Vec<f64> {
    let command = program::ptb_command().await;

    let tg = fake().await;
    let alone = Alone::start(&tg, TOKEN, &command).await;
    let alone_rate = burst(&tg).await;
    let [alone_p50, alone_p99] = steady(&tg).await;
    let errors = alone.errors();
    alone.stop().await;
    assert!(errors.is_empty(), "the bot alone:\n{}", errors.join("\n"));

    let tg = fake().await;
    let mut daemon = under_botvisor(&tg, &fleet::unpaced(&tg, "10s", LOG_FILTER), &command).await;
    let gateway_rate = burst(&tg).await;
    let [gateway_p50, gateway_p99] = steady(&tg).await;
    daemon.terminate().await;
    daemon.assert_no_errors();
    program::assert_program_clean(&daemon);

    vec![
        alone_rate,
        gateway_rate,
        gateway_rate / alone_rate,
        alone_p50,
        gateway_p50,
        gateway_p50 - alone_p50,
        alone_p99,
        gateway_p99,
    ]
}

/// One run of `gateway-busy-group`, as `busy-group` with this bot behind
/// the gateway, pacing on, Telegram's limits at the fake: 40 members of a
/// supergroup at once, 100 private users 5 a second. [private p50, p99,
/// max in ms; the group's 40 s; 429s].
pub async fn busy_group() -> Vec<f64> {
    let command = program::ptb_command().await;
    let tg = fake().await;
    tg.set_rate_limits(RateLimits::telegram());
    let mut daemon =
        under_botvisor(&tg, &fleet::supervisor(&tg, "10s", LOG_FILTER), &command).await;
    let group = Chat::supergroup(-1_001_777_000_021, "Aday öğrenciler");
    let mut expected = Vec::new();
    let started = Instant::now();
    for i in 0..40u64 {
        let member = User::new(620_000 + i, "Aday");
        let text = format!("group {i}");
        tg.inject_message(TOKEN, &group, &member, &text);
        expected.push((group.id, text));
    }
    let mut asked: HashMap<i64, Instant> = HashMap::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    for i in 0..100u64 {
        ticker.tick().await;
        let user = User::new(630_000 + i, "Öğrenci");
        let text = format!("staj {i}");
        asked.insert(user.id as i64, Instant::now());
        tg.inject_message(TOKEN, &Chat::private(&user), &user, &text);
        expected.push((user.id as i64, text));
    }
    let sent = tg
        .wait_for_sent(TOKEN, 140, Duration::from_secs(150))
        .await
        .unwrap_or_else(|e| panic!("every answer: {e:?}\n{}", daemon.output()));
    let group_done = sent
        .iter()
        .filter(|m| m.chat_id == group.id)
        .map(|m| m.at)
        .max()
        .expect("group answers")
        .duration_since(started)
        .as_secs_f64();
    daemon.terminate().await;
    daemon.assert_no_errors();
    program::assert_program_clean(&daemon);
    check_replies(&tg, 0, &expected);
    let latencies: Vec<f64> = sent
        .iter()
        .filter(|m| m.chat_id > 0)
        .map(|m| ms(m.at.saturating_duration_since(asked[&m.chat_id])))
        .collect();
    assert_eq!(latencies.len(), 100);
    vec![
        quantile(&latencies, 0.50),
        quantile(&latencies, 0.99),
        quantile(&latencies, 1.0),
        group_done,
        tg.too_many_requests_count(TOKEN) as f64,
    ]
}

/// 3,000 texts from 1,000 users (private chats), three rounds.
fn limited_texts() -> Vec<(Chat, User, String)> {
    let users: Vec<User> = (0..LIMITED_USERS)
        .map(|i| User::new(700_000 + i, "Aday"))
        .collect();
    let mut texts = Vec::new();
    for round in 0..LIMITED_PER_USER {
        for user in &users {
            texts.push((
                Chat::private(user),
                user.clone(),
                format!("limited {} {round}", user.id),
            ));
        }
    }
    texts
}

/// Waits until `n` sendMessage requests of the bot have been answered
/// (delivered or refused with a 429).
async fn wait_answered_sends(tg: &FakeTelegram, n: usize, alone: &Alone) {
    tg.wait_for_request(TOKEN, "sendMessage", n, LIMITED_WAIT)
        .await
        .unwrap_or_else(|e| panic!("{n} sendMessage requests: {e:?}\n{}", alone.output()));
    let started = Instant::now();
    loop {
        let answered = tg
            .requests_of(TOKEN, "sendMessage")
            .iter()
            .filter(|r| r.status().is_some())
            .count();
        if answered >= n {
            return;
        }
        assert!(
            started.elapsed() < LIMITED_WAIT,
            "{answered} of {n} sendMessage requests answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One run of `gateway-burst-limits`: the bot alone against the fake with
/// Telegram's limits, then behind the gateway with the pacing on.
/// [gateway: delivered, seconds, replies/s, 429s; alone: delivered, 429s].
pub async fn burst_limits() -> Vec<f64> {
    let command = program::ptb_command().await;
    let texts = limited_texts();
    let expected: Vec<(i64, String)> = texts
        .iter()
        .map(|(chat, _, text)| (chat.id, text.clone()))
        .collect();

    // Alone: every text gets one sendMessage; those over the limits get a
    // 429, which python-telegram-bot raises in the handler (the reply is
    // lost: it does not retry).
    let tg = fake().await;
    tg.set_rate_limits(RateLimits::telegram());
    let alone = Alone::start(&tg, TOKEN, &command).await;
    inject_all(&tg, &texts);
    wait_answered_sends(&tg, texts.len(), &alone).await;
    alone.stop().await;
    let alone_sent = tg.sent_messages(TOKEN);
    let wanted: HashSet<(i64, &str)> = expected.iter().map(|(c, t)| (*c, t.as_str())).collect();
    let distinct: HashSet<(i64, &str)> = alone_sent
        .iter()
        .map(|m| (m.chat_id, m.text.as_str()))
        .collect();
    assert_eq!(distinct.len(), alone_sent.len(), "a reply sent twice");
    assert!(distinct.is_subset(&wanted), "an unexpected reply");
    let alone_delivered = alone_sent.len() as f64;
    let alone_limited = tg.too_many_requests_count(TOKEN) as f64;

    let tg = fake().await;
    tg.set_rate_limits(RateLimits::telegram());
    let mut daemon =
        under_botvisor(&tg, &fleet::supervisor(&tg, "10s", LOG_FILTER), &command).await;
    let started = inject_all(&tg, &texts);
    let sent = tg
        .wait_for_sent(TOKEN, texts.len(), LIMITED_WAIT)
        .await
        .unwrap_or_else(|e| panic!("every text answered: {e:?}\n{}", daemon.output()));
    let last = sent.iter().map(|m| m.at).max().expect("replies");
    let seconds = last.duration_since(started).as_secs_f64();
    daemon.terminate().await;
    daemon.assert_no_errors();
    program::assert_program_clean(&daemon);
    check_replies(&tg, 0, &expected);
    vec![
        sent.len() as f64,
        seconds,
        sent.len() as f64 / seconds,
        tg.too_many_requests_count(TOKEN) as f64,
        alone_delivered,
        alone_limited,
    ]
}
