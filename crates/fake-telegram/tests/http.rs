//! The wire protocol seen by a plain HTTP client: routing, case-insensitive
//! method names, 401/404/400 shapes, form and query parameters; and the
//! test-side records: requests, waits, the event broadcast, shutdown.

mod common;

use std::time::Duration;

use common::{TOKEN, WAIT, alice, alice_chat, bounded, fake, post_json, send, teloxide_bot};
use fake_telegram::{FakeTelegram, Outcome, RequestEvent};
use serde_json::json;
use teloxide::prelude::*;
use teloxide::{ApiError, RequestError};

#[tokio::test]
async fn url_has_no_trailing_slash() {
    bounded(async {
        let tg = fake().await;
        let url = tg.url();
        assert!(url.starts_with("http://127.0.0.1:"));
        assert!(!url.ends_with('/'));
        assert_eq!(url, format!("http://{}", tg.addr()));
    })
    .await;
}

#[tokio::test]
async fn method_names_are_case_insensitive() {
    bounded(async {
        let tg = fake().await;
        for name in ["getMe", "GetMe", "GETME", "getme"] {
            let raw = post_json(&tg, TOKEN, name, json!({})).await;
            assert_eq!(raw.status, 200, "{name}");
            assert_eq!(raw.json()["result"]["username"], "test_bot");
        }
        assert!(
            tg.requests()
                .iter()
                .all(|r| r.method == "getme" && r.token == TOKEN)
        );
    })
    .await;
}

#[tokio::test]
async fn unknown_token_is_401() {
    bounded(async {
        let tg = fake().await;
        let raw = post_json(&tg, "1:wrong", "getMe", json!({})).await;
        assert_eq!(raw.status, 401);
        assert_eq!(
            raw.json(),
            json!({"ok": false, "error_code": 401, "description": "Unauthorized"})
        );
        let err = teloxide_bot(&tg, "1:wrong")
            .get_me()
            .await
            .expect_err("unknown token");
        assert!(matches!(err, RequestError::Api(ApiError::InvalidToken)));
        // Even for an unknown method.
        let raw = post_json(&tg, "1:wrong", "noSuchMethod", json!({})).await;
        assert_eq!(raw.status, 401);
    })
    .await;
}

#[tokio::test]
async fn unknown_method_and_path_are_404() {
    bounded(async {
        let tg = fake().await;
        let raw = post_json(&tg, TOKEN, "sendTelepathy", json!({})).await;
        assert_eq!(raw.status, 404);
        assert_eq!(
            raw.json(),
            json!({"ok": false, "error_code": 404, "description": "Not Found: method not found"})
        );
        let raw = send(reqwest::Client::new().get(format!("{}/favicon.ico", tg.url()))).await;
        assert_eq!(raw.status, 404);
        assert_eq!(raw.json()["ok"], false);
    })
    .await;
}

#[tokio::test]
async fn malformed_json_is_400_and_recorded() {
    bounded(async {
        let tg = fake().await;
        let raw = send(
            reqwest::Client::new()
                .post(format!("{}/bot{TOKEN}/sendMessage", tg.url()))
                .header("content-type", "application/json")
                .body("{\"chat_id\": 1, \"text\": "),
        )
        .await;
        assert_eq!(raw.status, 400);
        let body = raw.json();
        assert_eq!(body["error_code"], 400);
        let description = body["description"].as_str().expect("description");
        assert!(description.starts_with("Bad Request: "), "{description}");
        assert!(body.get("parameters").is_none());
        let recorded = &tg.requests_of(TOKEN, "sendMessage")[0];
        assert!(recorded.body.is_string());
        assert_eq!(recorded.status(), Some(400));
        // Wrong types are 400s too, not panics.
        for bad in [
            json!({"chat_id": {"x": 1}, "text": "x"}),
            json!({"chat_id": 1, "text": "x", "reply_markup": "{not json"}),
            json!({"offset": "abc"}),
            json!([1, 2, 3]),
        ] {
            let raw = post_json(&tg, TOKEN, "sendMessage", bad.clone()).await;
            assert_eq!(raw.status, 400, "{bad}");
        }
        let raw = post_json(&tg, TOKEN, "getUpdates", json!({"offset": "abc"})).await;
        assert_eq!(raw.status, 400);
        let raw = post_json(&tg, TOKEN, "getChatMember", json!({"chat_id": 1})).await;
        assert_eq!(raw.status, 400);
        let raw = post_json(&tg, TOKEN, "sendMessage", json!({"text": "no chat"})).await;
        assert_eq!(raw.status, 400);
    })
    .await;
}

