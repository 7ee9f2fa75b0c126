//! Durable state against the fake, running the real binary: offsets survive
//! restarts (SQLite and PostgreSQL), `kill -9` mid-batch neither repeats nor
//! loses an update, and instances sharing a store never poll one bot twice.
//!
//! The PostgreSQL tests run when `TEST_DATABASE_URL` names a server (CI sets
//! it); each makes its own database. Without it they say they were skipped.

mod common;

use std::time::{Duration, Instant};

use botvisor::status::STORE_SETTLE;
use common::{
    ConfigDir, Daemon, HTTP, PROMPT, TestDatabase, assert_echoes, endpoint, run_to_end,
    supervisor_table, wait_for_state, wait_for_status,
};
use fake_telegram::{Chat, FakeTelegram, User};
use sqlx::{Connection, Executor};

const TOKENS: [&str; 4] = [
    "1001:token-of-durable-bot-1",
    "1002:token-of-durable-bot-2",
    "1003:token-of-durable-bot-3",
    "1004:token-of-durable-bot-4",
];
const VARS: &[(&str, &str)] = &[
    ("T1", TOKENS[0]),
    ("T2", TOKENS[1]),
    ("T3", TOKENS[2]),
    ("T4", TOKENS[3]),
    ("RUST_LOG", "botvisor=debug,info"),
];

/// A config with `bots` echo bots (named b1…), the store line as given.
fn config_text(api_url: &str, store: &str, bots: usize, echo_extra: &str) -> String {
    let mut text = supervisor_table(api_url, store);
    for i in 1..=bots {
        text.push_str(&format!(
            "[bot.b{i}]\nkind = \"echo\"\ntoken_env = \"T{i}\"\n{echo_extra}\n"
        ));
    }
    text
}

fn vars_with(database_url: Option<&str>) -> Vec<(&str, &str)> {
    let mut vars = VARS.to_vec();
    if let Some(url) = database_url {
        vars.push(("DATABASE_URL", url));
    }
    vars
}

fn kill9(daemon: &Daemon) {
    daemon.signal(libc::SIGKILL);
}

