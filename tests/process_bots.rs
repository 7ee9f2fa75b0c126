//! Real, unmodified bots of the libraries operators use (python-telegram-bot
//! 22, aiogram 3, teloxide 0.17; `tests/bots/`, `examples/teloxide_bot.rs`)
//! run by botvisor as process bots: each reads only `BOT_TOKEN` and
//! `BOT_API_URL`, and through the gateway answers a command with a button,
//! the press, a text, a photo and a document uploaded in its library's own
//! multipart style, and a user's photo fetched back through getFile and the
//! file download. What the fake Telegram sees is what the bot did, sent
//! with the real token by botvisor. Every wait is for an event (the fake's
//! sent messages and requests, the status board), bounded.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{ConfigDir, Daemon, HTTP, bot_status, endpoint, supervisor_table};
use fake_telegram::{Chat, FakeTelegram, MediaKind, User};

/// The first getUpdates through the gateway: importing aiogram takes
/// several seconds of CPU, more on a busy 2-core machine.
const STARTUP: Duration = Duration::from_secs(120);
/// Anything after that.
const STEP: Duration = Duration::from_secs(30);

/// A token of Telegram's shape, made at run time.
fn token(id: u64) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let secret: String = (0..35u64)
        .map(|i| char::from(ALPHABET[usize::try_from((id * 11 + i * 7) % 64).unwrap_or(0)]))
        .collect();
    format!("{id}:{secret}")
}

/// `command` as a TOML list.
fn toml_list(command: &[PathBuf]) -> String {
    let parts: Vec<String> = command
        .iter()
        .map(|part| format!("{:?}", part.display().to_string()))
        .collect();
    format!("[{}]", parts.join(", "))
}

/// botvisor running one process bot `lib` with `command`, against `tg`.
pub struct Running {
    pub daemon: Daemon,
    pub base: String,
    pub _config: ConfigDir,
}

