//! getUpdates as Telegram does it: long polling (held until an update or the
//! timeout), offset confirmation, `limit`, `allowed_updates` and its
//! persistence, update id restarts, and the three 409 conflicts. Also a real
//! teloxide dispatcher with its polling listener against the fake.

mod common;

use std::time::{Duration, Instant};

use common::{TOKEN, WAIT, alice, alice_chat, bounded, fake, post_json, teloxide_bot};
use fake_telegram::{Chat, Outcome, conflicts};
use serde_json::json;
use teloxide::prelude::*;
use teloxide::types::{AllowedUpdate, UpdateKind};
use teloxide::update_listeners::Polling;
use teloxide::{ApiError, RequestError};

fn ids(updates: &[Update]) -> Vec<u32> {
    updates.iter().map(|u| u.id.0).collect()
}

#[tokio::test]
async fn long_poll_holds_until_an_update_arrives() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        let started = Instant::now();
        let mut poll = tokio::spawn(async move { bot.get_updates().timeout(10).await });
        tg.wait_until_polling(TOKEN, WAIT).await.expect("poll held");
        // Lower bound: with nothing queued, it does not answer early.
        let early = tokio::time::timeout(Duration::from_millis(300), &mut poll).await;
        assert!(early.is_err(), "long poll returned before any update");
        let injected_at = Instant::now();
        let id = tg.inject_message(TOKEN, &alice_chat(), &alice(), "wake up");
        let updates = poll.await.expect("task").expect("getUpdates");
        assert_eq!(ids(&updates), [id]);
        assert!(started.elapsed() >= Duration::from_millis(300));
        // Generous ceiling: it answered promptly, not at the 10 s timeout.
        assert!(injected_at.elapsed() < Duration::from_secs(5));
        assert!(!tg.is_polling(TOKEN));
    })
    .await;
}

#[tokio::test]
async fn long_poll_returns_empty_after_the_timeout() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        let started = Instant::now();
        let updates = bot.get_updates().timeout(1).await.expect("getUpdates");
        let took = started.elapsed();
        assert!(updates.is_empty());
        assert!(
            took >= Duration::from_millis(950),
            "returned after {took:?}"
        );
        assert!(took < Duration::from_secs(8), "returned after {took:?}");
        // The fake also takes fractional timeouts (handy for fast tests).
        let started = Instant::now();
        let raw = post_json(&tg, TOKEN, "getUpdates", json!({"timeout": 0.2})).await;
        assert_eq!(raw.json(), json!({"ok": true, "result": []}));
        assert!(started.elapsed() >= Duration::from_millis(190));
    })
    .await;
}

#[tokio::test]
async fn waiting_updates_are_returned_at_once() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        tg.inject_message(TOKEN, &alice_chat(), &alice(), "already here");
        let started = Instant::now();
        let updates = bot.get_updates().timeout(30).await.expect("getUpdates");
        assert_eq!(updates.len(), 1);
        assert!(started.elapsed() < Duration::from_secs(5));
    })
    .await;
}

#[tokio::test]
async fn offsets_confirm_updates() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        let chat = alice_chat();
        let a = tg.inject_message(TOKEN, &chat, &alice(), "a");
        let b = tg.inject_message(TOKEN, &chat, &alice(), "b");
        let c = tg.inject_message(TOKEN, &chat, &alice(), "c");
        assert_eq!([a, b, c], [1, 2, 3]);
        // Unconfirmed updates come again.
        assert_eq!(ids(&bot.get_updates().await.expect("1st")), [1, 2, 3]);
        assert_eq!(ids(&bot.get_updates().await.expect("2nd")), [1, 2, 3]);
        // offset = b confirms a only.
        let got = bot.get_updates().offset(b as i32).await.expect("3rd");
        assert_eq!(ids(&got), [2, 3]);
        assert_eq!(tg.confirmed_offset(TOKEN), i64::from(b));
        assert_eq!(tg.pending_update_count(TOKEN), 2);
        // Confirming everything.
        let got = bot.get_updates().offset(c as i32 + 1).await.expect("4th");
        assert!(got.is_empty());
        assert_eq!(tg.pending_update_count(TOKEN), 0);
        let d = tg.inject_message(TOKEN, &chat, &alice(), "d");
        let got = bot.get_updates().await.expect("5th");
        assert_eq!(ids(&got), [d]);
        assert_eq!(tg.pending_updates(TOKEN)[0]["message"]["text"], "d");
        // A negative offset keeps the last -offset updates.
        tg.inject_message(TOKEN, &chat, &alice(), "e");
        tg.inject_message(TOKEN, &chat, &alice(), "f");
        let got = bot.get_updates().offset(-1).await.expect("negative");
        assert_eq!(ids(&got), [d + 2]);
    })
    .await;
}