/// The offset survives a restart, even if Telegram forgot it.
async fn offset_survives_a_restart(store_line: &str, database_url: Option<&str>) {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let bot = tg.add_bot(TOKENS[0], "b1_bot");
    let config = ConfigDir::new(&config_text(&tg.url(), store_line, 1, ""));
    let vars = vars_with(database_url);
    let mut daemon = Daemon::start(&config.path, &vars);
    for text in ["bir", "iki", "üç"] {
        assert_echoes(&tg, &bot.token, 5, text).await;
    }
    // The start-up log names the store, password hidden.
    let store = daemon.wait_for_line("store open", PROMPT).await;
    match database_url {
        Some(_) => assert!(
            store.contains("store=postgres://postgres@127.0.0.1"),
            "{store}"
        ),
        None => assert!(
            store.contains("store=sqlite:") && store.contains("botvisor.db"),
            "{store}"
        ),
    }
    daemon.signal(libc::SIGTERM);
    assert_eq!(
        daemon.wait_exit(PROMPT).await.code(),
        Some(0),
        "{}",
        daemon.output()
    );
    let last_update = 3;

    let polls_before = tg.requests_of(&bot.token, "getUpdates").len();
    let mut daemon = Daemon::start(&config.path, &vars);
    let first = tg
        .wait_for_request(&bot.token, "getUpdates", polls_before + 1, PROMPT)
        .await
        .expect("polls after the restart");
    assert_eq!(
        first.body["offset"],
        serde_json::json!(last_update + 1),
        "{}",
        first.body
    );
    daemon
        .wait_for_line("resuming after the stored offset offset=4", PROMPT)
        .await;
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn the_offset_survives_a_restart_with_sqlite() {
    offset_survives_a_restart("", None).await;
}

#[tokio::test]
async fn the_offset_survives_a_restart_with_postgres() {
    let Some(db) = TestDatabase::create("the_offset_survives_a_restart_with_postgres").await else {
        return;
    };
    offset_survives_a_restart("", Some(&db.url)).await;
    db.drop_database().await;
}

/// `kill -9` while one handler is slow and four are done: the offset has
/// passed all five (they are in the inbox), and after a restart each message
/// is answered exactly once.
async fn kill_9_mid_batch(database_url: Option<&str>) {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let bot = tg.add_bot(TOKENS[0], "b1_bot");
    let slow = "slow_on = \"slow\"\nslow_for = \"60s\"";
    let config = ConfigDir::new(&config_text(&tg.url(), "", 1, slow));
    // One batch: everything waits before the daemon polls.
    let texts = ["slow", "m2", "m3", "m4", "m5"];
    for (i, text) in texts.iter().enumerate() {
        let user = User::new(100 + i as u64, "Aday");
        tg.inject_message(&bot.token, &Chat::private(&user), &user, text);
    }
    let vars = vars_with(database_url);
    let mut daemon = Daemon::start(&config.path, &vars);
    // A reply goes out only once its update's handled mark is committed;
    // once the store's outbox is empty, every reply sent is recorded as
    // sent (a kill before that is the one window that repeats a reply).
    tg.wait_for_sent(&bot.token, 4, PROMPT)
        .await
        .expect("the four fast ones are answered");
    tg.wait_for_request_matching("a poll past the five", PROMPT, |r| {
        r.method == "getupdates" && r.body["offset"] == 6
    })
    .await
    .expect("the offset passes the slow update");
    wait_until_outbox_empty(&config, database_url).await;
    kill9(&daemon);
    let status = daemon.wait_exit(PROMPT).await;
    assert_eq!(status.code(), None, "killed by a signal");
    // All five were stored in the inbox with the offset past them, and the
    // next poll confirmed them: Telegram does not deliver them again.
    assert_eq!(tg.confirmed_offset(&bot.token), 6);
    // Restarted with a quick handler: the slow one comes from the inbox.
    config.write(
        "supervisor.toml",
        &config_text(&tg.url(), "", 1, "slow_on = \"slow\"\nslow_for = \"10ms\""),
    );
    let mut daemon = Daemon::start(&config.path, &vars);
    tg.wait_for_request_matching("the answer to the slow one", PROMPT, |r| {
        r.method == "sendmessage" && r.body["text"] == "slow" && r.status() == Some(200)
    })
    .await
    .expect("the slow one is answered");
    let polls = tg.requests_of(&bot.token, "getUpdates").len();
    tg.wait_for_request(&bot.token, "getUpdates", polls + 1, PROMPT)
        .await
        .expect("polls on");
    let mut sent: Vec<String> = tg
        .sent_messages(&bot.token)
        .into_iter()
        .map(|m| m.text)
        .collect();
    sent.sort();
    assert_eq!(sent, ["m2", "m3", "m4", "m5", "slow"], "each exactly once");
    daemon.stop_cleanly().await;
}

/// Waits until the store holds no queued message (every reply that went
/// out has had its row deleted).
async fn wait_until_outbox_empty(config: &ConfigDir, database_url: Option<&str>) {
    const SQL: &str = "SELECT COUNT(*) FROM outbox";
    let started = Instant::now();
    loop {
        let count: i64 = match database_url {
            Some(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
                sqlx::query_scalar(SQL).fetch_one(&mut conn).await
            }
            None => {
                let path = config.folder().join("botvisor.db");
                let url = format!("sqlite://{}?mode=ro", path.display());
                let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("open");
                sqlx::query_scalar(SQL).fetch_one(&mut conn).await
            }
        }
        .expect("count the outbox");
        if count == 0 {
            return;
        }
        assert!(started.elapsed() < PROMPT, "{count} messages stay queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn kill_9_mid_batch_neither_repeats_nor_loses_with_sqlite() {
    kill_9_mid_batch(None).await;
}

#[tokio::test]
async fn kill_9_mid_batch_neither_repeats_nor_loses_with_postgres() {
    let Some(db) =
        TestDatabase::create("kill_9_mid_batch_neither_repeats_nor_loses_with_postgres").await
    else {
        return;
    };
    kill_9_mid_batch(Some(&db.url)).await;
    db.drop_database().await;
}

/// Two instances on one store: one polls, the other stands by; SIGTERM (or
/// kill -9) to the active one and the other takes over; never a 409.
async fn two_instances_take_turns(store_line: &str, database_url: Option<&str>, hard_kill: bool) {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let b1 = tg.add_bot(TOKENS[0], "b1_bot");
    let b2 = tg.add_bot(TOKENS[1], "b2_bot");
    let text = config_text(&tg.url(), &format!("{store_line}\n{HTTP}"), 2, "");
    let first_config = ConfigDir::new(&text);
    let second_config = ConfigDir::new(&text);
    let vars = vars_with(database_url);
    let mut first = Daemon::start(&first_config.path, &vars);
    for bot in [&b1, &b2] {
        tg.wait_for_request(&bot.token, "getUpdates", 1, PROMPT)
            .await
            .expect("the first polls");
    }
    let mut second = Daemon::start(&second_config.path, &vars);
    let second_status = endpoint(&mut second).await;
    for bot in ["b1", "b2"] {
        let status = wait_for_state(&second_status, bot, "standby").await;
        assert!(
            status["reason"]
                .as_str()
                .is_some_and(|r| r.contains("another botvisor instance holds this bot")),
            "{status}"
        );
    }
    assert_echoes(&tg, &b1.token, 7, "from the first").await;

    let stopped = Instant::now();
    if hard_kill {
        kill9(&first);
        assert_eq!(first.wait_exit(PROMPT).await.code(), None);
    } else {
        first.signal(libc::SIGTERM);
        assert_eq!(
            first.wait_exit(PROMPT).await.code(),
            Some(0),
            "{}",
            first.output()
        );
    }
    for bot in ["b1", "b2"] {
        wait_for_state(&second_status, bot, "running").await;
    }
    let took = stopped.elapsed();
    eprintln!(
        "takeover gap ({}): {took:?}",
        if hard_kill { "kill -9" } else { "SIGTERM" }
    );
    if !hard_kill {
        assert!(took < Duration::from_secs(3), "takeover took {took:?}");
    }
    assert_echoes(&tg, &b2.token, 8, "from the second").await;
    let conflicts = tg
        .requests()
        .iter()
        .filter(|r| r.status() == Some(409))
        .count();
    assert_eq!(conflicts, 0, "two instances polled one bot");
    second.stop_cleanly().await;
}

#[tokio::test]
async fn two_instances_on_one_sqlite_file_take_turns() {
    let shared = tempfile::tempdir().expect("a shared folder");
    let store = format!(
        "store = \"sqlite:{}\"",
        shared.path().join("shared.db").display()
    );
    two_instances_take_turns(&store, None, false).await;
}

// On PostgreSQL two instances share the bots rather than take turns:
// tests/fleet.rs (a rolling restart, kill -9, a paused instance).

#[tokio::test]
async fn three_instances_share_four_bots_on_postgres() {
    let Some(db) = TestDatabase::create("three_instances_share_four_bots_on_postgres").await else {
        return;
    };
    let tg = FakeTelegram::start().await.expect("start the fake");
    let bots: Vec<_> = TOKENS
        .iter()
        .enumerate()
        .map(|(i, t)| tg.add_bot(t, &format!("b{}_bot", i + 1)))
        .collect();
    let text = config_text(&tg.url(), HTTP, 4, "");
    let configs: Vec<ConfigDir> = (0..3).map(|_| ConfigDir::new(&text)).collect();
    let vars = vars_with(Some(&db.url));
    let mut daemons: Vec<Daemon> = configs
        .iter()
        .map(|c| Daemon::start(&c.path, &vars))
        .collect();
    let mut endpoints = Vec::new();
    for daemon in &mut daemons {
        endpoints.push(endpoint(daemon).await);
    }
    for (i, bot) in bots.iter().enumerate() {
        assert_echoes(&tg, &bot.token, 20 + i as u64, "hello").await;
    }
    // Each bot runs in exactly one instance; the others stand by.
    for i in 1..=4 {
        let name = format!("b{i}");
        let mut running = 0;
        for base in &endpoints {
            let status = wait_for_status(base, &name, PROMPT, |s| {
                s["state"] == "running" || s["state"] == "standby"
            })
            .await;
            if status["state"] == "running" {
                running += 1;
            }
        }
        assert_eq!(running, 1, "bot b{i} runs in {running} instances");
    }
    let conflicts = tg
        .requests()
        .iter()
        .filter(|r| r.status() == Some(409))
        .count();
    assert_eq!(conflicts, 0);
    for daemon in &mut daemons {
        daemon.stop_cleanly().await;
    }
    db.drop_database().await;
}

#[tokio::test]
async fn an_unreachable_store_at_start_is_a_clear_error() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKENS[0], "b1_bot");
    let config = ConfigDir::new(&config_text(&tg.url(), "", 1, ""));
    let path = config.path.to_str().expect("utf-8 path").to_owned();
    let url = "postgres://botvisor:hunter2@127.0.0.1:1/nothing";
    let out = run_to_end(
        &["--config", &path],
        &[("T1", TOKENS[0]), ("DATABASE_URL", url)],
    )
    .await;
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(
            "botvisor: cannot open the store postgres://botvisor:***@127.0.0.1:1/nothing: "
        ),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("hunter2") && !out.stdout.contains("hunter2"),
        "the password leaked"
    );

    let bad = run_to_end(
        &["--config", &path],
        &[("T1", TOKENS[0]), ("DATABASE_URL", "mysql://x")],
    )
    .await;
    assert_eq!(bad.code(), Some(78));
    assert!(
        bad.stderr
            .contains("DATABASE_URL is set but is not a postgres:// URL"),
        "{}",
        bad.stderr
    );
}

