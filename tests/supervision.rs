//! Supervision against the fake Telegram, running the real binary: 409
//! storms, a second botvisor, webhooks, 429, a rejected token, panicking and
//! failing workers. One bot's trouble never stops another bot or the process.

mod common;

use std::time::{Duration, Instant};

use common::{ConfigDir, Daemon, PROMPT, assert_echoes, supervisor_table};
use fake_telegram::{Chat, FakeTelegram, Fault, Outcome, User};

const TOKEN_A: &str = "101:token-of-bot-a";
const TOKEN_B: &str = "202:token-of-bot-b";

fn two_echo_bots(api_url: &str, supervisor_extra: &str, a_extra: &str) -> String {
    format!(
        "{}[bot.a]\nkind = \"echo\"\ntoken_env = \"A_TOKEN\"\n{a_extra}\n[bot.b]\nkind = \"echo\"\ntoken_env = \"B_TOKEN\"\n",
        supervisor_table(api_url, supervisor_extra)
    )
}

const TOKENS: &[(&str, &str)] = &[("A_TOKEN", TOKEN_A), ("B_TOKEN", TOKEN_B)];

fn still_running(daemon: &mut Daemon) {
    assert!(daemon.is_running(), "botvisor exited:\n{}", daemon.output());
}

#[tokio::test]
async fn a_409_storm_on_one_bot_leaves_the_other_answering() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let a = tg.add_bot(TOKEN_A, "a_bot");
    let b = tg.add_bot(TOKEN_B, "b_bot");
    let config = ConfigDir::new(&two_echo_bots(
        &tg.url(),
        "",
        "[bot.a.restart]\nconflict_max_backoff = \"6s\"\nconflict_alert_after = \"8s\"\n",
    ));
    tg.add_fault(
        &a.token,
        "getUpdates",
        Fault::conflict_other_poller().forever(),
    );
    let storm = Instant::now();
    let mut daemon = Daemon::start(&config.path, TOKENS);

    let line = daemon
        .wait_for_line(
            "conflict: another process is polling with this bot's token (A_TOKEN)",
            PROMPT,
        )
        .await;
    assert!(line.contains("bot=a"), "{line}");
    // The other bot answers throughout the storm.
    let mut n = 0;
    while storm.elapsed() < Duration::from_secs(20) {
        n += 1;
        assert_echoes(&tg, &b.token, 5, &format!("during the storm {n}")).await;
        still_running(&mut daemon);
        tg.wait_for_request(
            &a.token,
            "getUpdates",
            tg.requests_of(&a.token, "getUpdates").len() + 1,
            PROMPT,
        )
        .await
        .expect("a keeps trying");
    }
    tg.clear_faults(&a.token);
    let storm_over = Instant::now();
    // Warned once at the start, raised to an error once after 8 s, not
    // logged at every 409.
    let output = daemon.output();
    let started = output
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("conflict: another process"))
        .count();
    let alerts: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("stop the other copy"))
        .collect();
    assert_eq!(started, 1, "{output}");
    assert_eq!(alerts.len(), 1, "{output}");
    assert!(
        alerts[0].contains("ERROR") && alerts[0].contains("bot=a"),
        "{}",
        alerts[0]
    );

    // At most one getUpdates per 3 s after the first one.
    let polls: Vec<Instant> = tg
        .requests_of(&a.token, "getUpdates")
        .iter()
        .map(|r| r.at)
        .collect();
    assert!(polls.len() >= 3, "{} polls", polls.len());
    for pair in polls.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert!(
            gap >= Duration::from_secs(3),
            "two polls {gap:?} apart during the conflict"
        );
    }
    // A message waiting for a: answered as soon as a polls again, which is
    // within the conflict cap (6 s) of the storm's end.
    assert_echoes(&tg, &a.token, 6, "after the storm").await;
    let polling_again = storm_over.elapsed();
    assert!(
        polling_again < Duration::from_secs(7),
        "polling again took {polling_again:?}"
    );
    // Declared over once no 409 came for the cap plus one long poll.
    daemon.wait_for_line("the conflict is over", PROMPT).await;
    still_running(&mut daemon);
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn two_botvisors_with_one_token_both_survive_and_one_takes_over() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let a = tg.add_bot(TOKEN_A, "a_bot");
    let text = format!(
        "{}[bot.a]\nkind = \"echo\"\ntoken_env = \"A_TOKEN\"\n[bot.a.restart]\nconflict_max_backoff = \"4s\"\n",
        supervisor_table(&tg.url(), "")
    );
    let first_config = ConfigDir::new(&text);
    let second_config = ConfigDir::new(&text);
    let mut first = Daemon::start(&first_config.path, TOKENS);
    tg.wait_for_request(&a.token, "getUpdates", 1, PROMPT)
        .await
        .expect("the first polls");
    let mut second = Daemon::start(&second_config.path, TOKENS);

    // Each long poll ends the other's: at least one of them sees the conflict.
    let needle = "another process is polling with this bot's token (A_TOKEN)";
    let line = tokio::select! {
        line = first.wait_for_line(needle, PROMPT) => line,
        line = second.wait_for_line(needle, PROMPT) => line,
    };
    assert!(line.contains("bot=a"), "{line}");
    still_running(&mut first);
    still_running(&mut second);

    first.signal(libc::SIGTERM);
    assert_eq!(
        first.wait_exit(PROMPT).await.code(),
        Some(0),
        "{}",
        first.output()
    );
    // The second one now polls alone and answers.
    assert_echoes(&tg, &a.token, 9, "who answers?").await;
    still_running(&mut second);
    second.stop_cleanly().await;
}