#[tokio::test]
async fn form_bodies_and_query_strings_work() {
    bounded(async {
        let tg = fake().await;
        let markup = json!({"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]});
        let raw = send(
            reqwest::Client::new()
                .post(format!("{}/bot{TOKEN}/sendMessage", tg.url()))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!(
                    "chat_id=1001&text=hello+form&reply_markup={}",
                    url_encode(&markup.to_string())
                )),
        )
        .await;
        assert_eq!(raw.status, 200, "{}", raw.text);
        assert_eq!(raw.json()["result"]["reply_markup"], markup);
        let raw = send(reqwest::Client::new().get(format!(
            "{}/bot{TOKEN}/sendMessage?chat_id=1001&text=from%20curl",
            tg.url()
        )))
        .await;
        assert_eq!(raw.status, 200);
        let sent = tg.sent_messages(TOKEN);
        assert_eq!(sent[0].text, "hello form");
        assert_eq!(sent[0].reply_markup.as_ref(), Some(&markup));
        assert_eq!(sent[1].text, "from curl");
        assert_eq!(sent[1].body["chat_id"], "1001");
        let raw = send(reqwest::Client::new().get(format!(
            "{}/bot{TOKEN}/getUpdates?timeout=0&limit=5",
            tg.url()
        )))
        .await;
        assert_eq!(raw.json(), json!({"ok": true, "result": []}));
    })
    .await;
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn requests_are_recorded_with_body_time_and_status() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        let before = std::time::Instant::now();
        bot.get_me().await.expect("getMe");
        bot.send_message(ChatId(5), "recorded").await.expect("send");
        let _ = bot.send_message(ChatId(5), "").await;
        let all = tg.requests();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].method, "getme");
        assert_eq!(all[1].method, "sendmessage");
        assert_eq!(all[1].body["text"], "recorded");
        assert_eq!(all[1].status(), Some(200));
        assert_eq!(all[2].outcome, Outcome::Status(400));
        assert!(all[0].at >= before && all[0].at <= all[1].at && all[1].at <= all[2].at);
        assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), [0, 1, 2]);
        tg.clear_requests();
        assert!(tg.requests().is_empty());
        bot.get_me().await.expect("getMe");
        assert_eq!(tg.requests()[0].seq, 3);
        tg.set_request_log_capacity(2);
        for _ in 0..5 {
            bot.get_me().await.expect("getMe");
        }
        assert_eq!(tg.requests().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn wait_for_request_returns_the_nth() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        let sender = tokio::spawn(async move {
            for i in 1..=3 {
                bot.send_message(ChatId(9), format!("n{i}"))
                    .await
                    .expect("send");
            }
        });
        let third = tg
            .wait_for_request(TOKEN, "SendMessage", 3, WAIT)
            .await
            .expect("third request");
        assert_eq!(third.body["text"], "n3");
        sender.await.expect("sender");
        let err = tg
            .wait_for_request(TOKEN, "sendMessage", 4, Duration::from_millis(200))
            .await
            .expect_err("no 4th");
        assert_eq!((err.seen, err.wanted), (3, 4));
        let err = tg
            .wait_for_sent(TOKEN, 10, Duration::from_millis(100))
            .await
            .expect_err("only 3 sent");
        assert_eq!(err.seen, 3);
        assert!(!err.to_string().contains("AAHdq"), "no secret in errors");
    })
    .await;
}