#[tokio::test]
async fn a_store_outage_while_running_recovers_when_the_store_is_back() {
    let Some(db) =
        TestDatabase::create("a_store_outage_while_running_recovers_when_the_store_is_back").await
    else {
        return;
    };
    let tg = FakeTelegram::start().await.expect("start the fake");
    let bot = tg.add_bot(TOKENS[0], "b1_bot");
    let config = ConfigDir::new(&config_text(
        &tg.url(),
        "[supervisor.fleet]\nlease_ttl = \"3s\"\n",
        1,
        "",
    ));
    let vars = vars_with(Some(&db.url));
    let mut daemon = Daemon::start(&config.path, &vars);
    assert_echoes(&tg, &bot.token, 30, "before the outage").await;

    // Every connection botvisor has to its database is cut, the lease's too.
    let mut admin = sqlx::PgConnection::connect(&db.admin_url)
        .await
        .expect("admin connection");
    let terminate = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
        db.name
    );
    admin
        .execute(sqlx::AssertSqlSafe(terminate))
        .await
        .expect("terminate");
    // A lease is a row with an expiry, not a connection: the pools
    // reconnect, the lease is renewed in time, and the bot goes on.
    assert_echoes(&tg, &bot.token, 30, "during the outage").await;
    // Past a lease period (3 s): renewed over a new connection.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_echoes(&tg, &bot.token, 30, "after the outage").await;
    assert!(
        !daemon.output().contains("lost the lease"),
        "{}",
        daemon.output()
    );
    assert!(daemon.is_running());
    let conflicts = tg
        .requests()
        .iter()
        .filter(|r| r.status() == Some(409))
        .count();
    assert_eq!(conflicts, 0);
    daemon.stop_cleanly().await;
    drop(admin);
    db.drop_database().await;
}

