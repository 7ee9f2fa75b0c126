//! The operators' view against the fake Telegram, running the real binary:
//! the status endpoint (`/healthz`, `/status`, `/metrics`), the poll
//! watchdog, alerts, `/durum`, and systemd's notifications.

mod common;

use std::time::{Duration, Instant};

use common::{
    ConfigDir, Daemon, PROMPT, assert_echoes, endpoint, get, get_until, supervisor_table,
};
use fake_telegram::{Chat, FakeTelegram, Fault, User};

const TOKEN_A: &str = "101:token-of-bot-a";
const TOKEN_B: &str = "202:token-of-bot-b";
const TOKENS: &[(&str, &str)] = &[("A_TOKEN", TOKEN_A), ("B_TOKEN", TOKEN_B)];

fn two_echo_bots(api_url: &str, supervisor_extra: &str, a_extra: &str) -> String {
    format!(
        "{}[bot.a]\nkind = \"echo\"\ntoken_env = \"A_TOKEN\"\n{a_extra}\n[bot.b]\nkind = \"echo\"\ntoken_env = \"B_TOKEN\"\n",
        supervisor_table(api_url, supervisor_extra)
    )
}

const ALERT_CHAT: i64 = -1_001_234_567_890;

/// Bots a and b, b sending alerts to [`ALERT_CHAT`] (made known to the
/// fake).
fn alerting_bots(tg: &FakeTelegram, supervisor_extra: &str, a_extra: &str) -> String {
    tg.add_chat(&Chat::supergroup(ALERT_CHAT, "Operators"));
    two_echo_bots(
        &tg.url(),
        &format!(
            "{supervisor_extra}[supervisor.alerts]\nchat_id = {ALERT_CHAT}\nvia_bot = \"b\"\n"
        ),
        a_extra,
    )
}

/// The alerts bot b sent to [`ALERT_CHAT`].
fn alerts(tg: &FakeTelegram, token: &str) -> Vec<String> {
    tg.sent_messages(token)
        .into_iter()
        .filter(|m| m.chat_id == ALERT_CHAT)
        .map(|m| m.text)
        .collect()
}