#[tokio::test]
async fn limit_caps_the_batch() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        for i in 0..120 {
            tg.inject_message(TOKEN, &alice_chat(), &alice(), &format!("m{i}"));
        }
        assert_eq!(ids(&bot.get_updates().limit(2).await.expect("2")), [1, 2]);
        // Default and maximum are 100; 0 counts as 1.
        assert_eq!(bot.get_updates().await.expect("default").len(), 100);
        assert_eq!(bot.get_updates().limit(100).await.expect("100").len(), 100);
        let raw = post_json(&tg, TOKEN, "getUpdates", json!({"limit": 1000})).await;
        assert_eq!(raw.json()["result"].as_array().map(Vec::len), Some(100));
        let raw = post_json(&tg, TOKEN, "getUpdates", json!({"limit": 0})).await;
        assert_eq!(raw.json()["result"].as_array().map(Vec::len), Some(1));
    })
    .await;
}

#[tokio::test]
async fn allowed_updates_filter_and_persist() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        let chat = alice_chat();
        tg.inject_message(TOKEN, &chat, &alice(), "dropped");
        let cb = tg.inject_callback_query(TOKEN, &chat, &alice(), 1, "kept");
        let got = bot
            .get_updates()
            .allowed_updates([AllowedUpdate::CallbackQuery])
            .await
            .expect("filtered");
        assert_eq!(ids(&got), [cb]);
        assert!(matches!(got[0].kind, UpdateKind::CallbackQuery(_)));
        assert_eq!(
            tg.allowed_updates(TOKEN),
            Some(vec!["callback_query".to_owned()])
        );
        // Not given again: the previous setting still applies.
        tg.inject_message(TOKEN, &chat, &alice(), "dropped too");
        let cb2 = tg.inject_callback_query(TOKEN, &chat, &alice(), 1, "kept too");
        let got = bot
            .get_updates()
            .offset(cb as i32 + 1)
            .await
            .expect("persisted");
        assert_eq!(ids(&got), [cb2]);
        // The not-allowed message was dropped, not kept for later.
        let got = bot
            .get_updates()
            .allowed_updates([AllowedUpdate::Message, AllowedUpdate::CallbackQuery])
            .await
            .expect("widened");
        assert_eq!(ids(&got), [cb2]);
        // An empty list is the default: everything but the opt-in types.
        let member = tg.inject_update(TOKEN, json!({"chat_member": {}}));
        let msg = tg.inject_message(TOKEN, &chat, &alice(), "visible");
        let raw = post_json(
            &tg,
            TOKEN,
            "getUpdates",
            json!({"offset": cb2 + 1, "allowed_updates": []}),
        )
        .await;
        let got: Vec<u64> = raw.json()["result"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|u| u["update_id"].as_u64())
            .collect();
        assert_eq!(got, [u64::from(msg)]);
        assert!(member < msg);
    })
    .await;
}

