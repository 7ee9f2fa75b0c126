//! The outbox against the fake Telegram with Telegram's rate limits on,
//! running the real binary: a busy group never holds up private chats, a
//! crash or a stop loses no queued reply and repeats none (or, for a
//! `kill -9` in full flow, at most the one in flight), dropped connections
//! lose nothing, a flooding user meets the per-chat cap, and an update
//! repeated inside one batch is answered once.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use botvisor::config::{Config, KindSettings};
use common::{
    ConfigDir, Daemon, HTTP, PROMPT, bot_status, endpoint, supervisor_table, wait_for_status,
};
use fake_telegram::{Chat, FakeTelegram, Fault, RateLimits, SentMessage, User};

const FAQ_TOKEN: &str = "5001:token-of-the-outbox-faq-bot";
const ECHO_TOKEN: &str = "5002:token-of-the-outbox-echo-bot";
const ECHO_TOKEN_2: &str = "5003:token-of-the-second-echo-bot";
const VARS: &[(&str, &str)] = &[
    ("FAQ_TOKEN", FAQ_TOKEN),
    ("ECHO_TOKEN", ECHO_TOKEN),
    ("ECHO_TOKEN_2", ECHO_TOKEN_2),
];

/// The shipped Tanıtım commands with the answer each gets.
fn shipped_commands() -> Vec<(String, String)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("supervisor.toml");
    let config = Config::load(&path).expect("the shipped config is valid");
    match &config.bot("tanitim").expect("a tanitim bot").kind {
        KindSettings::Faq(faq) => faq
            .content
            .commands
            .iter()
            .map(|c| (c.name.clone(), c.answer.clone()))
            .collect(),
        other => panic!("tanitim is {}", other.name()),
    }
}

fn echo_config(api_url: &str, extra: &str, bots: usize) -> String {
    let mut text = supervisor_table(api_url, &format!("{HTTP}{extra}"));
    for i in 1..=bots {
        let var = if i == 1 {
            "ECHO_TOKEN".to_owned()
        } else {
            format!("ECHO_TOKEN_{i}")
        };
        text.push_str(&format!(
            "[bot.echo{i}]\nkind = \"echo\"\ntoken_env = \"{var}\"\n"
        ));
    }
    text
}

/// How many messages each chat received.
fn per_chat(sent: &[SentMessage]) -> HashMap<i64, usize> {
    let mut counts = HashMap::new();
    for message in sent {
        *counts.entry(message.chat_id).or_default() += 1;
    }
    counts
}

fn limited_fake_requests(tg: &FakeTelegram, token: &str) -> usize {
    tg.requests_of(token, "sendMessage")
        .iter()
        .filter(|r| r.status() == Some(429))
        .count()
}

