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

/// A webhook bot whose handler is stuck (60 s) on one stored update.
struct Stuck {
    tg: FakeTelegram,
    dir: ConfigDir,
    daemon: Daemon,
    base: String,
    secret: String,
    stuck: Value,
}

impl Stuck {
    async fn start() -> Stuck {
        let tg = FakeTelegram::start().await.expect("start the fake");
        tg.add_bot(TOKEN, "hook_bot");
        let slow = "slow_on = \"yavaş\"\nslow_for = \"60s\"\n";
        let dir = ConfigDir::new(&config(&tg.url(), "webhook", slow));
        let mut daemon = Daemon::start(&dir.path, VARS);
        let base = endpoint(&mut daemon).await;
        let secret = secret_of(&tg, 1).await;
        let stuck = update(&tg, 1, "yavaş");
        assert_eq!(post(&base, "hook", Some(&secret), &stuck).await, 200);
        daemon
            .wait_for_line("handling an update update_id=", PROMPT)
            .await;
        Stuck {
            tg,
            dir,
            daemon,
            base,
            secret,
            stuck,
        }
    }
}

/// The secret the daemon gave in its `n`th `setWebhook`.
async fn secret_of(tg: &FakeTelegram, n: usize) -> String {
    set_webhook(tg, n).await["secret_token"]
        .as_str()
        .expect("a secret token")
        .to_owned()
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
    let Stuck {
        tg,
        dir,
        mut daemon,
        base,
        secret,
        stuck,
    } = Stuck::start().await;

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
    let Stuck {
        tg,
        dir,
        mut daemon,
        base: _,
        secret,
        stuck,
    } = Stuck::start().await;
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

/// A port free now, for a config that must name its listener's port before
/// it starts (the public URL the fake delivers to).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A supervisor whose listener is on `port`, and Telegram (the fake) calls
/// it there.
fn delivered_config(api_url: &str, port: u16, extra: &str, bots: &str) -> String {
    format!(
        "{}{bots}",
        supervisor_table(
            api_url,
            &format!(
                "[supervisor.http]\nlisten = \"127.0.0.1:{port}\"\n\
                 [supervisor.webhook]\npublic_url = \"http://127.0.0.1:{port}\"\n{extra}"
            )
        )
    )
}

/// The shipped Tanıtım content, as botvisor reads it.
fn shipped_content() -> botvisor::config::faq::FaqContent {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("supervisor.toml");
    let config = botvisor::config::Config::load(&path).expect("the shipped config");
    match &config.bot("tanitim").expect("tanitim").kind {
        botvisor::config::KindSettings::Faq(settings) => settings.content.clone(),
        other => panic!("tanitim is {}", other.name()),
    }
}

/// The shipped FAQ bot by webhook, the fake delivering as Telegram does:
/// commands and buttons are answered, and every delivery was confirmed.
#[tokio::test]
async fn the_faq_bot_answers_commands_and_buttons_by_webhook() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN, "tanitim_bot");
    let content = shipped_content();
    let content_file =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("content/tanitim.toml");
    let port = free_port();
    let bot = format!(
        "[bot.tanitim]\nkind = \"faq\"\ntoken_env = \"HOOK_TOKEN\"\ndelivery = \"webhook\"\ncontent_file = \"{}\"\n",
        content_file.display()
    );
    let dir = ConfigDir::new(&delivered_config(&tg.url(), port, "", &bot));
    let mut daemon = Daemon::start(&dir.path, VARS);
    set_webhook(&tg, 1).await;
    let user = User::new(7, "Aday");
    let chat = Chat::private(&user);
    tg.inject_message(TOKEN, &chat, &user, "/erasmus");
    let answer = tg.wait_for_sent(TOKEN, 1, PROMPT).await.expect("answered")[0].clone();
    let erasmus = content.command("erasmus").expect("erasmus");
    assert!(
        answer.text.starts_with(erasmus.answer.trim()),
        "{}",
        answer.text
    );
    assert!(answer.reply_markup.is_some(), "the answer has its buttons");
    tg.inject_callback_query(TOKEN, &chat, &user, answer.message_id, "faq:yes");
    tg.wait_for_request(TOKEN, "answerCallbackQuery", 1, PROMPT)
        .await
        .expect("the press is answered");
    let help = tg.wait_for_sent(TOKEN, 2, PROMPT).await.expect("the help")[1].clone();
    assert!(
        help.text.starts_with(content.help_header.trim()),
        "{}",
        help.text
    );
    assert!(
        tg.pending_updates(TOKEN).is_empty(),
        "every delivery confirmed"
    );
    let deliveries = tg.webhook_deliveries(TOKEN);
    assert!(
        deliveries.iter().all(|d| d.status == Some(200)),
        "{deliveries:?}"
    );
    daemon.stop_cleanly().await;
}