#[tokio::test]
async fn healthz_turns_503_during_a_409_storm_and_200_after() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let a = tg.add_bot(TOKEN_A, "a_bot");
    let b = tg.add_bot(TOKEN_B, "b_bot");
    let config = ConfigDir::new(&alerting_bots(
        &tg,
        "[supervisor.http]\nlisten = \"127.0.0.1:0\"\n",
        "[bot.a.restart]\nconflict_max_backoff = \"3s\"\nconflict_alert_after = \"2s\"\n",
    ));
    let mut daemon = Daemon::start(&config.path, TOKENS);
    let base = endpoint(&mut daemon).await;
    let body = get_until(&base, "/healthz", 200).await;
    assert!(body.starts_with("ok: 2 bot(s)"), "{body}");

    tg.add_fault(
        &a.token,
        "getUpdates",
        Fault::conflict_other_poller().forever(),
    );
    daemon
        .wait_for_line("conflict: another process is polling", PROMPT)
        .await;
    let (code, body) = get(&base, "/healthz").await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("a: conflict: another process is polling"),
        "{body}"
    );
    assert!(
        !body.contains("b: "),
        "only the bot in conflict fails:\n{body}"
    );

    // Past conflict_alert_after: the next 409 raises the incident.
    daemon
        .wait_for_line("stop the other copy of this bot", PROMPT)
        .await;
    tg.clear_faults(&a.token);
    daemon
        .wait_for_line("the conflict is over", Duration::from_secs(30))
        .await;
    let (code, body) = get(&base, "/healthz").await;
    assert_eq!(code, 200, "{body}");
    // A conflict longer than conflict_alert_after: one alert, one all-clear.
    tg.wait_for_sent(&b.token, 2, PROMPT)
        .await
        .expect("the all-clear");
    let sent = alerts(&tg, &b.token);
    assert_eq!(sent.len(), 2, "{sent:#?}");
    assert!(
        sent[0].starts_with(
            "⚠️ botvisor: a is in conflict: another process polls with its token: for "
        ),
        "{sent:#?}"
    );
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn status_and_metrics_report_states_and_counters() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let a = tg.add_bot(TOKEN_A, "a_bot");
    let b = tg.add_bot(TOKEN_B, "b_bot");
    tg.add_fault(&b.token, "*", Fault::unauthorized().forever());
    let text = format!(
        "{}[bot.c]\nkind = \"echo\"\ntoken_env = \"C_TOKEN\"\n",
        two_echo_bots(
            &tg.url(),
            "[supervisor.http]\nlisten = \"127.0.0.1:0\"\n",
            ""
        )
    );
    let config = ConfigDir::new(&text);
    let mut daemon = Daemon::start(&config.path, TOKENS);
    let base = endpoint(&mut daemon).await;
    for n in 1..=3 {
        assert_echoes(&tg, &a.token, 7, &format!("message {n}")).await;
    }
    // The counters move when the batch is done, just before the next poll.
    let polls = tg.requests_of(&a.token, "getUpdates").len();
    tg.wait_for_request(&a.token, "getUpdates", polls + 1, PROMPT)
        .await
        .expect("the poll after the last batch");
    daemon
        .wait_for_line("parked: Telegram rejected the token", PROMPT)
        .await;

    let (code, body) = get(&base, "/status").await;
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let bots = status["bots"].as_array().expect("a list of bots");
    let bot = |name: &str| {
        bots.iter()
            .find(|b| b["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {body}"))
    };
    assert_eq!(bot("a")["state"], "running", "{body}");
    assert_eq!(bot("a")["kind"], "echo");
    assert_eq!(bot("a")["updates_handled"], 3, "{body}");
    assert_eq!(bot("a")["messages_sent"], 3, "{body}");
    assert!(bot("a")["last_successful_poll"].is_string(), "{body}");
    assert!(bot("a")["since"].is_string(), "{body}");
    assert_eq!(bot("a")["restarts"], 0);
    assert!(
        ["parked", "starting"].contains(&bot("b")["state"].as_str().unwrap_or_default()),
        "{body}"
    );
    assert_eq!(bot("b")["last_error_class"], "unauthorized", "{body}");
    assert!(
        bot("b")["incidents"]["parked"]
            .as_str()
            .is_some_and(|d| d.contains("B_TOKEN")),
        "{body}"
    );
    assert_eq!(status["not_running"][0]["name"], "c", "{body}");
    assert!(!body.contains(TOKEN_A) && !body.contains(TOKEN_B), "{body}");

    let (code, metrics) = get(&base, "/metrics").await;
    assert_eq!(code, 200);
    for line in [
        "botvisor_updates_handled_total{bot=\"a\"} 3",
        "botvisor_messages_sent_total{bot=\"a\"} 3",
        "botvisor_bot_state{bot=\"a\",state=\"running\"} 1",
        "botvisor_bot_state{bot=\"a\",state=\"parked\"} 0",
        "botvisor_bot_restarts_total{bot=\"a\"} 0",
        "botvisor_bots_not_running 1",
        "# EOF",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in:\n{metrics}"
        );
    }
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("botvisor_last_successful_poll_timestamp_seconds{bot=\"a\"} 1")),
        "{metrics}"
    );
    let (code, body) = get(&base, "/healthz").await;
    assert_eq!(code, 503);
    assert!(
        body.contains("c: not running: C_TOKEN is not set"),
        "{body}"
    );
    let (code, _) = get(&base, "/nothing-here").await;
    assert_eq!(code, 404);
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn the_watchdog_restarts_a_worker_whose_poll_hangs() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let a = tg.add_bot(TOKEN_A, "a_bot");
    tg.add_bot(TOKEN_B, "b_bot");
    let text = two_echo_bots(&tg.url(), "", "").replace(
        "poll_timeout = \"2s\"",
        "poll_timeout = \"1s\"\nwatchdog_after = \"6s\"",
    );
    let config = ConfigDir::new(&text);
    let mut daemon = Daemon::start(&config.path, TOKENS);
    assert_echoes(&tg, &a.token, 7, "before").await;
    let get_mes = tg.requests_of(&a.token, "getMe").len();

    // The next poll hangs far past the client's timeout (1 s + 15 s).
    tg.add_fault(
        &a.token,
        "getUpdates",
        Fault::ok(serde_json::json!([]))
            .delay(Duration::from_secs(120))
            .times(1),
    );
    let hung = Instant::now();
    let line = daemon
        .wait_for_line("watchdog: getUpdates has not answered", PROMPT)
        .await;
    assert!(line.contains("bot=a"), "{line}");
    assert!(
        hung.elapsed() < Duration::from_secs(15),
        "the watchdog, not the client timeout, ended the poll"
    );
    // Restarted: connects again and answers.
    tg.wait_for_request(&a.token, "getMe", get_mes + 1, PROMPT)
        .await
        .expect("a new getMe after the restart");
    assert_echoes(&tg, &a.token, 7, "after").await;
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn alerts_are_sent_once_per_incident_and_once_on_recovery() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let a = tg.add_bot(TOKEN_A, "a_bot");
    let b = tg.add_bot(TOKEN_B, "b_bot");
    tg.add_fault(&a.token, "getMe", Fault::unauthorized().forever());
    // The first try to send the alert fails: it stays queued and goes out
    // at the next try.
    tg.add_fault(&b.token, "sendMessage", Fault::server_error().times(1));
    let config = ConfigDir::new(&alerting_bots(&tg, "", ""));
    let mut daemon = Daemon::start(&config.path, TOKENS);
    // Parked again and again (park_for is 300 ms): one incident.
    daemon
        .wait_for_lines("parked: Telegram rejected", 4, PROMPT)
        .await;
    tg.wait_for_sent(&b.token, 1, PROMPT)
        .await
        .expect("the alert");

    // A reload restarts a with a new worker that spends 1.5 s (more than
    // the monitor's tick) connecting before it is parked again: the
    // incident goes on, so no all-clear and no second alert.
    tg.clear_faults(&a.token);
    tg.add_fault(
        &a.token,
        "getMe",
        Fault::unauthorized()
            .delay(Duration::from_millis(1500))
            .forever(),
    );
    let parked_lines = |daemon: &Daemon| {
        daemon
            .lines()
            .iter()
            .filter(|l| l.contains("parked: Telegram rejected"))
            .count()
    };
    let parked_before = parked_lines(&daemon);
    config.write(
        "supervisor.toml",
        &alerting_bots(&tg, "", "[bot.a.restart]\npark_for = \"400ms\"\n"),
    );
    daemon.signal(libc::SIGHUP);
    daemon.wait_for_line("restarted: a;", PROMPT).await;
    daemon
        .wait_for_lines("parked: Telegram rejected", parked_before + 2, PROMPT)
        .await;
    assert_eq!(
        alerts(&tg, &b.token).len(),
        1,
        "{:#?}",
        alerts(&tg, &b.token)
    );

    tg.clear_faults(&a.token);
    tg.wait_for_sent(&b.token, 2, PROMPT)
        .await
        .expect("the all-clear");
    assert_echoes(&tg, &a.token, 7, "back").await;
    let sent = alerts(&tg, &b.token);
    assert_eq!(sent.len(), 2, "{sent:#?}");
    assert!(
        sent[0].starts_with("⚠️ botvisor: a is parked: Telegram rejected the token in A_TOKEN"),
        "{sent:#?}"
    );
    assert_eq!(sent[1], "✅ botvisor: a is running again");
    assert!(
        sent.iter()
            .all(|t| !t.contains(TOKEN_A) && !t.contains("token-of"))
    );
    daemon.stop_cleanly().await;
    assert_eq!(alerts(&tg, &b.token).len(), 2, "nothing more at shutdown");
}