#[tokio::test]
async fn a_busy_group_never_holds_up_private_chats() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.set_rate_limits(RateLimits::telegram());
    tg.add_bot(FAQ_TOKEN, "tanitim_bot");
    let content = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("content/tanitim.toml");
    let config = ConfigDir::new(&format!(
        "{}[bot.tanitim]\nkind = \"faq\"\ntoken_env = \"FAQ_TOKEN\"\ncontent_file = \"{}\"\n",
        supervisor_table(&tg.url(), ""),
        content.display()
    ));
    let mut daemon = Daemon::start(&config.path, VARS);
    tg.wait_until_polling(FAQ_TOKEN, PROMPT)
        .await
        .expect("the bot polls");
    let commands = shipped_commands();

    // 40 members of one supergroup ask at once, each a different question
    // in turn, so the order of the answers can be checked.
    let group = Chat::supergroup(-1_001_555_000_001, "Aday öğrenciler");
    let mut expected_group = Vec::new();
    for i in 0..40u64 {
        let member = User::new(700_000 + i, "Aday");
        let (name, answer) = &commands[i as usize % commands.len()];
        tg.inject_message(FAQ_TOKEN, &group, &member, &format!("/{name}@tanitim_bot"));
        expected_group.push(answer.clone());
    }
    // 100 private users ask, 5 a second.
    let staj = commands
        .iter()
        .find(|(name, _)| name == "staj")
        .map(|(_, answer)| answer.clone())
        .expect("a /staj command");
    let mut asked: HashMap<i64, Instant> = HashMap::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    for i in 0..100u64 {
        ticker.tick().await;
        let user = User::new(800_000 + i, "Öğrenci");
        tg.inject_message(FAQ_TOKEN, &Chat::private(&user), &user, "/staj");
        asked.insert(user.id as i64, Instant::now());
    }
    // Every private chat is answered, each within a couple of seconds of
    // asking (a generous ceiling: the head-of-line wait it replaces was a
    // minute), while the group is still being answered at 20 a minute.
    let started = Instant::now();
    loop {
        let sent = tg.sent_messages(FAQ_TOKEN);
        let private = sent.iter().filter(|m| m.chat_id > 0).count();
        if private == 100 {
            break;
        }
        tg.wait_for_sent(FAQ_TOKEN, sent.len() + 1, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("private replies stalled at {private}: {e:?}"));
    }
    let sent = tg.sent_messages(FAQ_TOKEN);
    for message in sent.iter().filter(|m| m.chat_id > 0) {
        assert!(message.text.starts_with(&staj), "{}", message.text);
        let waited = message.at.duration_since(asked[&message.chat_id]);
        assert!(
            waited < Duration::from_secs(2),
            "a private reply waited {waited:?}"
        );
    }
    let group_so_far = sent.iter().filter(|m| m.chat_id == group.id).count();
    assert!(
        group_so_far <= 20,
        "{group_so_far} group replies within the first minute"
    );

    // Then all 40 group answers, in the order asked, at Telegram's pace.
    tg.wait_for_sent(FAQ_TOKEN, 140, Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("the group's answers: {e:?} after {:?}", started.elapsed()));
    let sent = tg.sent_messages(FAQ_TOKEN);
    let group_texts: Vec<&str> = sent
        .iter()
        .filter(|m| m.chat_id == group.id)
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(group_texts.len(), 40);
    for (text, answer) in group_texts.iter().zip(&expected_group) {
        assert!(text.starts_with(answer.as_str()), "out of order: {text}");
    }
    let last_private = sent
        .iter()
        .filter(|m| m.chat_id > 0)
        .map(|m| m.at)
        .max()
        .expect("private replies");
    let group_21st = sent
        .iter()
        .filter(|m| m.chat_id == group.id)
        .nth(20)
        .map(|m| m.at)
        .expect("a 21st group reply");
    assert!(
        last_private < group_21st,
        "a private reply came after the group's 21st"
    );
    assert!(
        limited_fake_requests(&tg, FAQ_TOKEN) <= 1,
        "{} answers of 429",
        limited_fake_requests(&tg, FAQ_TOKEN)
    );
    daemon.stop_cleanly().await;
}

/// Queues 30 replies that cannot go (every sendMessage fails), stops the
/// daemon as `stop` says, and checks the next run delivers each once.
async fn queued_replies_survive(stop: i32) {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(ECHO_TOKEN, "echo1_bot");
    tg.add_fault(ECHO_TOKEN, "sendMessage", Fault::server_error().forever());
    let config = ConfigDir::new(&echo_config(&tg.url(), "", 1));
    let mut daemon = Daemon::start(&config.path, VARS);
    let base = endpoint(&mut daemon).await;
    for i in 0..30u64 {
        let user = User::new(9_000 + i, "Aday");
        tg.inject_message(
            ECHO_TOKEN,
            &Chat::private(&user),
            &user,
            &format!("soru {i}"),
        );
    }
    wait_for_status(&base, "echo1", PROMPT, |s| s["outbox"]["pending"] == 30).await;
    daemon.signal(stop);
    let status = daemon.wait_exit(PROMPT).await;
    if stop == libc::SIGTERM {
        assert_eq!(status.code(), Some(0), "{}", daemon.output());
    }
    assert!(tg.sent_messages(ECHO_TOKEN).is_empty());

    tg.clear_faults(ECHO_TOKEN);
    let mut daemon = Daemon::start(&config.path, VARS);
    tg.wait_for_sent(ECHO_TOKEN, 30, PROMPT)
        .await
        .expect("every queued reply after the restart");
    let base = endpoint(&mut daemon).await;
    wait_for_status(&base, "echo1", PROMPT, |s| s["outbox"]["pending"] == 0).await;
    let sent = tg.sent_messages(ECHO_TOKEN);
    assert_eq!(sent.len(), 30, "none twice");
    let counts = per_chat(&sent);
    assert!(
        counts.len() == 30 && counts.values().all(|n| *n == 1),
        "{counts:?}"
    );
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn queued_replies_survive_kill_9() {
    queued_replies_survive(libc::SIGKILL).await;
}

#[tokio::test]
async fn queued_replies_survive_sigterm() {
    queued_replies_survive(libc::SIGTERM).await;
}

#[tokio::test]
async fn kill_9_in_a_burst_loses_nothing_and_repeats_at_most_two_per_bot() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.set_rate_limits(RateLimits::telegram());
    let tokens = [ECHO_TOKEN, ECHO_TOKEN_2];
    for (i, token) in tokens.iter().enumerate() {
        tg.add_bot(token, &format!("echo{}_bot", i + 1));
    }
    let config = ConfigDir::new(&echo_config(&tg.url(), "", 2));
    let mut daemon = Daemon::start(&config.path, VARS);
    for token in tokens {
        tg.wait_until_polling(token, PROMPT).await.expect("polls");
    }
    for i in 0..500u64 {
        let user = User::new(20_000 + i, "Aday");
        for token in tokens {
            tg.inject_message(token, &Chat::private(&user), &user, &format!("m{i}"));
        }
    }
    // Killed in full flow: about half of each bot's replies have gone out.
    for token in tokens {
        tg.wait_for_sent(token, 200, Duration::from_secs(30))
            .await
            .expect("half of the burst");
    }
    daemon.signal(libc::SIGKILL);
    daemon.wait_exit(PROMPT).await;
    let _daemon = Daemon::start(&config.path, VARS);
    for token in tokens {
        loop {
            let sent = tg.sent_messages(token);
            if per_chat(&sent).len() == 500 {
                break;
            }
            tg.wait_for_sent(token, sent.len() + 1, Duration::from_secs(30))
                .await
                .unwrap_or_else(|e| panic!("lost replies: {e:?}"));
        }
        let sent = tg.sent_messages(token);
        let repeated = sent.len() - 500;
        assert!(repeated <= 2, "{repeated} replies went out twice");
        for message in &sent {
            let chat = message.chat_id - 20_000;
            assert_eq!(message.text, format!("m{chat}"));
        }
    }
}