/// Telegram reporting failed deliveries is one incident, with one alert,
/// and one all-clear once requests reach botvisor again. Here the webhook
/// is changed behind botvisor's back to an address nobody serves: botvisor
/// notices at its next look, sets its own again, and Telegram delivers
/// what it held.
#[tokio::test]
async fn a_failing_webhook_is_one_incident_and_heals() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN, "hook_bot");
    tg.set_webhook_retry(Duration::from_millis(200), 1_000);
    let port = free_port();
    let alerts = "[supervisor.alerts]\nchat_id = 999\nvia_bot = \"hook\"\n";
    let bot = "[bot.hook]\nkind = \"echo\"\ntoken_env = \"HOOK_TOKEN\"\ndelivery = \"webhook\"\n";
    let dir = ConfigDir::new(&delivered_config(&tg.url(), port, alerts, bot));
    let mut daemon = Daemon::start(&dir.path, VARS);
    let base = endpoint(&mut daemon).await;
    set_webhook(&tg, 1).await;
    common::assert_echoes(&tg, TOKEN, 1, "önce").await;

    tg.set_webhook(TOKEN, "http://127.0.0.1:1/nobody");
    let user = User::new(2, "Bekleyen");
    tg.inject_message(TOKEN, &Chat::private(&user), &user, "arada");
    common::wait_for_status(&base, "hook", PROMPT, |s| {
        s["incidents"].get("webhook_failing").is_some()
    })
    .await;
    // Healed: botvisor set its webhook again and the held update came.
    set_webhook(&tg, 2).await;
    tg.wait_for_request_matching("the held update answered", PROMPT, |r| {
        r.method == "sendmessage" && r.body["text"] == "arada"
    })
    .await
    .expect("the held update is delivered to botvisor's webhook again");
    common::wait_for_status(&base, "hook", PROMPT, |s| {
        s["incidents"].get("webhook_failing").is_none()
    })
    .await;
    tg.wait_for_request_matching("the all-clear", PROMPT, |r| {
        r.method == "sendmessage" && r.body["text"].as_str().is_some_and(|t| t.starts_with("✅"))
    })
    .await
    .expect("one all-clear");
    daemon.stop_cleanly().await;
    let to_operators: Vec<String> = tg
        .sent_messages(TOKEN)
        .into_iter()
        .filter(|m| m.chat_id == 999)
        .map(|m| m.text)
        .collect();
    assert_eq!(to_operators.len(), 2, "{to_operators:?}");
    assert!(
        to_operators[0].starts_with("⚠️") && to_operators[0].contains("webhook"),
        "{to_operators:?}"
    );
    assert!(to_operators[1].starts_with("✅"), "{to_operators:?}");
}

