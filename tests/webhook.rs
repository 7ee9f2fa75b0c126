//! Webhook delivery against the fake Telegram, running the real binary: the
//! bot sets its webhook with a secret derived from its token, answers the
//! updates POSTed to `/telegram/<bot>` (200 only once stored), refuses
//! requests without the secret, answers a repeated delivery once, answers
//! 503 while it stops, handles after a restart what it had stored, and a
//! reload between polling and webhook makes the right calls.
//!
//! The test plays Telegram's part of the delivery: it POSTs to the endpoint
//! itself, as Telegram would after `setWebhook`.

mod common;

use std::time::{Duration, Instant};

use common::{ConfigDir, Daemon, HTTP, PROMPT, endpoint, supervisor_table};
use fake_telegram::{Chat, FakeTelegram, User};
use serde_json::Value;

const TOKEN: &str = "6001:token-of-the-webhook-echo-bot";
const VARS: &[(&str, &str)] = &[("HOOK_TOKEN", TOKEN), ("RUST_LOG", "botvisor=debug,info")];
/// What Telegram would call; the fake does not deliver here, the test does.
const PUBLIC: &str = "[supervisor.webhook]\npublic_url = \"https://127.0.0.1:8443\"\n";

fn config(api_url: &str, delivery: &str, extra_bot: &str) -> String {
    format!(
        "{}[bot.hook]\nkind = \"echo\"\ntoken_env = \"HOOK_TOKEN\"\ndelivery = \"{delivery}\"\n{extra_bot}",
        supervisor_table(api_url, &format!("{HTTP}{PUBLIC}"))
    )
}

/// The `setWebhook` request the daemon made (the `n`th), as the fake saw it.
async fn set_webhook(tg: &FakeTelegram, n: usize) -> Value {
    tg.wait_for_request(TOKEN, "setWebhook", n, PROMPT)
        .await
        .expect("the daemon sets its webhook")
        .body
}

/// An update as Telegram sends it: injected into the fake (so its ids are
/// the fake's), then taken back out as JSON.
fn update(tg: &FakeTelegram, user: u64, text: &str) -> Value {
    let user = User::new(user, "Kanca");
    let id = tg.inject_message(TOKEN, &Chat::private(&user), &user, text);
    tg.pending_updates(TOKEN)
        .into_iter()
        .find(|u| u["update_id"] == i64::from(id))
        .expect("the injected update")
}

async fn post(base: &str, bot: &str, secret: Option<&str>, body: &Value) -> u16 {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/telegram/{bot}"))
        .json(body);
    if let Some(secret) = secret {
        request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
    }
    request
        .send()
        .await
        .map_or(0, |response| response.status().as_u16())
}

fn texts(tg: &FakeTelegram) -> Vec<String> {
    tg.sent_messages(TOKEN)
        .into_iter()
        .map(|m| m.text)
        .collect()
}