#[tokio::test]
async fn a_long_store_outage_backs_off_without_parking_and_recovers() {
    let Some(db) =
        TestDatabase::create("a_long_store_outage_backs_off_without_parking_and_recovers").await
    else {
        return;
    };
    const ALERTS: i64 = -1_001_234_567_890;
    let tg = FakeTelegram::start().await.expect("start the fake");
    let bot = tg.add_bot(TOKENS[0], "b1_bot");
    let alerter = tg.add_bot(TOKENS[1], "b2_bot");
    tg.add_chat(&fake_telegram::Chat::supergroup(ALERTS, "Operators"));
    // At most 5 restarts in a minute would park the bot; a store outage
    // must not count.
    let config = ConfigDir::new(&config_text(
        &tg.url(),
        &format!("[supervisor.alerts]\nchat_id = {ALERTS}\nvia_bot = \"b2\"\n"),
        2,
        "",
    ));
    let vars = vars_with(Some(&db.url));
    let mut daemon = Daemon::start(&config.path, &vars);
    assert_echoes(&tg, &bot.token, 70, "before").await;

    let mut admin = sqlx::PgConnection::connect(&db.admin_url)
        .await
        .expect("admin connection");
    let set = |allow: bool| {
        sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE \"{}\" ALLOW_CONNECTIONS {allow}",
            db.name
        ))
    };
    admin.execute(set(false)).await.expect("refuse connections");
    let terminate = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
        db.name
    );
    admin
        .execute(sqlx::AssertSqlSafe(terminate))
        .await
        .expect("terminate");
    // The store stays down through more failures than max_restarts allows.
    daemon
        .wait_for_lines("the store is not usable", 7, PROMPT)
        .await;
    assert!(
        !daemon.output().contains("parked"),
        "a store outage parked the bot:\n{}",
        daemon.output()
    );
    admin
        .execute(set(true))
        .await
        .expect("allow connections again");
    assert_echoes(&tg, &bot.token, 70, "after").await;
    // The operators heard of the outage once, and of its end once: after
    // the store has stayed healthy for the settle period.
    let all_clear = |tg: &FakeTelegram| {
        tg.sent_messages(&alerter.token)
            .iter()
            .any(|m| m.text == "✅ botvisor: b1 reaches its store again")
    };
    let started = Instant::now();
    while !all_clear(&tg) {
        let seen = tg.sent_messages(&alerter.token).len();
        tg.wait_for_sent(&alerter.token, seen + 1, STORE_SETTLE + PROMPT)
            .await
            .unwrap_or_else(|e| panic!("no all-clear ({e:?}) after {:?}", started.elapsed()));
    }
    let alerts: Vec<String> = tg
        .sent_messages(&alerter.token)
        .into_iter()
        .filter(|m| m.chat_id == ALERTS && m.text.contains(" b1 "))
        .map(|m| m.text)
        .collect();
    assert_eq!(alerts.len(), 2, "{alerts:#?}");
    assert!(
        alerts[0].starts_with("⚠️ botvisor: b1 lost its store: "),
        "{alerts:#?}"
    );
    assert_eq!(alerts[1], "✅ botvisor: b1 reaches its store again");
    let conflicts = tg
        .requests()
        .iter()
        .filter(|r| r.status() == Some(409))
        .count();
    assert_eq!(conflicts, 0);
    daemon.stop_cleanly().await;
    drop(admin);
    db.drop_database().await;
}

