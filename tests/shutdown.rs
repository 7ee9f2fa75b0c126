//! Shutdown against the fake, running the real binary: running handlers
//! finish and their updates are confirmed, a handler past the deadline is
//! abandoned with a log line, and a second signal exits at once.

mod common;

use std::time::{Duration, Instant};

use common::{ConfigDir, Daemon, PROMPT, supervisor_table};
use fake_telegram::{Chat, FakeTelegram, User};

const TOKEN: &str = "303:token-of-the-slow-bot";

fn slow_bot(api_url: &str, shutdown_timeout: &str, slow_for: &str) -> ConfigDir {
    let supervisor = supervisor_table(api_url, "").replace(
        "shutdown_timeout = \"5s\"",
        &format!("shutdown_timeout = \"{shutdown_timeout}\""),
    );
    ConfigDir::new(&format!(
        "{supervisor}[bot.slow]\nkind = \"echo\"\ntoken_env = \"SLOW_TOKEN\"\nslow_on = \"slow\"\nslow_for = \"{slow_for}\"\n"
    ))
}

const VARS: &[(&str, &str)] = &[("SLOW_TOKEN", TOKEN), ("RUST_LOG", "botvisor=debug,info")];

#[tokio::test]
async fn sigterm_lets_a_running_handler_finish_and_confirms_its_update() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let bot = tg.add_bot(TOKEN, "slow_bot");
    let config = slow_bot(&tg.url(), "8s", "3s");
    let mut daemon = Daemon::start(&config.path, VARS);
    let user = User::new(21, "Patient");
    let id = tg.inject_message(&bot.token, &Chat::private(&user), &user, "slow");
    daemon
        .wait_for_line(&format!("handling an update update_id={id}"), PROMPT)
        .await;

    let signalled = Instant::now();
    // Heroku may send SIGTERM twice at once: the repeat changes nothing.
    daemon.signal(libc::SIGTERM);
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_exit(Duration::from_secs(8)).await;
    assert_eq!(status.code(), Some(0), "{}", daemon.output());
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "exit after the deadline: {took:?}"
    );

    let sent = tg.sent_messages(&bot.token);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].text, "slow");
    assert_eq!(
        tg.confirmed_offset(&bot.token),
        i64::from(id) + 1,
        "the handled update is confirmed"
    );
    assert!(
        daemon
            .output()
            .contains("stopping: finishing the handlers that are running")
    );
}

#[tokio::test]
async fn a_handler_past_the_deadline_is_abandoned_and_logged() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let bot = tg.add_bot(TOKEN, "slow_bot");
    let config = slow_bot(&tg.url(), "3s", "60s");
    let mut daemon = Daemon::start(&config.path, VARS);
    let user = User::new(22, "Impatient");
    let slow = tg.inject_message(&bot.token, &Chat::private(&user), &user, "slow");
    // Queued behind the slow one in the same chat: must not start after the
    // stop, and must not be lost.
    let queued = tg.inject_message(&bot.token, &Chat::private(&user), &user, "queued");
    daemon
        .wait_for_line(&format!("handling an update update_id={slow}"), PROMPT)
        .await;

    let signalled = Instant::now();
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_exit(PROMPT).await;
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{}", daemon.output());
    assert!(
        took < Duration::from_secs(3),
        "the process must exit before the 3 s deadline, took {took:?}"
    );
    let line = daemon
        .wait_for_line(
            "abandoned a handler still running at the stop deadline",
            PROMPT,
        )
        .await;
    assert!(
        line.contains("bot=slow") && line.contains(&format!("update_id={slow}")),
        "{line}"
    );

    // Both were stored in the inbox before their offset was confirmed:
    // nothing is left for Telegram to deliver again, and nothing was sent.
    assert!(tg.sent_messages(&bot.token).is_empty());
    assert_eq!(tg.confirmed_offset(&bot.token), i64::from(queued) + 1);
    assert!(tg.pending_updates(&bot.token).is_empty());

    // The next run handles both from the inbox, in order, once each.
    let quick = slow_bot(&tg.url(), "3s", "10ms");
    config.write(
        "supervisor.toml",
        &std::fs::read_to_string(&quick.path).expect("read the quick config"),
    );
    let mut daemon = Daemon::start(&config.path, VARS);
    tg.wait_for_sent(&bot.token, 2, PROMPT)
        .await
        .expect("both answered after the restart");
    daemon.stop_cleanly().await;
    let texts: Vec<String> = tg
        .sent_messages(&bot.token)
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["slow", "queued"]);
}

#[tokio::test]
async fn a_second_sigterm_exits_at_once() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let bot = tg.add_bot(TOKEN, "slow_bot");
    let config = slow_bot(&tg.url(), "20s", "60s");
    let mut daemon = Daemon::start(&config.path, VARS);
    let user = User::new(24, "Hasty");
    let id = tg.inject_message(&bot.token, &Chat::private(&user), &user, "slow");
    daemon
        .wait_for_line(&format!("handling an update update_id={id}"), PROMPT)
        .await;
    daemon.signal(libc::SIGTERM);
    daemon.wait_for_line("shutting down", PROMPT).await;
    // A repeat within a second is Heroku's duplicate SIGTERM, not a second
    // request (tested below); this one comes later on purpose.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = Instant::now();
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_exit(PROMPT).await;
    assert!(
        second.elapsed() < Duration::from_secs(2),
        "took {:?}",
        second.elapsed()
    );
    assert_eq!(status.code(), Some(1), "{}", daemon.output());
    assert!(daemon.output().contains("second shutdown signal"));
}