/// Starts botvisor with process bot `lib`, and waits until its program
/// asks the gateway for updates.
pub async fn start(tg: &FakeTelegram, token: &str, command: &[PathBuf], extra: &str) -> Running {
    let config = ConfigDir::new(&format!(
        "{}{extra}[bot.lib]\nkind = \"process\"\ntoken_env = \"LIB_TOKEN\"\ncommand = {}\n",
        supervisor_table(&tg.url(), HTTP),
        toml_list(command)
    ));
    let mut daemon = Daemon::start(&config.path, &[("LIB_TOKEN", token)]);
    let base = endpoint(&mut daemon).await;
    let started = std::time::Instant::now();
    loop {
        let status = bot_status(&base, "lib").await;
        if status["process"]["last_get_updates"].is_string() {
            break;
        }
        assert!(
            started.elapsed() < STARTUP,
            "the program never polled the gateway: {status}\n{}",
            daemon.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Running {
        daemon,
        base,
        _config: config,
    }
}

/// The exercise, seen from the fake: what the bot sent, with the real token.
async fn exercise(tg: &FakeTelegram, token: &str, running: &mut Running) {
    let alice = User::new(4242, "Alice");
    let chat = Chat::private(&alice);
    let output = |running: &Running| running.daemon.output();

    // /start → "started" with one button.
    tg.inject_message(token, &chat, &alice, "/start");
    let sent = tg
        .wait_for_sent(token, 1, STEP)
        .await
        .unwrap_or_else(|e| panic!("no answer to /start: {e:?}\n{}", output(running)));
    assert_eq!(sent[0].text, "started");
    let markup = sent[0].reply_markup.clone().expect("a keyboard");
    assert_eq!(markup["inline_keyboard"][0][0]["callback_data"], "pressed");

    // The press: answered (forwarded), then the message edited (the outbox).
    tg.inject_callback_query(token, &chat, &alice, sent[0].message_id, "pressed");
    let edited = {
        let started = std::time::Instant::now();
        loop {
            let edits = tg.edited_messages(token);
            if !edits.is_empty() {
                break edits;
            }
            assert!(started.elapsed() < STEP, "no edit\n{}", output(running));
            tg.wait_for_request(token, "editMessageText", 1, STEP)
                .await
                .unwrap_or_else(|e| panic!("no edit: {e:?}\n{}", output(running)));
        }
    };
    assert_eq!(edited[0].text, "pressed");
    assert_eq!(edited[0].message_id, sent[0].message_id);
    let answers = tg.callback_answers(token);
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0].text.as_deref(), Some("ok"));

    // A text comes back as it was sent.
    let text = "Merhaba, gateway: ünïcödé & ✓ 100%";
    tg.inject_message(token, &chat, &alice, text);
    let sent = tg
        .wait_for_sent(token, 2, STEP)
        .await
        .unwrap_or_else(|e| panic!("no echo: {e:?}\n{}", output(running)));
    assert_eq!(sent[1].text, text);

    // A photo uploaded in the library's own multipart style.
    tg.inject_message(token, &chat, &alice, "/photo");
    let sent = tg
        .wait_for_sent(token, 3, STEP)
        .await
        .unwrap_or_else(|e| panic!("no photo: {e:?}\n{}", output(running)));
    assert!(sent[2].is(MediaKind::Photo), "{:?}", sent[2]);
    assert_eq!(sent[2].caption.as_deref(), Some("dot"));
    let photo = sent[2].media.clone().expect("the photo's file");
    assert!(photo.bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{photo:?}");

    // The same photo again by its file_id (teloxide: multipart even so).
    tg.inject_message(
        token,
        &chat,
        &alice,
        &format!("/photo_id {}", photo.file_id),
    );
    let sent = tg
        .wait_for_sent(token, 4, STEP)
        .await
        .unwrap_or_else(|e| panic!("no photo by id: {e:?}\n{}", output(running)));
    assert_eq!(sent[3].caption.as_deref(), Some("again"));
    assert_eq!(
        sent[3].media.as_ref().map(|m| m.file_id.clone()),
        Some(photo.file_id.clone())
    );

    // A document of 200 KB, every byte where it should be.
    tg.inject_message(token, &chat, &alice, "/doc");
    let sent = tg
        .wait_for_sent(token, 5, STEP)
        .await
        .unwrap_or_else(|e| panic!("no document: {e:?}\n{}", output(running)));
    assert!(sent[4].is(MediaKind::Document), "{:?}", sent[4]);
    let document = sent[4].media.clone().expect("the document's file");
    let pattern: Vec<u8> = (0..204_800u32)
        .map(|i| u8::try_from(i % 251).unwrap_or(0))
        .collect();
    assert!(document.bytes == pattern, "the document's bytes differ");

    // A user's photo, fetched through getFile and the download.
    let picture: Vec<u8> = (0..10_240u32).map(|i| (i % 7) as u8).collect();
    tg.inject_photo(token, &chat, &alice, picture.clone(), None);
    let sent = tg
        .wait_for_sent(token, 6, STEP)
        .await
        .unwrap_or_else(|e| panic!("no download: {e:?}\n{}", output(running)));
    assert_eq!(sent[5].text, format!("got {} bytes", picture.len()));

    // Nothing the bot did reached the fake with anything but the real
    // token, and the status board saw the program's requests.
    let status = bot_status(&running.base, "lib").await;
    assert!(status["process"]["pid"].is_number(), "{status}");
    assert!(
        status["process"]["updates_confirmed"].as_u64().unwrap_or(0) >= 6,
        "{status}"
    );
}

/// The command that runs `tests/bots/<script>` with the tests' venv.
async fn python_bot(script: &str) -> Vec<PathBuf> {
    let python = tokio::task::spawn_blocking(common::python::python)
        .await
        .expect("the venv");
    vec![python, common::python::bot_script(script)]
}

async fn run(id: u64, username: &str, command: Vec<PathBuf>) {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let token = token(id);
    tg.add_bot(&token, username);
    let mut running = start(&tg, &token, &command, "").await;
    exercise(&tg, &token, &mut running).await;
    running.daemon.stop_cleanly().await;
}

#[tokio::test]
async fn python_telegram_bot_through_the_gateway() {
    let command = python_bot("ptb_bot.py").await;
    run(7_200_000_001, "ptb_gateway_bot", command).await;
}

#[tokio::test]
async fn aiogram_through_the_gateway() {
    let command = python_bot("aiogram_bot.py").await;
    run(7_200_000_002, "aiogram_gateway_bot", command).await;
}

#[tokio::test]
async fn teloxide_through_the_gateway() {
    let example = tokio::task::spawn_blocking(common::python::teloxide_example)
        .await
        .expect("the teloxide example");
    run(7_200_000_003, "teloxide_gateway_bot", vec![example]).await;
}

#[tokio::test]
async fn a_busy_group_through_the_gateway_gets_every_reply_and_private_users_are_still_answered() {
    let command = python_bot("ptb_bot.py").await;
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.set_rate_limits(fake_telegram::RateLimits::telegram());
    let token = token(7_200_000_004);
    tg.add_bot(&token, "busy_gateway_bot");
    let mut running = start(&tg, &token, &command, "").await;

    // 40 members of one supergroup write at once.
    let group = Chat::supergroup(-1_001_777_000_001, "Aday öğrenciler");
    for i in 0..40u64 {
        let member = User::new(600_000 + i, "Aday");
        tg.inject_message(&token, &group, &member, &format!("soru {i}"));
    }
    // 20 private users, two a second, are answered within seconds each.
    let mut asked = std::collections::HashMap::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    for i in 0..20u64 {
        ticker.tick().await;
        let user = User::new(610_000 + i, "Öğrenci");
        tg.inject_message(&token, &Chat::private(&user), &user, &format!("özel {i}"));
        asked.insert(
            i64::try_from(user.id).unwrap_or(0),
            std::time::Instant::now(),
        );
    }
    loop {
        let sent = tg.sent_messages(&token);
        if sent.iter().filter(|m| m.chat_id > 0).count() == 20 {
            break;
        }
        tg.wait_for_sent(&token, sent.len() + 1, STEP)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "private replies stalled: {e:?}\n{}",
                    running.daemon.output()
                )
            });
    }
    for message in tg.sent_messages(&token).iter().filter(|m| m.chat_id > 0) {
        let waited = message.at.duration_since(asked[&message.chat_id]);
        assert!(
            waited < Duration::from_secs(5),
            "a private reply waited {waited:?}"
        );
    }
    // Then all 40 group replies, at Telegram's pace, with at most one 429.
    tg.wait_for_sent(&token, 60, Duration::from_secs(150))
        .await
        .unwrap_or_else(|e| panic!("the group's replies: {e:?}\n{}", running.daemon.output()));
    let sent = tg.sent_messages(&token);
    let mut group_texts: Vec<&str> = sent
        .iter()
        .filter(|m| m.chat_id == group.id)
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(group_texts.len(), 40);
    group_texts.sort_unstable();
    group_texts.dedup();
    assert_eq!(group_texts.len(), 40, "a repeated reply");
    assert!(
        tg.too_many_requests_count(&token) <= 1,
        "{} × 429",
        tg.too_many_requests_count(&token)
    );
    running.daemon.stop_cleanly().await;
}