#[tokio::test]
async fn a_second_poller_ends_the_first_with_409() {
    bounded(async {
        let tg = fake().await;
        let first_bot = teloxide_bot(&tg, TOKEN);
        let second_bot = teloxide_bot(&tg, TOKEN);
        let first = tokio::spawn(async move { first_bot.get_updates().timeout(20).await });
        tg.wait_until_polling(TOKEN, WAIT)
            .await
            .expect("first held");
        tg.wait_for_request(TOKEN, "getUpdates", 1, WAIT)
            .await
            .expect("first arrived");
        let second = tokio::spawn(async move { second_bot.get_updates().timeout(20).await });
        let err = first.await.expect("task").expect_err("first is terminated");
        assert!(
            matches!(
                err,
                RequestError::Api(ApiError::TerminatedByOtherGetUpdates)
            ),
            "{err:?}"
        );
        // The second poll is now the held one and gets the update.
        let id = tg.inject_message(TOKEN, &alice_chat(), &alice(), "for the second");
        let got = second.await.expect("task").expect("second poll");
        assert_eq!(ids(&got), [id]);
        let polls = tg.requests_of(TOKEN, "GetUpdates");
        assert_eq!(polls[0].outcome, Outcome::Status(409));
        assert_eq!(polls[1].outcome, Outcome::Status(200));
    })
    .await;
}

#[tokio::test]
async fn conflict_text_is_exact() {
    bounded(async {
        let tg = fake().await;
        let url = tg.url();
        let first = tokio::spawn(async move {
            let resp = reqwest::Client::new()
                .post(format!("{url}/bot{TOKEN}/getUpdates"))
                .json(&json!({"timeout": 20}))
                .send()
                .await
                .expect("sent");
            let status = resp.status().as_u16();
            (
                status,
                resp.json::<serde_json::Value>().await.expect("json"),
            )
        });
        tg.wait_until_polling(TOKEN, WAIT).await.expect("held");
        let second = post_json(&tg, TOKEN, "getUpdates", json!({"timeout": 0})).await;
        assert_eq!(second.status, 200, "a poll that need not wait ends nothing");
        assert!(tg.is_polling(TOKEN));
        let url = tg.url();
        let third = tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{url}/bot{TOKEN}/getUpdates"))
                .json(&json!({"timeout": 0.5}))
                .send()
                .await
                .expect("sent")
                .status()
                .as_u16()
        });
        let (status, body) = first.await.expect("task");
        assert_eq!(status, 409);
        assert_eq!(
            body,
            json!({"ok": false, "error_code": 409, "description": conflicts::OTHER_POLLER})
        );
        assert_eq!(
            conflicts::OTHER_POLLER,
            "Conflict: terminated by other getUpdates request; make sure that only one bot \
             instance is running"
        );
        assert_eq!(third.await.expect("task"), 200);
    })
    .await;
}

#[tokio::test]
async fn two_pollers_can_both_receive_waiting_updates() {
    bounded(async {
        let tg = fake().await;
        let id = tg.inject_message(TOKEN, &alice_chat(), &alice(), "shared");
        let a = post_json(&tg, TOKEN, "getUpdates", json!({"timeout": 5})).await;
        let b = post_json(&tg, TOKEN, "getUpdates", json!({"timeout": 5})).await;
        assert_eq!(a.json()["result"][0]["update_id"], id);
        assert_eq!(b.json()["result"][0]["update_id"], id);
    })
    .await;
}

#[tokio::test]
async fn webhook_blocks_get_updates_until_deleted() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        tg.set_webhook(TOKEN, "https://127.0.0.1:8443/hook");
        let err = bot.get_updates().await.expect_err("webhook active");
        assert!(
            matches!(&err, RequestError::Api(ApiError::Unknown(d)) if d == conflicts::WEBHOOK_ACTIVE),
            "{err:?}"
        );
        assert_eq!(
            conflicts::WEBHOOK_ACTIVE,
            "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to \
             delete the webhook first"
        );
        let raw = post_json(&tg, TOKEN, "getUpdates", json!({})).await;
        assert_eq!(raw.status, 409);
        bot.delete_webhook().await.expect("deleteWebhook");
        assert!(bot.get_updates().await.expect("polling again").is_empty());
    })
    .await;
}

