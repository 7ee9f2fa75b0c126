//! A token never reaches any output: the daemon runs at trace level against
//! the fake, through failing requests of every sort, and neither its stdout,
//! its stderr nor its log files contain a token.

mod common;

use std::time::Duration;

use common::{ConfigDir, Daemon, PROMPT, REAL_SHAPED_TOKEN, supervisor_table};
use fake_telegram::{Chat, FakeTelegram, Fault, User};

/// Not Telegram's shape (a two-digit id, a short secret), so only botvisor's
/// own list of known tokens can catch it; still `digits:characters`, which
/// the start-up check requires of a token.
const ODD_TOKEN: &str = "42:odd-shaped-secret-token-4242";

/// Long enough for every scripted fault, including teloxide's 10 s pause
/// after a 5xx, to play out.
const FAULTS_PLAYED: Duration = Duration::from_secs(60);

async fn run_through_faults(log_format: &str) {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let real = tg.add_bot(REAL_SHAPED_TOKEN, "real_bot");
    let odd = tg.add_bot(ODD_TOKEN, "odd_bot");
    for token in [REAL_SHAPED_TOKEN, ODD_TOKEN] {
        tg.add_fault(token, "getMe", Fault::unauthorized().times(1));
        tg.add_fault(token, "getMe", Fault::drop_connection().times(1));
        tg.add_fault(token, "getUpdates", Fault::retry_after(1).times(1));
        tg.add_fault(
            token,
            "getUpdates",
            Fault::api_error(400, "Bad Request: invalid offset").times(1),
        );
        tg.add_fault(token, "getUpdates", Fault::drop_connection().times(1));
        tg.add_fault(token, "sendMessage", Fault::server_error().times(1));
    }
    tg.add_fault(
        REAL_SHAPED_TOKEN,
        "getMe",
        Fault::bad_gateway_html().times(1),
    );
    tg.add_fault(
        ODD_TOKEN,
        "getUpdates",
        Fault::conflict_other_poller().times(1),
    );

    let config = ConfigDir::new(&format!(
        "{}[bot.real]\nkind = \"echo\"\ntoken_env = \"REAL_TOKEN\"\n[bot.odd]\nkind = \"echo\"\ntoken_env = \"ODD_TOKEN\"\n",
        supervisor_table(
            &tg.url(),
            &format!("log_format = \"{log_format}\"\nlog_dir = \"logs\"")
        )
    ));
    let mut daemon = Daemon::start(
        &config.path,
        &[
            ("REAL_TOKEN", REAL_SHAPED_TOKEN),
            ("ODD_TOKEN", ODD_TOKEN),
            ("RUST_LOG", "trace"),
        ],
    );

    // Once every fault has played out, each bot echoes a message.
    let alice = User::new(7, "Alice");
    for bot in [&real, &odd] {
        tg.inject_message(&bot.token, &Chat::private(&alice), &alice, "first");
        tg.inject_message(&bot.token, &Chat::private(&alice), &alice, "second");
    }
    for bot in [&real, &odd] {
        let sent = tg
            .wait_for_sent(&bot.token, 2, FAULTS_PLAYED)
            .await
            .unwrap_or_else(|e| panic!("no reply after the faults: {e:?}\n{}", daemon.output()));
        assert!(sent.iter().any(|m| m.text == "second"), "{sent:?}");
    }
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_exit(PROMPT).await;
    assert_eq!(status.code(), Some(0), "output:\n{}", daemon.output());

    let mut everything = daemon.output();
    let logs = config.folder().join("logs");
    for entry in std::fs::read_dir(&logs).expect("the log folder exists") {
        let path = entry.expect("a log file").path();
        everything.push_str(&std::fs::read_to_string(&path).expect("read a log file"));
    }
    for token in [REAL_SHAPED_TOKEN, ODD_TOKEN] {
        assert!(!everything.contains(token), "a token leaked:\n{everything}");
        let secret_half = token.split_once(':').map_or(token, |(_, rest)| rest);
        assert!(
            !everything.contains(secret_half),
            "the secret part of a token leaked"
        );
    }
    // The run did go through the failures at trace level, so the assertion
    // above had something to look at.
    for expected in [
        "TRACE",
        "unauthorized",
        "(429)",
        "transient",
        "bad_request",
        "conflict",
    ] {
        assert!(
            everything.contains(expected),
            "expected {expected:?} somewhere in the output:\n{everything}"
        );
    }
}

#[tokio::test]
async fn no_token_in_text_logs_at_trace_level_through_failures() {
    run_through_faults("text").await;
}

#[tokio::test]
async fn no_token_in_json_logs_at_trace_level_through_failures() {
    run_through_faults("json").await;
}