#[tokio::test]
async fn a_program_stopped_mid_burst_is_restarted_and_every_update_is_answered_once() {
    let command = python_bot("ptb_bot.py").await;
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.set_rate_limits(fake_telegram::RateLimits::telegram());
    let token = token(7_200_000_005);
    tg.add_bot(&token, "restarted_gateway_bot");
    let mut running = start(&tg, &token, &command, "").await;
    let first = bot_status(&running.base, "lib").await["process"]["pid"]
        .as_u64()
        .and_then(|pid| i32::try_from(pid).ok())
        .expect("a pid");
    let users: Vec<User> = (0..150u64)
        .map(|i| User::new(620_000 + i, "Kullanıcı"))
        .collect();
    for user in &users[..100] {
        tg.inject_message(
            &token,
            &Chat::private(user),
            user,
            &format!("mesaj {}", user.id),
        );
    }
    tg.wait_for_sent(&token, 20, STEP)
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", running.daemon.output()));
    // The program is told to stop in the middle of the burst (a deploy of
    // the bot's own, a crash of the library): botvisor starts it again.
    // SAFETY: kill(2) on the child botvisor started, with a valid signal.
    unsafe { libc::kill(first, libc::SIGTERM) };
    for user in &users[100..] {
        tg.inject_message(
            &token,
            &Chat::private(user),
            user,
            &format!("mesaj {}", user.id),
        );
    }
    tg.wait_for_sent(&token, 150, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", running.daemon.output()));
    let status = common::wait_for_status(&running.base, "lib", STEP, |s| {
        s["process"]["pid"]
            .as_i64()
            .is_some_and(|pid| pid != i64::from(first))
    })
    .await;
    assert!(status["restarts"].as_u64().unwrap_or(0) >= 1, "{status}");
    let sent = tg.sent_messages(&token);
    for user in &users {
        let to_them = sent
            .iter()
            .filter(|m| m.chat_id == i64::try_from(user.id).unwrap_or(0))
            .count();
        assert_eq!(to_them, 1, "user {} got {to_them} replies", user.id);
    }
    running.daemon.stop_cleanly().await;
}