#[tokio::test]
async fn set_webhook_ends_a_held_poll() {
    bounded(async {
        let tg = fake().await;
        let poller = teloxide_bot(&tg, TOKEN);
        let poll = tokio::spawn(async move { poller.get_updates().timeout(20).await });
        tg.wait_until_polling(TOKEN, WAIT).await.expect("held");
        teloxide_bot(&tg, TOKEN)
            .set_webhook(reqwest::Url::parse("https://127.0.0.1/hook").expect("url"))
            .await
            .expect("setWebhook");
        let err = poll.await.expect("task").expect_err("terminated");
        assert!(
            matches!(&err, RequestError::Api(ApiError::Unknown(d)) if d == conflicts::SET_WEBHOOK),
            "{err:?}"
        );
        assert_eq!(
            conflicts::SET_WEBHOOK,
            "Conflict: terminated by setWebhook request"
        );
    })
    .await;
}

#[tokio::test]
async fn update_ids_can_restart_lower() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        tg.set_next_update_id(TOKEN, 1000);
        let a = tg.inject_message(TOKEN, &alice_chat(), &alice(), "a");
        assert_eq!(a, 1000);
        bot.get_updates().offset(1001).await.expect("confirm");
        // Telegram picked a new, lower start; the bot's old offset is now
        // "in the future" and must not swallow the new updates.
        tg.set_next_update_id(TOKEN, 7);
        let b = tg.inject_message(TOKEN, &alice_chat(), &alice(), "b");
        assert_eq!(b, 7);
        let got = bot.get_updates().offset(1001).await.expect("after restart");
        assert_eq!(ids(&got), [7]);
        let got = bot.get_updates().offset(8).await.expect("confirm new");
        assert!(got.is_empty());
        assert_eq!(tg.pending_update_count(TOKEN), 0);
    })
    .await;
}

#[tokio::test]
async fn teloxide_dispatcher_echoes_through_the_fake() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        let handler = Update::filter_message().endpoint(|bot: Bot, msg: Message| async move {
            let text = format!("echo: {}", msg.text().unwrap_or_default());
            bot.send_message(msg.chat.id, text).await?;
            respond(())
        });
        let mut dispatcher = Dispatcher::builder(bot.clone(), handler).build();
        let listener = Polling::builder(bot)
            .timeout(Duration::from_secs(1))
            .build();
        let task = tokio::spawn(async move {
            dispatcher
                .dispatch_with_listener(
                    listener,
                    LoggingErrorHandler::with_custom_text("polling error"),
                )
                .await;
        });
        let group = Chat::group(-5, "Echoes");
        tg.inject_message(TOKEN, &alice_chat(), &alice(), "one");
        tg.inject_message(TOKEN, &group, &alice(), "two");
        let sent = tg.wait_for_sent(TOKEN, 2, WAIT).await.expect("echoes");
        let mut texts: Vec<(i64, String)> =
            sent.iter().map(|m| (m.chat_id, m.text.clone())).collect();
        texts.sort();
        assert_eq!(
            texts,
            [(-5, "echo: two".to_owned()), (1001, "echo: one".to_owned())]
        );
        // The listener confirms what it received.
        let polls = tg
            .wait_for_request(TOKEN, "getUpdates", 2, WAIT)
            .await
            .expect("second poll");
        assert!(polls.body["offset"].as_i64().is_some_and(|o| o >= 2));
        task.abort();
        let _ = task.await;
    })
    .await;
}

#[tokio::test]
async fn a_poll_whose_client_leaves_is_abandoned() {
    bounded(async {
        let tg = fake().await;
        let mut events = tg.subscribe();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(300))
            .build()
            .expect("client");
        let gone = client
            .post(format!("{}/bot{TOKEN}/getUpdates", tg.url()))
            .json(&json!({"timeout": 20}))
            .send()
            .await;
        assert!(gone.is_err(), "the client gave up");
        loop {
            let ev = events.recv().await.expect("event");
            if let fake_telegram::RequestEvent::Finished { outcome, .. } = ev {
                assert_eq!(outcome, Outcome::Abandoned);
                break;
            }
        }
        assert!(!tg.is_polling(TOKEN), "the held slot is freed");
        // The next poller is not told about a conflict with a ghost.
        let raw = post_json(&tg, TOKEN, "getUpdates", json!({"timeout": 0.1})).await;
        assert_eq!(raw.status, 200);
    })
    .await;
}