#[tokio::test]
async fn a_bot_parked_after_connecting_is_one_incident() {
    // getMe succeeds, then the webhook parks the bot (on_webhook = "park"),
    // again at every attempt: still one incident, no all-clear between.
    let tg = FakeTelegram::start().await.expect("start the fake");
    let a = tg.add_bot(TOKEN_A, "a_bot");
    let b = tg.add_bot(TOKEN_B, "b_bot");
    // Each getUpdates answers "webhook is active" after 1.5 s: the bot
    // looks connected for longer than the monitor's tick each time.
    tg.add_fault(
        &a.token,
        "getUpdates",
        Fault::api_error(409, fake_telegram::conflicts::WEBHOOK_ACTIVE)
            .delay(Duration::from_millis(1500))
            .forever(),
    );
    let config = ConfigDir::new(&alerting_bots(
        &tg,
        "",
        "[bot.a.restart]\non_webhook = \"park\"\npark_for = \"1500ms\"\n",
    ));
    let mut daemon = Daemon::start(&config.path, TOKENS);
    daemon
        .wait_for_lines("parked: a webhook is set", 3, PROMPT)
        .await;
    let sent = alerts(&tg, &b.token);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert!(
        sent[0].starts_with("⚠️ botvisor: a is parked: a webhook is set"),
        "{sent:#?}"
    );
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn durum_answers_operators_only() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let a = tg.add_bot(TOKEN_A, "a_bot");
    tg.add_bot(TOKEN_B, "b_bot");
    let config = ConfigDir::new(&two_echo_bots(&tg.url(), "operators = [42]\n", ""));
    let mut daemon = Daemon::start(&config.path, TOKENS);
    let operator = User::new(42, "Operator");
    let stranger = User::new(43, "Stranger");

    tg.inject_message(&a.token, &Chat::private(&operator), &operator, "/durum");
    let sent = tg
        .wait_for_sent(&a.token, 1, PROMPT)
        .await
        .expect("a table");
    let table = &sent[0].text;
    assert!(table.starts_with("botvisor: 2 bot(s)"), "{table}");
    assert!(table.contains("a (echo): running"), "{table}");
    assert!(table.contains("b (echo): "), "{table}");
    assert!(!table.contains(TOKEN_A), "{table}");

    // A stranger, and the operator in a group: no answer. The echo sent
    // after each in the same chat proves the command was handled first.
    tg.inject_message(&a.token, &Chat::private(&stranger), &stranger, "/durum");
    assert_echoes(&tg, &a.token, 43, "after the stranger").await;
    let group = Chat::group(-77, "Group");
    tg.inject_message(&a.token, &group, &operator, "/durum@a_bot");
    tg.inject_message(&a.token, &group, &operator, "after the group");
    let sent = tg.wait_for_sent(&a.token, 3, PROMPT).await.expect("echoes");
    let texts: Vec<&str> = sent.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(
        texts[1..],
        ["after the stranger", "after the group"],
        "{texts:#?}"
    );
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn systemd_hears_ready_and_stopping() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN_A, "a_bot");
    tg.add_bot(TOKEN_B, "b_bot");
    let config = ConfigDir::new(&two_echo_bots(&tg.url(), "", ""));
    let socket_path = config.folder().join("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    let socket_var = socket_path.to_str().expect("a UTF-8 path");
    let mut vars = TOKENS.to_vec();
    vars.push(("NOTIFY_SOCKET", socket_var));
    let mut daemon = Daemon::start(&config.path, &vars);
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(PROMPT, socket.recv(&mut buf))
        .await
        .expect("READY in time")
        .expect("read the socket");
    assert_eq!(&buf[..n], b"READY=1\n");
    daemon.signal(libc::SIGTERM);
    let n = tokio::time::timeout(PROMPT, socket.recv(&mut buf))
        .await
        .expect("STOPPING in time")
        .expect("read the socket");
    assert_eq!(&buf[..n], b"STOPPING=1\n");
    let status = daemon.wait_exit(PROMPT).await;
    assert_eq!(status.code(), Some(0), "{}", daemon.output());
}