#[tokio::test]
async fn wait_for_request_matching_sees_bodies_and_outcomes() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        let poller = bot.clone();
        let poll = tokio::spawn(async move { poller.get_updates().timeout(20).await });
        let held = tg
            .wait_for_request_matching("a held poll", WAIT, |r| {
                r.method == "getupdates" && r.outcome == Outcome::Pending
            })
            .await
            .expect("held poll");
        bot.send_message(ChatId(9), "first").await.expect("send");
        bot.send_message(ChatId(9), "second").await.expect("send");
        let second = tg
            .wait_for_request_matching("the second message", WAIT, |r| r.body["text"] == "second")
            .await
            .expect("second message");
        assert!(second.at >= held.at);
        tg.inject_message(TOKEN, &alice_chat(), &alice(), "hi");
        let answered = tg
            .wait_for_request_matching("an answered poll", WAIT, |r| {
                r.method == "getupdates" && r.status() == Some(200)
            })
            .await
            .expect("answered poll");
        assert_eq!(answered.seq, held.seq);
        poll.await.expect("task").expect("poll");
        let err = tg
            .wait_for_request_matching("a 409", Duration::from_millis(100), |r| {
                r.status() == Some(409)
            })
            .await
            .expect_err("no 409");
        assert_eq!(err.wanted, 1);
        assert!(err.to_string().contains("a 409"));
    })
    .await;
}

#[tokio::test]
async fn events_are_broadcast() {
    bounded(async {
        let tg = fake().await;
        let mut events = tg.subscribe();
        let bot = teloxide_bot(&tg, TOKEN);
        bot.get_me().await.expect("getMe");
        let arrived = events.recv().await.expect("arrived");
        let RequestEvent::Arrived { seq, token, method } = arrived else {
            panic!("expected Arrived, got {arrived:?}");
        };
        assert_eq!((token.as_str(), method.as_str()), (TOKEN, "getme"));
        let finished = events.recv().await.expect("finished");
        assert_eq!(
            finished,
            RequestEvent::Finished {
                seq,
                token: TOKEN.to_owned(),
                method: "getme".to_owned(),
                outcome: Outcome::Status(200),
            }
        );
        // A held poll: arrival first, the answer when an update comes.
        let poller = teloxide_bot(&tg, TOKEN);
        let poll = tokio::spawn(async move { poller.get_updates().timeout(20).await });
        let ev = events.recv().await.expect("poll arrived");
        assert!(matches!(ev, RequestEvent::Arrived { ref method, .. } if method == "getupdates"));
        tg.wait_until_polling(TOKEN, WAIT).await.expect("held");
        tg.inject_message(TOKEN, &alice_chat(), &alice(), "go");
        let ev = events.recv().await.expect("poll finished");
        assert!(matches!(
            ev,
            RequestEvent::Finished {
                outcome: Outcome::Status(200),
                ..
            }
        ));
        assert_eq!(poll.await.expect("task").expect("poll").len(), 1);
    })
    .await;
}

#[tokio::test]
async fn shutdown_and_drop_stop_the_server() {
    bounded(async {
        let tg = fake().await;
        let url = tg.url();
        let held = tokio::spawn({
            let url = url.clone();
            async move {
                reqwest::Client::new()
                    .post(format!("{url}/bot{TOKEN}/getUpdates"))
                    .json(&json!({"timeout": 30}))
                    .send()
                    .await
            }
        });
        tg.wait_until_polling(TOKEN, WAIT).await.expect("held");
        let clone = tg.clone();
        clone.shutdown();
        tg.closed().await;
        assert!(held.await.expect("task").is_err(), "held poll is cut off");
        let refused = reqwest::Client::new()
            .post(format!("{url}/bot{TOKEN}/getMe"))
            .send()
            .await;
        assert!(refused.is_err());

        let tg2 = FakeTelegram::start().await.expect("start");
        let url2 = tg2.url();
        let closed = tg2.closed();
        let keep = tg2.clone();
        drop(tg2);
        // A clone keeps it alive.
        let raw = send(reqwest::Client::new().get(format!("{url2}/bot1:x/getMe"))).await;
        assert_eq!(raw.status, 401);
        drop(keep);
        closed.await;
        let refused = reqwest::Client::new()
            .get(format!("{url2}/bot1:x/getMe"))
            .send()
            .await;
        assert!(refused.is_err());
    })
    .await;
}