#[tokio::test]
async fn connections_dropped_for_ten_seconds_lose_no_reply() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(ECHO_TOKEN, "echo1_bot");
    let config = ConfigDir::new(&echo_config(&tg.url(), "", 1));
    let mut daemon = Daemon::start(&config.path, VARS);
    tg.wait_until_polling(ECHO_TOKEN, PROMPT)
        .await
        .expect("polls");
    tg.add_fault(
        ECHO_TOKEN,
        "sendMessage",
        Fault::drop_connection().forever(),
    );
    let dropped_at = Instant::now();
    for i in 0..10u64 {
        let user = User::new(30_000 + i, "Aday");
        tg.inject_message(ECHO_TOKEN, &Chat::private(&user), &user, &format!("d{i}"));
    }
    // Every reply was tried and failed at least twice (so it is retried,
    // not given up) ...
    tg.wait_for_request(ECHO_TOKEN, "sendMessage", 20, PROMPT)
        .await
        .expect("tries and retries");
    // ... and the outage lasts ten seconds in all.
    let outage = Duration::from_secs(10);
    if let Some(left) = outage.checked_sub(dropped_at.elapsed()) {
        tokio::time::sleep(left).await;
    }
    tg.clear_faults(ECHO_TOKEN);
    tg.wait_for_sent(ECHO_TOKEN, 10, Duration::from_secs(90))
        .await
        .expect("every reply once the connections work");
    let base = endpoint(&mut daemon).await;
    wait_for_status(&base, "echo1", PROMPT, |s| s["outbox"]["pending"] == 0).await;
    let sent = tg.sent_messages(ECHO_TOKEN);
    assert_eq!(sent.len(), 10);
    for message in &sent {
        assert_eq!(message.text, format!("d{}", message.chat_id - 30_000));
    }
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn a_flooding_user_meets_the_per_chat_cap_with_one_log_line() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.set_rate_limits(RateLimits::telegram());
    tg.add_bot(ECHO_TOKEN, "echo1_bot");
    let config = ConfigDir::new(&echo_config(
        &tg.url(),
        "[supervisor.outbox]\nmax_per_chat = 5\n",
        1,
    ));
    let user = User::new(77, "Sel");
    for i in 0..20 {
        tg.inject_message(ECHO_TOKEN, &Chat::private(&user), &user, &format!("f{i}"));
    }
    let mut daemon = Daemon::start(&config.path, VARS);
    let line = daemon
        .wait_for_line("message(s) to chat 77: it already had 5 waiting", PROMPT)
        .await;
    let dropped: usize = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("dropped="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line}"));
    let base = endpoint(&mut daemon).await;
    wait_for_status(&base, "echo1", Duration::from_secs(30), |s| {
        s["outbox"]["pending"] == 0
    })
    .await;
    let sent = tg.sent_messages(ECHO_TOKEN);
    assert_eq!(sent.len() + dropped, 20, "{line}");
    assert!(sent.len() <= 6, "{} replies past a cap of 5", sent.len());
    let texts: Vec<&str> = sent.iter().map(|m| m.text.as_str()).collect();
    let first: Vec<String> = (0..sent.len()).map(|i| format!("f{i}")).collect();
    assert_eq!(texts, first, "the first ones, in order");
    let status = bot_status(&base, "echo1").await;
    assert_eq!(status["outbox"]["dropped"], dropped as u64, "{status}");
    assert_eq!(
        daemon
            .lines()
            .iter()
            .filter(|l| l.contains("to chat 77: it already had"))
            .count(),
        1,
        "one line per flood"
    );
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn an_update_repeated_inside_one_batch_is_answered_once() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(ECHO_TOKEN, "echo1_bot");
    let user = User::new(88, "Tekrar");
    tg.inject_message(ECHO_TOKEN, &Chat::private(&user), &user, "bir kez");
    let update = tg.pending_updates(ECHO_TOKEN)[0].clone();
    tg.add_fault(
        ECHO_TOKEN,
        "getUpdates",
        Fault::ok(serde_json::json!([update.clone(), update])).times(1),
    );
    let config = ConfigDir::new(&echo_config(&tg.url(), "", 1));
    let mut daemon = Daemon::start(&config.path, VARS);
    tg.wait_for_sent(ECHO_TOKEN, 1, PROMPT)
        .await
        .expect("answered");
    common::assert_echoes(&tg, ECHO_TOKEN, 88, "sonra").await;
    let texts: Vec<String> = tg
        .sent_messages(ECHO_TOKEN)
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["bir kez", "sonra"]);
    daemon.stop_cleanly().await;
}