#[tokio::test]
async fn a_webhook_bot_answers_once_and_refuses_strangers() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN, "hook_bot");
    let dir = ConfigDir::new(&config(&tg.url(), "webhook", ""));
    let mut daemon = Daemon::start(&dir.path, VARS);
    let base = endpoint(&mut daemon).await;
    let set = set_webhook(&tg, 1).await;
    assert_eq!(set["url"], "https://127.0.0.1:8443/telegram/hook", "{set}");
    let secret = set["secret_token"]
        .as_str()
        .expect("a secret token")
        .to_owned();
    assert_eq!(secret.len(), 64, "{set}");
    assert!(!secret.contains("token-of-the"), "derived, not the token");
    assert_ne!(set["drop_pending_updates"], true, "{set}");

    let first = update(&tg, 1, "merhaba");
    assert_eq!(post(&base, "hook", Some(&secret), &first).await, 200);
    tg.wait_for_sent(TOKEN, 1, PROMPT).await.expect("answered");
    // Telegram repeats a delivery whose answer it missed: answered, not
    // handled again.
    assert_eq!(post(&base, "hook", Some(&secret), &first).await, 200);
    // Strangers: no secret, a wrong one, a bot that is not a webhook bot.
    let stranger = update(&tg, 2, "sahte");
    assert_eq!(post(&base, "hook", None, &stranger).await, 401);
    assert_eq!(post(&base, "hook", Some("wrong"), &stranger).await, 401);
    assert_eq!(post(&base, "other", Some(&secret), &stranger).await, 404);
    let second = update(&tg, 1, "ikinci");
    assert_eq!(post(&base, "hook", Some(&secret), &second).await, 200);
    tg.wait_for_sent(TOKEN, 2, PROMPT).await.expect("answered");
    daemon.stop_cleanly().await;
    assert_eq!(
        texts(&tg),
        ["merhaba", "ikinci"],
        "each once, strangers never"
    );
    let refused: Vec<String> = daemon
        .lines()
        .into_iter()
        .filter(|l| l.contains("webhook request(s) without the right secret"))
        .collect();
    assert_eq!(refused.len(), 1, "one line a minute at most: {refused:?}");
    assert!(
        !daemon.output().contains(&secret),
        "the secret is never logged"
    );
}

#[tokio::test]
async fn a_stop_answers_503_and_what_was_stored_is_handled_after_the_restart() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN, "hook_bot");
    let slow = "slow_on = \"yavaş\"\nslow_for = \"60s\"\n";
    let dir = ConfigDir::new(&config(&tg.url(), "webhook", slow));
    let mut daemon = Daemon::start(&dir.path, VARS);
    let base = endpoint(&mut daemon).await;
    let secret = set_webhook(&tg, 1).await["secret_token"]
        .as_str()
        .expect("a secret")
        .to_owned();
    let stuck = update(&tg, 1, "yavaş");
    assert_eq!(post(&base, "hook", Some(&secret), &stuck).await, 200);
    daemon
        .wait_for_line("handling an update update_id=", PROMPT)
        .await;

    let signalled = Instant::now();
    daemon.signal(libc::SIGTERM);
    // While it stops (the board says so first), Telegram is told to come
    // back later.
    let started = Instant::now();
    while common::get(&base, "/healthz").await.0 != 503 {
        assert!(started.elapsed() < PROMPT, "/healthz never turned 503");
        tokio::task::yield_now().await;
    }
    let late = update(&tg, 2, "geç");
    assert_eq!(post(&base, "hook", Some(&secret), &late).await, 503);
    let status = daemon.wait_exit(PROMPT).await;
    assert_eq!(status.code(), Some(0), "{}", daemon.output());
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "exits inside shutdown_timeout"
    );
    assert!(texts(&tg).is_empty());

    // The next run handles the stored update; Telegram repeats both
    // deliveries (the stuck one's answer was 200, but a repeat is
    // harmless); each is answered once.
    dir.write("supervisor.toml", &config(&tg.url(), "webhook", ""));
    let mut daemon = Daemon::start(&dir.path, VARS);
    let base = endpoint(&mut daemon).await;
    set_webhook(&tg, 2).await;
    tg.wait_for_sent(TOKEN, 1, PROMPT)
        .await
        .expect("the stored update after the restart");
    assert_eq!(post(&base, "hook", Some(&secret), &stuck).await, 200);
    assert_eq!(post(&base, "hook", Some(&secret), &late).await, 200);
    tg.wait_for_sent(TOKEN, 2, PROMPT)
        .await
        .expect("the late one");
    daemon.stop_cleanly().await;
    assert_eq!(texts(&tg), ["yavaş", "geç"]);
}