/// Two instances on one PostgreSQL store: the lease holder sets the webhook
/// and takes Telegram's deliveries; requests that reach the other one
/// (Heroku's router picks either) are stored in the shared inbox and
/// handled by the holder. Every update is answered once.
#[tokio::test]
async fn two_instances_on_one_postgres_handle_every_update_once() {
    let Some(db) = common::TestDatabase::create("webhook_two_instances").await else {
        return;
    };
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN, "hook_bot");
    let (port_a, port_b) = (free_port(), free_port());
    let bot = "[bot.hook]\nkind = \"echo\"\ntoken_env = \"HOOK_TOKEN\"\ndelivery = \"webhook\"\n";
    // One public address, as behind Heroku's router: the first instance's.
    let text_a = delivered_config(&tg.url(), port_a, "", bot);
    let text_b = text_a.replace(
        &format!("listen = \"127.0.0.1:{port_a}\""),
        &format!("listen = \"127.0.0.1:{port_b}\""),
    );
    let (dir_a, dir_b) = (ConfigDir::new(&text_a), ConfigDir::new(&text_b));
    let mut vars = VARS.to_vec();
    vars.push(("DATABASE_URL", &db.url));
    let mut a = Daemon::start(&dir_a.path, &vars);
    let secret = secret_of(&tg, 1).await;
    common::assert_echoes(&tg, TOKEN, 1, "a'dan").await;
    let mut b = Daemon::start(&dir_b.path, &vars);
    let base_b = endpoint(&mut b).await;
    common::wait_for_status(&base_b, "hook", PROMPT, |s| s["state"] == "standby").await;

    // Twenty updates: the fake delivers each to the holder, and the test
    // sends each to the standby too, as a router might on a retry.
    for i in 0..20u64 {
        let body = update(&tg, 100 + i, &format!("m{i}"));
        let code = post(&base_b, "hook", Some(&secret), &body).await;
        assert_eq!(code, 200, "{}", b.output());
    }
    tg.wait_for_sent(TOKEN, 21, PROMPT)
        .await
        .expect("all answered");
    let base_a = format!("http://127.0.0.1:{port_a}");
    common::wait_for_status(&base_a, "hook", PROMPT, |s| s["outbox"]["pending"] == 0).await;
    a.stop_cleanly().await;
    b.stop_cleanly().await;
    let mut sent = texts(&tg);
    sent.sort();
    let mut expected: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    expected.push("a'dan".to_owned());
    expected.sort();
    assert_eq!(sent, expected, "every update answered once");
    db.drop_database().await;
}

/// `kill -9` before an update is stored: Telegram never got its 200, so it
/// delivers it again (the fake retries as Telegram does) and the next run
/// handles it once. A body over the 1 MB cap is refused unread.
#[tokio::test]
async fn an_update_not_stored_before_a_crash_comes_again_and_is_handled_once() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN, "hook_bot");
    tg.set_webhook_retry(Duration::from_millis(200), 1_000);
    let port = free_port();
    let bot = "[bot.hook]\nkind = \"echo\"\ntoken_env = \"HOOK_TOKEN\"\ndelivery = \"webhook\"\n";
    let dir = ConfigDir::new(&delivered_config(&tg.url(), port, "", bot));
    let mut daemon = Daemon::start(&dir.path, VARS);
    let base = endpoint(&mut daemon).await;
    let secret = secret_of(&tg, 1).await;
    common::assert_echoes(&tg, TOKEN, 1, "ilk").await;
    let huge = serde_json::json!({ "update_id": 1, "padding": "x".repeat(2 << 20) });
    assert_eq!(post(&base, "hook", Some(&secret), &huge).await, 413);
    daemon.signal(libc::SIGKILL);
    assert_eq!(daemon.wait_exit(PROMPT).await.code(), None, "killed");

    // Sent while nobody listens: each delivery attempt fails.
    let user = User::new(2, "Kayıp");
    tg.inject_message(TOKEN, &Chat::private(&user), &user, "çökerken");
    let failed = tg
        .wait_for_webhook_delivery(TOKEN, tg.webhook_deliveries(TOKEN).len() + 1, PROMPT)
        .await
        .expect("Telegram tries");
    assert_ne!(failed.status, Some(200), "{failed:?}");

    let mut daemon = Daemon::start(&dir.path, VARS);
    tg.wait_for_sent(TOKEN, 2, PROMPT)
        .await
        .expect("delivered again and handled");
    daemon.stop_cleanly().await;
    assert_eq!(texts(&tg), ["ilk", "çökerken"], "once each");
    assert!(tg.pending_updates(TOKEN).is_empty());
}