#[tokio::test]
async fn a_webhook_is_deleted_once_and_polling_resumes() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let a = tg.add_bot(TOKEN_A, "a_bot");
    tg.set_webhook(&a.token, "https://example.invalid/hook");
    let user = User::new(3, "Early");
    tg.inject_message(
        &a.token,
        &Chat::private(&user),
        &user,
        "sent while the webhook was set",
    );
    let config = ConfigDir::new(&format!(
        "{}[bot.a]\nkind = \"echo\"\ntoken_env = \"A_TOKEN\"\n",
        supervisor_table(&tg.url(), "")
    ));
    let mut daemon = Daemon::start(&config.path, TOKENS);

    let sent = tg
        .wait_for_sent(&a.token, 1, PROMPT)
        .await
        .expect("the pending update is answered");
    assert_eq!(sent[0].text, "sent while the webhook was set");
    let deletes = tg.requests_of(&a.token, "deleteWebhook");
    assert_eq!(deletes.len(), 1);
    assert_ne!(
        deletes[0].body["drop_pending_updates"],
        serde_json::json!(true),
        "pending updates are kept"
    );
    daemon
        .wait_for_line("a webhook was set for this token; deleted it", PROMPT)
        .await;
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn a_webhook_parks_the_bot_when_configured_so() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let a = tg.add_bot(TOKEN_A, "a_bot");
    let b = tg.add_bot(TOKEN_B, "b_bot");
    tg.set_webhook(&a.token, "https://example.invalid/hook");
    let config = ConfigDir::new(&two_echo_bots(
        &tg.url(),
        "",
        "[bot.a.restart]\non_webhook = \"park\"\npark_for = \"1h\"\n",
    ));
    let mut daemon = Daemon::start(&config.path, TOKENS);
    let line = daemon
        .wait_for_line("parked: a webhook is set for this token", PROMPT)
        .await;
    assert!(line.contains("bot=a"), "{line}");
    assert!(tg.requests_of(&a.token, "deleteWebhook").is_empty());
    assert_echoes(&tg, &b.token, 4, "b is fine").await;
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn a_429_is_waited_out_exactly() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let a = tg.add_bot(TOKEN_A, "a_bot");
    tg.add_fault(&a.token, "getUpdates", Fault::retry_after(3).times(1));
    let config = ConfigDir::new(&format!(
        "{}[bot.a]\nkind = \"echo\"\ntoken_env = \"A_TOKEN\"\n",
        supervisor_table(&tg.url(), "")
    ));
    let mut daemon = Daemon::start(&config.path, TOKENS);
    let limited = tg
        .wait_for_request(&a.token, "getUpdates", 1, PROMPT)
        .await
        .expect("first poll");
    let next = tg
        .wait_for_request(&a.token, "getUpdates", 2, PROMPT)
        .await
        .expect("second poll");
    assert_eq!(
        tg.requests_of(&a.token, "getUpdates")[0].status(),
        Some(429)
    );
    let gap = next.at.duration_since(limited.at);
    assert!(
        gap >= Duration::from_secs(3),
        "polled again after {gap:?}, before retry_after"
    );
    // Nothing else was sent to Telegram for this bot in between either.
    let between = tg
        .requests()
        .into_iter()
        .filter(|r| r.token == a.token && r.at > limited.at && r.at < next.at)
        .count();
    assert_eq!(between, 0);
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn a_rejected_token_parks_its_bot_only() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let a = tg.add_bot(TOKEN_A, "a_bot");
    let b = tg.add_bot(TOKEN_B, "b_bot");
    tg.add_fault(&a.token, "*", Fault::unauthorized().forever());
    let config = ConfigDir::new(&two_echo_bots(
        &tg.url(),
        "",
        "[bot.a.restart]\npark_for = \"1h\"\n",
    ));
    let mut daemon = Daemon::start(&config.path, TOKENS);
    let line = daemon
        .wait_for_line("parked: Telegram rejected the token in A_TOKEN", PROMPT)
        .await;
    assert!(
        line.contains("bot=a") && line.contains("next attempt in 60m"),
        "{line}"
    );
    assert_echoes(&tg, &b.token, 4, "b is fine").await;
    // Parked means parked: one getMe, no retry storm.
    assert_eq!(tg.requests_of(&a.token, "getMe").len(), 1);
    still_running(&mut daemon);
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn a_panicking_handler_does_not_stop_the_bot() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let a = tg.add_bot(TOKEN_A, "a_bot");
    let config = ConfigDir::new(&format!(
        "{}[bot.a]\nkind = \"echo\"\ntoken_env = \"A_TOKEN\"\npanic_on = \"boom\"\n",
        supervisor_table(&tg.url(), "")
    ));
    let mut daemon = Daemon::start(&config.path, TOKENS);
    let alice = User::new(11, "Alice");
    let bob = User::new(12, "Bob");
    let boom = tg.inject_message(&a.token, &Chat::private(&alice), &alice, "boom");
    tg.inject_message(
        &a.token,
        &Chat::private(&alice),
        &alice,
        "same chat, next message",
    );
    tg.inject_message(&a.token, &Chat::private(&bob), &bob, "another chat");
    let sent = tg
        .wait_for_sent(&a.token, 2, PROMPT)
        .await
        .expect("both other messages answered");
    let texts: Vec<&str> = sent.iter().map(|m| m.text.as_str()).collect();
    assert!(
        texts.contains(&"same chat, next message") && texts.contains(&"another chat"),
        "{texts:?}"
    );
    let line = daemon.wait_for_line("a handler panicked", PROMPT).await;
    assert!(
        line.contains("bot=a") && line.contains(&format!("update_id={boom}")),
        "{line}"
    );
    // And the bot keeps going.
    assert_echoes(&tg, &a.token, 11, "still here").await;
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn a_failing_worker_backs_off_longer_each_time_then_parks() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let a = tg.add_bot(TOKEN_A, "a_bot");
    let b = tg.add_bot(TOKEN_B, "b_bot");
    // A request Telegram refuses: retrying does not help, so it counts
    // towards parking (an outage would not).
    tg.add_fault(
        &a.token,
        "getMe",
        Fault::api_error(400, "Bad Request: something is wrong").forever(),
    );
    let restart = "[bot.a.restart]\ninitial_backoff = \"200ms\"\nmultiplier = 2\njitter = 0\nmax_backoff = \"10s\"\nmax_restarts = 3\nwindow = \"1m\"\npark_for = \"1h\"\n";
    let config = ConfigDir::new(&two_echo_bots(&tg.url(), "", restart));
    let mut daemon = Daemon::start(&config.path, TOKENS);

    let line = daemon
        .wait_for_line("parked: more than 3 restarts within 60.0s", PROMPT)
        .await;
    assert!(line.contains("bot=a"), "{line}");
    let attempts: Vec<Instant> = tg
        .requests_of(&a.token, "getMe")
        .iter()
        .map(|r| r.at)
        .collect();
    assert_eq!(
        attempts.len(),
        4,
        "the first try and three restarts, then parked"
    );
    // Waits of at least 200 ms, 400 ms, 800 ms, each longer than the last by
    // at least most of the doubling (jitter is 0).
    let gaps: Vec<Duration> = attempts
        .windows(2)
        .map(|p| p[1].duration_since(p[0]))
        .collect();
    for (i, gap) in gaps.iter().enumerate() {
        let floor = Duration::from_millis(200 << i);
        assert!(
            *gap >= floor,
            "restart {} came after {gap:?}, before {floor:?}",
            i + 1
        );
    }
    for pair in gaps.windows(2) {
        assert!(
            pair[1] >= pair[0] + Duration::from_millis(150),
            "not growing: {gaps:?}"
        );
    }
    assert_echoes(&tg, &b.token, 4, "b is unaffected").await;
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn sigusr1_logs_a_status_line() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let a = tg.add_bot(TOKEN_A, "a_bot");
    let config = ConfigDir::new(&format!(
        "{}[bot.a]\nkind = \"echo\"\ntoken_env = \"A_TOKEN\"\n",
        supervisor_table(&tg.url(), "")
    ));
    let mut daemon = Daemon::start(&config.path, TOKENS);
    assert_echoes(&tg, &a.token, 1, "count me").await;
    // The batch is counted before the next poll is sent.
    tg.wait_for_request(&a.token, "getUpdates", 3, PROMPT)
        .await
        .expect("polls on");
    daemon.signal(libc::SIGUSR1);
    let line = daemon.wait_for_line("status: a=running(", PROMPT).await;
    assert!(line.contains("handled=1"), "{line}");
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn an_abandoned_long_poll_is_visible_to_the_fake() {
    // SIGTERM drops the long poll at once rather than waiting for it.
    let tg = FakeTelegram::start().await.expect("start the fake");
    let a = tg.add_bot(TOKEN_A, "a_bot");
    let config = ConfigDir::new(&format!(
        "{}[bot.a]\nkind = \"echo\"\ntoken_env = \"A_TOKEN\"\n",
        supervisor_table(&tg.url(), "").replace("poll_timeout = \"2s\"", "poll_timeout = \"30s\"")
    ));
    let mut daemon = Daemon::start(&config.path, TOKENS);
    tg.wait_for_request(&a.token, "getUpdates", 1, PROMPT)
        .await
        .expect("polling");
    daemon
        .wait_for_line("running: polling as @a_bot", PROMPT)
        .await;
    let mut events = tg.subscribe();
    let poll_seq = tg.requests_of(&a.token, "getUpdates")[0].seq;
    let signalled = Instant::now();
    daemon.stop_cleanly().await;
    let took = signalled.elapsed();
    eprintln!("SIGTERM to exit while idle in a 30 s long poll: {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    // The fake sees the held poll abandoned by its client, not answered.
    let outcome = tokio::time::timeout(PROMPT, async {
        loop {
            match events.recv().await {
                Ok(fake_telegram::RequestEvent::Finished { seq, outcome, .. })
                    if seq == poll_seq =>
                {
                    return outcome;
                }
                Ok(_) => {}
                Err(err) => panic!("event stream: {err}"),
            }
        }
    })
    .await
    .expect("the poll ended");
    assert_eq!(outcome, Outcome::Abandoned, "the long poll was not dropped");
}

#[tokio::test]
async fn empty_answers_much_faster_than_the_timeout_do_not_make_it_spin() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let a = tg.add_bot(TOKEN_A, "a_bot");
    // A misbehaving proxy: every getUpdates answered `[]` at once.
    tg.add_fault(
        &a.token,
        "getUpdates",
        Fault::ok(serde_json::json!([])).forever(),
    );
    let config = ConfigDir::new(&format!(
        "{}[bot.a]\nkind = \"echo\"\ntoken_env = \"A_TOKEN\"\n",
        supervisor_table(&tg.url(), "").replace("poll_timeout = \"2s\"", "poll_timeout = \"30s\"")
    ));
    let mut daemon = Daemon::start(&config.path, TOKENS);
    let first = tg
        .wait_for_request(&a.token, "getUpdates", 1, PROMPT)
        .await
        .expect("polls");
    let tenth = tg
        .wait_for_request(&a.token, "getUpdates", 10, PROMPT)
        .await
        .expect("keeps polling");
    let span = tenth.at.duration_since(first.at);
    // Nine intervals at no more than three polls a second.
    assert!(
        span >= Duration::from_millis(2900),
        "10 polls within {span:?}: spinning"
    );
    still_running(&mut daemon);
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn a_migrated_group_gets_the_reply_at_its_new_id() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let a = tg.add_bot(TOKEN_A, "a_bot");
    tg.add_fault(
        &a.token,
        "sendMessage",
        Fault::migrate(-1001234567890).times(1),
    );
    let config = ConfigDir::new(&format!(
        "{}[bot.a]\nkind = \"echo\"\ntoken_env = \"A_TOKEN\"\n",
        supervisor_table(&tg.url(), "")
    ));
    let mut daemon = Daemon::start(&config.path, TOKENS);
    let user = User::new(31, "Member");
    tg.inject_message(
        &a.token,
        &Chat::group(-4242, "Old group"),
        &user,
        "hello group",
    );
    let sent = tg
        .wait_for_sent(&a.token, 1, PROMPT)
        .await
        .expect("the reply is resent");
    assert_eq!(sent[0].chat_id, -1001234567890);
    assert_eq!(sent[0].text, "hello group");
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn update_ids_that_restart_lower_after_a_week_are_handled_once() {
    // After a week without updates Telegram restarts update ids at random,
    // possibly lower: a stored offset older than six days is ignored.
    let tg = FakeTelegram::start().await.expect("start the fake");
    let a = tg.add_bot(TOKEN_A, "a_bot");
    let config = ConfigDir::new(&format!(
        "{}[bot.a]\nkind = \"echo\"\ntoken_env = \"A_TOKEN\"\n",
        supervisor_table(&tg.url(), "")
    ));
    let mut daemon = Daemon::start(&config.path, TOKENS);
    tg.set_next_update_id(&a.token, 1000);
    assert_echoes(&tg, &a.token, 41, "before the restart of ids").await;
    daemon.stop_cleanly().await;
    assert_eq!(tg.confirmed_offset(&a.token), 1001);

    // A week passes: the stored offset ages, Telegram starts again at 5.
    let db = config.folder().join("botvisor.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", db.display()))
        .await
        .expect("open the store");
    sqlx::query("UPDATE bot_offsets SET updated_at = updated_at - 7 * 24 * 3600")
        .execute(&pool)
        .await
        .expect("age the offset");
    pool.close().await;
    tg.set_next_update_id(&a.token, 5);
    let user = User::new(41, "Tester");
    tg.inject_message(
        &a.token,
        &Chat::private(&user),
        &user,
        "after the restart of ids",
    );

    let mut daemon = Daemon::start(&config.path, TOKENS);
    daemon
        .wait_for_line("ignoring a stored offset older than six days", PROMPT)
        .await;
    let sent = tg
        .wait_for_sent(&a.token, 2, PROMPT)
        .await
        .expect("the new update is answered");
    let polls = tg.requests_of(&a.token, "getUpdates").len();
    tg.wait_for_request(&a.token, "getUpdates", polls + 2, PROMPT)
        .await
        .expect("polls on");
    let texts: Vec<String> = tg
        .sent_messages(&a.token)
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(
        texts,
        ["before the restart of ids", "after the restart of ids"],
        "{sent:?}"
    );
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn an_update_delivered_again_below_the_offset_is_skipped() {
    // Two pollers can receive one batch; a handled update must not be
    // handled again when it comes back.
    let tg = FakeTelegram::start().await.expect("start the fake");
    let a = tg.add_bot(TOKEN_A, "a_bot");
    let user = User::new(61, "Tester");
    tg.inject_message(&a.token, &Chat::private(&user), &user, "only once");
    let again = tg.pending_updates(&a.token)[0].clone();
    let config = ConfigDir::new(&format!(
        "{}[bot.a]\nkind = \"echo\"\ntoken_env = \"A_TOKEN\"\n",
        supervisor_table(&tg.url(), "")
    ));
    let mut daemon = Daemon::start(&config.path, TOKENS);
    tg.wait_for_sent(&a.token, 1, PROMPT)
        .await
        .expect("answered");
    // The long poll outstanding now predates the fault; the next request
    // gets the handled update again, and the one after it shows the
    // worker has dealt with that answer.
    let polls = tg.requests_of(&a.token, "getUpdates").len();
    tg.add_fault(
        &a.token,
        "getUpdates",
        Fault::ok(serde_json::json!([again, again])).times(1),
    );
    tg.wait_for_request(&a.token, "getUpdates", polls + 2, PROMPT)
        .await
        .expect("polls on after the repeated update");
    assert_echoes(&tg, &a.token, 61, "the next one").await;
    let texts: Vec<String> = tg
        .sent_messages(&a.token)
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["only once", "the next one"]);
    daemon.stop_cleanly().await;
}