/// The SQLite file deleted under a running daemon: within seconds the bot
/// stops (a store-down incident on the status board) and confirms nothing
/// it could not record; it is not fooled into a new, empty store.
#[tokio::test]
async fn a_deleted_sqlite_file_stops_the_bot_within_seconds() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let bot = tg.add_bot(TOKENS[0], "b1_bot");
    let config = ConfigDir::new(&config_text(&tg.url(), HTTP, 1, ""));
    let mut daemon = Daemon::start(&config.path, VARS);
    let base = endpoint(&mut daemon).await;
    assert_echoes(&tg, &bot.token, 5, "önce").await;
    for name in ["botvisor.db", "botvisor.db-wal", "botvisor.db-shm"] {
        let _ = std::fs::remove_file(config.folder().join(name));
    }
    let status = wait_for_status(&base, "b1", PROMPT, |s| {
        s["incidents"].get("store_down").is_some()
    })
    .await;
    assert_ne!(status["state"], "running", "{status}");
    let confirmed = tg.confirmed_offset(&bot.token);
    let user = User::new(6, "Sonra");
    let after = tg.inject_message(&bot.token, &Chat::private(&user), &user, "sonra");
    // While the store is gone nothing past it is confirmed or answered.
    let polls = tg.requests_of(&bot.token, "getUpdates").len();
    let _ = tg
        .wait_for_request(&bot.token, "getUpdates", polls + 1, Duration::from_secs(3))
        .await;
    assert!(
        tg.confirmed_offset(&bot.token) <= i64::from(after),
        "confirmed {confirmed}"
    );
    assert!(
        tg.sent_messages(&bot.token)
            .iter()
            .all(|m| m.text != "sonra")
    );
    daemon.stop_cleanly().await;
}