/// A handler stuck on something other than sending (here the echo bot's
/// `slow_on`) holds up its own chat only: 250 other chats are answered
/// behind it, well past Telegram's window of 100 updates. Its own chat keeps
/// at most 100 updates waiting and drops the rest with one line; after a
/// stop, what it did not handle is handled by the next process.
#[tokio::test]
async fn a_stuck_handler_holds_up_its_own_chat_only() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(ECHO_TOKEN, "echo1_bot");
    let stuck = User::new(4_000, "Takılan");
    tg.inject_message(ECHO_TOKEN, &Chat::private(&stuck), &stuck, "takıl");
    for i in 0..150 {
        tg.inject_message(ECHO_TOKEN, &Chat::private(&stuck), &stuck, &format!("f{i}"));
    }
    for i in 0..250u64 {
        let user = User::new(5_000 + i, "Aday");
        tg.inject_message(ECHO_TOKEN, &Chat::private(&user), &user, &format!("o{i}"));
    }
    let slow = "slow_on = \"takıl\"\nslow_for = \"120s\"\n";
    // Unpaced: 101 replies to one chat would take 101 s at Telegram's pace
    // (and meet the outbox's own cap of 100 per chat).
    let unpaced = "[supervisor.outbox]\npacing = false\nmax_per_chat = 200\n";
    let config = ConfigDir::new(&format!("{}{slow}", echo_config(&tg.url(), unpaced, 1)));
    let mut daemon = Daemon::start(&config.path, VARS);
    let sent = tg
        .wait_for_sent(ECHO_TOKEN, 250, PROMPT)
        .await
        .expect("every other chat is answered while one handler is stuck");
    assert!(
        sent.iter().all(|m| m.chat_id != 4_000),
        "the stuck chat's later updates wait for it"
    );
    let base = endpoint(&mut daemon).await;
    assert_eq!(bot_status(&base, "echo1").await["state"], "running");
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_exit(PROMPT).await;
    assert_eq!(status.code(), Some(0), "{}", daemon.output());
    let drops: Vec<String> = daemon
        .lines()
        .into_iter()
        .filter(|l| l.contains("update(s) from chat 4000 unhandled"))
        .collect();
    assert_eq!(drops.len(), 1, "{drops:?}");
    assert!(drops[0].contains("dropped 50 update(s)"), "{}", drops[0]);

    // The next process handles what the stuck chat left in the inbox: the
    // stuck update and the 100 that waited, in order, once each.
    config.write("supervisor.toml", &echo_config(&tg.url(), unpaced, 1));
    let mut daemon = Daemon::start(&config.path, VARS);
    tg.wait_for_sent(ECHO_TOKEN, 250 + 101, PROMPT)
        .await
        .expect("the stuck chat's updates after the restart");
    let base = endpoint(&mut daemon).await;
    wait_for_status(&base, "echo1", PROMPT, |s| s["outbox"]["pending"] == 0).await;
    let texts: Vec<String> = tg
        .sent_messages(ECHO_TOKEN)
        .into_iter()
        .filter(|m| m.chat_id == 4_000)
        .map(|m| m.text)
        .collect();
    let mut expected = vec!["takıl".to_owned()];
    expected.extend((0..100).map(|i| format!("f{i}")));
    assert_eq!(texts, expected);
    assert_eq!(tg.sent_messages(ECHO_TOKEN).len(), 351, "none twice");
    daemon.stop_cleanly().await;
}
