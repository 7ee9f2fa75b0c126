//! The gateway, spoken to directly: a "probe" process bot (a shell that
//! writes down its environment and sleeps) gets a local token and the
//! gateway's address; the test then talks to the gateway as a bot's
//! library would, and checks each answer against Telegram's.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::programs::{PROBE, post, probe, program_pid, program_table};
use common::{ConfigDir, Daemon, HTTP, PROMPT, supervisor_table};
use fake_telegram::{Chat, FakeTelegram, User};
use serde_json::Value;

/// A token of Telegram's shape, built at run time.
fn real_token(id: u64) -> String {
    format!("{id}:{}", "Rq9".repeat(12).get(..35).unwrap_or_default())
}

/// A config with one probe bot `p`; the folder its program writes in.
fn probe_config(api_url: &str, extra: &str) -> (ConfigDir, PathBuf) {
    let config = ConfigDir::new(&format!(
        "{}{}",
        supervisor_table(api_url, HTTP),
        program_table("p", PROBE, extra)
    ));
    let dir = config.folder().to_path_buf();
    (config, dir)
}

#[tokio::test]
async fn the_probe_gets_a_local_token_and_the_gateway_answers_as_telegram() {
    let tg = FakeTelegram::start().await.expect("fake");
    let token = real_token(700_001);
    tg.add_bot(&token, "probe_bot");
    let (config, env_file) = probe_config(&tg.url(), "");
    let mut daemon = Daemon::start(&config.path, &[("P_TOKEN", &token)]);
    let probe = probe(&env_file, 0).await;

    // The local token has the real one's shape and id, never its secret.
    let local = probe.token().to_owned();
    let (id, secret) = local.split_once(':').expect("id:secret");
    assert_eq!(id, "700001");
    assert_eq!(secret.len(), 35, "{local}");
    assert!(
        secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    );
    assert_ne!(local, token);
    assert!(
        probe.url().starts_with("http://127.0.0.1:"),
        "{}",
        probe.url()
    );
    assert!(
        probe.var("P_TOKEN").is_none(),
        "the real token's variable is passed on"
    );
    assert!(
        probe.vars.iter().all(|(_, v)| !v.contains(&token)),
        "the real token is in the child's environment"
    );

    // getMe, answered from the session's own.
    let (code, me) = post(&probe.method("getMe"), Value::Null).await;
    assert_eq!(
        (code, &me["result"]["username"]),
        (200, &Value::from("probe_bot"))
    );
    // A wrong token, a method the Bot API has not, and the refused ones.
    let wrong = format!("{}/bot{}/getMe", probe.url(), real_token(700_001));
    let (code, answer) = post(&wrong, Value::Null).await;
    assert_eq!(
        (code, &answer["description"]),
        (401, &Value::from("Unauthorized"))
    );
    let (code, answer) = post(&probe.method("sendMessages"), Value::Null).await;
    assert_eq!(
        (code, &answer["description"]),
        (404, &Value::from("Not Found"))
    );
    assert!(
        tg.requests_of(&token, "sendmessages").is_empty(),
        "forwarded"
    );
    for method in ["setWebhook", "logOut", "close"] {
        let (code, answer) = post(
            &probe.method(method),
            serde_json::json!({"url": "https://a.b"}),
        )
        .await;
        assert_eq!(code, 400, "{method}: {answer}");
        assert!(
            answer["description"]
                .as_str()
                .unwrap_or_default()
                .contains("botvisor")
        );
    }
    assert!(tg.webhook_url(&token).is_none());
    let (code, info) = post(&probe.method("GetWebhookInfo"), Value::Null).await;
    assert_eq!((code, &info["result"]["url"]), (200, &Value::from("")));
    let (code, _) = post(&probe.method("deleteWebhook"), Value::Null).await;
    assert_eq!(code, 200);

    // An update arrives: a long poll answers at once with it, again until
    // confirmed, and confirming takes it out.
    let alice = User::new(42, "Alice");
    let update_id = tg.inject_message(&token, &Chat::private(&alice), &alice, "merhaba");
    let (code, updates) = post(
        &probe.method("getUpdates"),
        serde_json::json!({"timeout": 20}),
    )
    .await;
    assert_eq!(code, 200, "{updates}");
    assert_eq!(updates["result"][0]["update_id"], update_id);
    assert_eq!(updates["result"][0]["message"]["text"], "merhaba");
    let (_, again) = post(
        &probe.method("getUpdates"),
        serde_json::json!({"offset": update_id}),
    )
    .await;
    assert_eq!(again["result"].as_array().map(Vec::len), Some(1));
    let (_, empty) = post(
        &probe.method("getUpdates"),
        serde_json::json!({"offset": update_id + 1, "timeout": 0}),
    )
    .await;
    assert_eq!(empty["result"], serde_json::json!([]));

    // A send goes out through the outbox and comes back as Telegram's Message.
    let (code, sent) = post(
        &probe.method("SendMessage"),
        serde_json::json!({"chat_id": 42, "text": "selam"}),
    )
    .await;
    assert_eq!(code, 200, "{sent}");
    assert_eq!(sent["result"]["text"], "selam");
    assert!(
        sent["result"]["message_id"]
            .as_i64()
            .is_some_and(|id| id > 0)
    );
    let delivered = tg.sent_messages(&token);
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].text, "selam");
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn the_real_token_reaches_neither_the_childs_environment_nor_any_answer() {
    let tg = FakeTelegram::start().await.expect("fake");
    let token = real_token(700_002);
    tg.add_bot(&token, "probe_bot");
    let (config, env_file) = probe_config(&tg.url(), "");
    // The same token under another name, and the store's URL: not passed on.
    let mut daemon = Daemon::start(
        &config.path,
        &[
            ("P_TOKEN", &token),
            ("ALSO_THE_TOKEN", &token),
            ("DATABASE_URL", ""),
            ("HARMLESS", "yes"),
        ],
    );
    let base = common::endpoint(&mut daemon).await;
    let probe = probe(&env_file, 0).await;
    let pid = program_pid(&base, "p").await;
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("the child's environment");
    let environ = String::from_utf8_lossy(&environ);
    let secret = token.split_once(':').map(|(_, s)| s).unwrap_or_default();
    assert!(
        !environ.contains(secret),
        "the real token's secret is in the child's environment"
    );
    assert!(environ.contains("HARMLESS=yes"));
    assert!(!environ.contains("ALSO_THE_TOKEN") && !environ.contains("DATABASE_URL"));
    assert!(environ.contains(&format!("BOT_TOKEN={}", probe.token())));

    // Answers that Telegram's server filled with the token (an error page
    // echoing the URL) reach the child redacted.
    tg.add_fault(
        &token,
        "getChat",
        fake_telegram::Fault::echo_path(400, "Bad Request: no such chat").forever(),
    );
    let (code, answer) = post(&probe.method("getChat"), serde_json::json!({"chat_id": 5})).await;
    assert_eq!(code, 400);
    assert!(!answer.to_string().contains(secret), "{answer}");
    tg.add_fault(
        &token,
        "sendMessage",
        fake_telegram::Fault::echo_path(400, "Bad Request: nope"),
    );
    let (code, answer) = post(
        &probe.method("sendMessage"),
        serde_json::json!({"chat_id": 5, "text": "x"}),
    )
    .await;
    assert_eq!(code, 400, "{answer}");
    assert!(!answer.to_string().contains(secret), "{answer}");
    assert!(
        !daemon.output().contains(secret),
        "the real token is in the log"
    );
    assert!(
        !daemon.output().contains(probe.token()),
        "the local token is in the log"
    );
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn get_updates_behaves_as_telegrams() {
    let tg = FakeTelegram::start().await.expect("fake");
    let token = real_token(700_003);
    tg.add_bot(&token, "probe_bot");
    let (config, env_file) = probe_config(&tg.url(), "");
    let mut daemon = Daemon::start(&config.path, &[("P_TOKEN", &token)]);
    let base = common::endpoint(&mut daemon).await;
    let probe = probe(&env_file, 0).await;
    let url = probe.method("getUpdates");

    // Nothing there: the long poll waits its timeout, then answers empty.
    let started = Instant::now();
    let (code, empty) = post(&url, serde_json::json!({"timeout": 1})).await;
    assert_eq!((code, &empty["result"]), (200, &serde_json::json!([])));
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );

    // A long poll is answered the moment an update is there.
    let waiting = tokio::spawn({
        let url = url.clone();
        async move {
            let started = Instant::now();
            let answer = post(&url, serde_json::json!({"timeout": 30, "allowed_updates": ["message", "callback_query"]})).await;
            (answer, started.elapsed())
        }
    });
    // The program's allowed_updates reach botvisor's own poll.
    let token_for_wait = token.clone();
    tg.wait_for_request_matching(
        "a poll with the program's allowed_updates",
        PROMPT,
        move |r| {
            r.token == token_for_wait
                && r.method == "getupdates"
                && r.body["allowed_updates"]
                    .to_string()
                    .contains("callback_query")
        },
    )
    .await
    .expect("botvisor polls with them");
    let alice = User::new(42, "Alice");
    let chat = Chat::private(&alice);
    let first = tg.inject_message(&token, &chat, &alice, "bir");
    let ((code, answer), took) = waiting.await.expect("the poll");
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["result"][0]["update_id"], first);
    assert!(took < Duration::from_secs(15), "answered after {took:?}");

    // More arrive; a limit, a negative offset (the last one stays, the
    // others are forgotten), as Telegram does.
    let second = tg.inject_message(&token, &chat, &alice, "iki");
    let third = tg.inject_message(&token, &chat, &alice, "üç");
    let started = Instant::now();
    loop {
        // A long poll: answered as soon as there is anything.
        let (_, answer) = post(&url, serde_json::json!({"timeout": 5})).await;
        if answer["result"].as_array().map_or(0, Vec::len) == 3 {
            break;
        }
        assert!(started.elapsed() < PROMPT, "never three: {answer}");
    }
    let (_, limited) = post(&url, serde_json::json!({"limit": 2})).await;
    let ids: Vec<Value> = limited["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| u["update_id"].clone())
        .collect();
    assert_eq!(ids, [Value::from(first), Value::from(second)]);
    let (_, last) = post(&url, serde_json::json!({"offset": -1})).await;
    let ids: Vec<Value> = last["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| u["update_id"].clone())
        .collect();
    assert_eq!(ids, [Value::from(third)]);
    let (_, after) = post(&url, serde_json::json!({"timeout": 0})).await;
    assert_eq!(after["result"].as_array().map(Vec::len), Some(1), "{after}");

    // A newer poll that answers at once leaves an older one waiting: the
    // older one gets the next update. One that waits itself ends it with
    // Telegram's 409.
    let older = waiting_poll(&url, &base, third + 1).await;
    let (code, _) = post(&url, serde_json::json!({"offset": third + 1, "timeout": 0})).await;
    assert_eq!(code, 200);
    let fourth = tg.inject_message(&token, &chat, &alice, "dört");
    let (code, got) = older.await.expect("the older poll");
    assert_eq!(
        code, 200,
        "a poll that answered at once ended the waiting one: {got}"
    );
    assert_eq!(got["result"][0]["update_id"], fourth);
    let older = waiting_poll(&url, &base, fourth + 1).await;
    let (code, _) = post(
        &url,
        serde_json::json!({"offset": fourth + 1, "timeout": 1}),
    )
    .await;
    assert_eq!(code, 200);
    let (code, ended) = older.await.expect("the older poll");
    assert_eq!(code, 409, "{ended}");
    assert!(
        ended["description"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Conflict: terminated by other getUpdates")
    );

    // deleteWebhook with drop_pending_updates drops what is offered.
    let fifth = tg.inject_message(&token, &chat, &alice, "beş");
    let started = Instant::now();
    loop {
        let (_, answer) = post(
            &url,
            serde_json::json!({"offset": fourth + 1, "timeout": 5}),
        )
        .await;
        if answer["result"][0]["update_id"] == fifth {
            break;
        }
        assert!(started.elapsed() < PROMPT, "never offered: {answer}");
    }
    let (code, _) = post(
        &probe.method("deleteWebhook"),
        serde_json::json!({"drop_pending_updates": true}),
    )
    .await;
    assert_eq!(code, 200);
    let (_, none) = post(&url, serde_json::json!({"timeout": 0})).await;
    assert_eq!(none["result"], serde_json::json!([]));
    daemon.stop_cleanly().await;
}

/// Starts a long poll from `offset` and returns once the gateway has it.
async fn waiting_poll(url: &str, base: &str, offset: u32) -> tokio::task::JoinHandle<(u16, Value)> {
    let before = common::bot_status(base, "p").await["process"]["last_get_updates"].clone();
    let poll = tokio::spawn({
        let url = url.to_owned();
        async move { post(&url, serde_json::json!({"offset": offset, "timeout": 30})).await }
    });
    common::wait_for_status(base, "p", PROMPT, |s| {
        s["process"]["last_get_updates"] != before
    })
    .await;
    poll
}

#[tokio::test]
async fn a_conflict_and_an_outage_on_the_real_poll_never_reach_the_program() {
    let tg = FakeTelegram::start().await.expect("fake");
    let token = real_token(700_004);
    tg.add_bot(&token, "probe_bot");
    let (config, env_file) = probe_config(&tg.url(), "");
    let mut daemon = Daemon::start(&config.path, &[("P_TOKEN", &token)]);
    let base = common::endpoint(&mut daemon).await;
    let probe = probe(&env_file, 0).await;
    let url = probe.method("getUpdates");
    // Another poller, then Telegram down (a 502 page, then nothing).
    tg.add_fault(
        &token,
        "getUpdates",
        fake_telegram::Fault::conflict_other_poller().times(3),
    );
    tg.add_fault(
        &token,
        "getUpdates",
        fake_telegram::Fault::bad_gateway_html().times(2),
    );
    tg.add_fault(
        &token,
        "getUpdates",
        fake_telegram::Fault::drop_connection().times(2),
    );
    common::wait_for_status(&base, "p", PROMPT, |s| s["state"] == "conflict").await;
    for _ in 0..3 {
        let (code, answer) = post(&url, serde_json::json!({"timeout": 1})).await;
        assert_eq!(
            (code, &answer["result"]),
            (200, &serde_json::json!([])),
            "{answer}"
        );
    }
    // Once the poll works again, an update reaches the program.
    let alice = User::new(42, "Alice");
    let id = tg.inject_message(&token, &Chat::private(&alice), &alice, "geri");
    let started = Instant::now();
    loop {
        let (code, answer) = post(&url, serde_json::json!({"timeout": 5})).await;
        assert_eq!(code, 200, "{answer}");
        if answer["result"][0]["update_id"] == id {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the update never came"
        );
    }
    // The program ran all along.
    let status = common::bot_status(&base, "p").await;
    assert_eq!(status["process"]["starts"], 1, "{status}");
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn a_send_held_past_the_callers_timeout_goes_out_once_and_identical_sends_are_never_merged() {
    let tg = FakeTelegram::start().await.expect("fake");
    let token = real_token(700_005);
    tg.add_bot(&token, "probe_bot");
    let (config, env_file) = probe_config(&tg.url(), "");
    let mut daemon = Daemon::start(&config.path, &[("P_TOKEN", &token)]);
    let base = common::endpoint(&mut daemon).await;
    let probe = probe(&env_file, 0).await;
    let url = probe.method("sendMessage");
    let body = |text: &str| serde_json::json!({"chat_id": 42, "text": text});
    let (code, _) = post(&url, body("first")).await;
    assert_eq!(code, 200);
    // One message a second to a chat: this one waits for the pacer, longer
    // than its caller waits (python-telegram-bot gives up after 5 s).
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("a client");
    let gave_up = impatient.post(&url).json(&body("held")).send().await;
    assert!(gave_up.is_err_and(|e| e.is_timeout()), "it was not held");
    // It goes out once, though nobody waits for it any more; a repeat by
    // the caller is a message of its own.
    let (code, repeat) = post(&url, body("held")).await;
    assert_eq!(code, 200, "{repeat}");
    let sent = tg.wait_for_sent(&token, 3, PROMPT).await.expect("sent");
    let held: Vec<&str> = sent.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(held, ["first", "held", "held"]);
    // Five identical sends, five messages.
    let sends = (0..5).map(|_| post(&url, body("aynı")));
    for (code, answer) in futures::future::join_all(sends).await {
        assert_eq!(code, 200, "{answer}");
    }
    let sent = tg
        .wait_for_sent(&token, 8, Duration::from_secs(30))
        .await
        .expect("sent");
    assert_eq!(sent.iter().filter(|m| m.text == "aynı").count(), 5);
    // Nothing more waits to go out, and nothing more went.
    let status = common::wait_for_status(&base, "p", PROMPT, |s| s["outbox"]["pending"] == 0).await;
    assert_eq!(status["messages_sent"], 8, "{status}");
    assert_eq!(tg.sent_messages(&token).len(), 8);
    daemon.stop_cleanly().await;
}