#[tokio::test]
async fn a_reload_moves_a_bot_between_polling_and_webhook() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN, "hook_bot");
    let dir = ConfigDir::new(&config(&tg.url(), "polling", ""));
    let mut daemon = Daemon::start(&dir.path, VARS);
    common::assert_echoes(&tg, TOKEN, 1, "yoklama").await;

    dir.write("supervisor.toml", &config(&tg.url(), "webhook", ""));
    daemon.signal(libc::SIGHUP);
    set_webhook(&tg, 1).await;
    assert!(tg.webhook_url(TOKEN).is_some());

    // Back to polling: botvisor removes the webhook it set (whatever
    // on_webhook says) and polls; an update sent meanwhile is not lost.
    let user = User::new(3, "Geri");
    tg.inject_message(TOKEN, &Chat::private(&user), &user, "arada");
    let with_park = config(&tg.url(), "polling", "").replace(
        "[supervisor.restart]\n",
        "[supervisor.restart]\non_webhook = \"park\"\n",
    );
    dir.write("supervisor.toml", &with_park);
    daemon.signal(libc::SIGHUP);
    tg.wait_for_request(TOKEN, "deleteWebhook", 1, PROMPT)
        .await
        .expect("the webhook is deleted");
    tg.wait_for_sent(TOKEN, 2, PROMPT)
        .await
        .expect("the update sent meanwhile is answered by polling");
    assert!(tg.webhook_url(TOKEN).is_none());
    daemon.stop_cleanly().await;
    assert_eq!(texts(&tg), ["yoklama", "arada"]);
}

/// `kill -9` after an update was stored and answered 200 but before its
/// handler finished: the next run handles it from the inbox, and
/// Telegram's repeat of it (it may have missed the 200) is answered 200
/// and not handled again.
#[tokio::test]
async fn kill_9_after_the_store_handles_it_once() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN, "hook_bot");
    let slow = "slow_on = \"yavaş\"\nslow_for = \"60s\"\n";
    let dir = ConfigDir::new(&config(&tg.url(), "webhook", slow));
    let mut daemon = Daemon::start(&dir.path, VARS);
    let base = endpoint(&mut daemon).await;
    let secret = set_webhook(&tg, 1).await["secret_token"]
        .as_str()
        .expect("a secret")
        .to_owned();
    let stuck = update(&tg, 1, "yavaş");
    assert_eq!(post(&base, "hook", Some(&secret), &stuck).await, 200);
    daemon
        .wait_for_line("handling an update update_id=", PROMPT)
        .await;
    daemon.signal(libc::SIGKILL);
    assert_eq!(daemon.wait_exit(PROMPT).await.code(), None, "killed");

    let quick = config(
        &tg.url(),
        "webhook",
        "slow_on = \"yavaş\"\nslow_for = \"10ms\"\n",
    );
    dir.write("supervisor.toml", &quick);
    let mut daemon = Daemon::start(&dir.path, VARS);
    let base = endpoint(&mut daemon).await;
    set_webhook(&tg, 2).await;
    tg.wait_for_sent(TOKEN, 1, PROMPT)
        .await
        .expect("handled from the inbox");
    assert_eq!(post(&base, "hook", Some(&secret), &stuck).await, 200);
    let next = update(&tg, 1, "sonra");
    assert_eq!(post(&base, "hook", Some(&secret), &next).await, 200);
    tg.wait_for_sent(TOKEN, 2, PROMPT)
        .await
        .expect("the next one");
    daemon.stop_cleanly().await;

    // A later run remembers what it handled (for a day): a repeat of an
    // update handled before the restart is not handled again.
    let mut daemon = Daemon::start(&dir.path, VARS);
    let base = endpoint(&mut daemon).await;
    set_webhook(&tg, 3).await;
    assert_eq!(post(&base, "hook", Some(&secret), &next).await, 200);
    let last = update(&tg, 1, "son");
    assert_eq!(post(&base, "hook", Some(&secret), &last).await, 200);
    tg.wait_for_sent(TOKEN, 3, PROMPT)
        .await
        .expect("the last one");
    daemon.stop_cleanly().await;
    assert_eq!(
        texts(&tg),
        ["yavaş", "sonra", "son"],
        "no repeat was handled again"
    );
}
