//! Webhook delivery as Telegram does it, against a small axum receiver on
//! `127.0.0.1:0` whose every answer the test chooses: the secret header, 2xx
//! confirming, retries with growing delays, giving up, `max_connections`,
//! per-chat order, timeouts, getWebhookInfo, deleting and shutting down; and
//! setWebhook's checks. Tests synchronise on requests arriving at the
//! receiver; timing is checked only as lower bounds or generous ceilings.

mod common;

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::{TOKEN, WAIT, alice, alice_chat, bounded, fake, post_json, send};
use fake_telegram::{Chat, FakeTelegram, User, conflicts};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

/// A request the receiver got, waiting for the test to answer it.
struct Hit {
    update_id: i64,
    secret: Option<String>,
    content_type: Option<String>,
    body: Value,
    at: Instant,
    reply: oneshot::Sender<u16>,
}

impl Hit {
    fn answer(self, status: u16) {
        let _ = self.reply.send(status);
    }
}

/// A webhook receiver: every request becomes a [`Hit`] the test answers.
struct Receiver {
    url: String,
    hits: mpsc::UnboundedReceiver<Hit>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Receiver {
    async fn start() -> Receiver {
        let (tx, hits) = mpsc::unbounded_channel();
        let app = Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, body: Bytes| {
                let tx = tx.clone();
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let (reply, answer) = oneshot::channel();
                    let _ = tx.send(Hit {
                        update_id: body["update_id"].as_i64().unwrap_or(-1),
                        secret: header("x-telegram-bot-api-secret-token"),
                        content_type: header("content-type"),
                        body,
                        at: Instant::now(),
                        reply,
                    });
                    // A hit dropped unanswered gets a 500.
                    let status = answer.await.unwrap_or(500);
                    StatusCode::from_u16(status).expect("valid status")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url: format!("http://{addr}/hook"),
            hits,
            server,
        }
    }

    /// The next request (fails the test after [`WAIT`]).
    async fn next(&mut self) -> Hit {
        tokio::time::timeout(WAIT, self.hits.recv())
            .await
            .expect("a webhook request in time")
            .expect("receiver running")
    }

    /// Asserts that no request arrives within `window` (a bounded check
    /// that something does *not* happen).
    async fn expect_quiet(&mut self, window: Duration) {
        if let Ok(Some(hit)) = tokio::time::timeout(window, self.hits.recv()).await {
            panic!("unexpected webhook request for update {}", hit.update_id);
        }
    }
}

/// A URL on 127.0.0.1 where nothing listens.
async fn closed_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}/hook")
}

async fn set_webhook(tg: &FakeTelegram, body: Value) -> Value {
    let raw = post_json(tg, TOKEN, "setWebhook", body).await;
    raw.json()
}

fn chat(id: i64) -> (Chat, User) {
    let user = User::new(u64::try_from(id).expect("positive"), format!("user{id}"));
    (Chat::private(&user), user)
}

fn say(tg: &FakeTelegram, chat_id: i64, text: &str) -> i64 {
    let (c, u) = chat(chat_id);
    i64::from(tg.inject_message(TOKEN, &c, &u, text))
}

#[tokio::test]
async fn updates_are_posted_with_the_secret_and_a_2xx_confirms_them() {
    bounded(async {
        let tg = fake().await;
        let mut hook = Receiver::start().await;
        let answer = set_webhook(
            &tg,
            json!({"url": hook.url, "secret_token": "s3cr3t_-X", "max_connections": 5}),
        )
        .await;
        assert_eq!(
            answer,
            json!({"ok": true, "result": true, "description": "Webhook was set"})
        );
        let recorded = tg
            .wait_for_request(TOKEN, "setWebhook", 1, WAIT)
            .await
            .expect("recorded");
        assert_eq!(recorded.body["secret_token"], "s3cr3t_-X");

        let id = i64::from(tg.inject_message(TOKEN, &alice_chat(), &alice(), "hello hook"));
        let hit = hook.next().await;
        assert_eq!(hit.update_id, id);
        assert_eq!(hit.secret.as_deref(), Some("s3cr3t_-X"));
        assert_eq!(hit.content_type.as_deref(), Some("application/json"));
        assert_eq!(hit.body["message"]["text"], "hello hook");
        assert_eq!(
            tg.pending_update_count(TOKEN),
            1,
            "not confirmed before the answer"
        );
        hit.answer(200);

        let d = tg
            .wait_for_webhook_delivery(TOKEN, 1, WAIT)
            .await
            .expect("delivered");
        assert_eq!((d.update_id, d.attempt, d.status), (id, 1, Some(200)));
        assert_eq!(d.error, None);
        assert_eq!(d.secret.as_deref(), Some("s3cr3t_-X"));
        assert!(d.confirmed());
        assert!(tg.pending_updates(TOKEN).is_empty());

        // A second update goes over the same keep-alive connection.
        let id2 = say(&tg, 7, "again");
        let hit = hook.next().await;
        assert_eq!(hit.update_id, id2);
        hit.answer(204);
        let d = tg
            .wait_for_webhook_delivery(TOKEN, 2, WAIT)
            .await
            .expect("delivered");
        assert_eq!(d.status, Some(204));

        let info = post_json(&tg, TOKEN, "getWebhookInfo", json!({}))
            .await
            .json();
        assert_eq!(
            info["result"],
            json!({
                "url": hook.url,
                "has_custom_certificate": false,
                "pending_update_count": 0,
                "max_connections": 5
            })
        );
        let view = tg.webhook_info(TOKEN).expect("set");
        assert_eq!(view.secret_token.as_deref(), Some("s3cr3t_-X"));
        assert_eq!(view.max_connections, 5);
        assert_eq!(view.last_error_message, None);
    })
    .await;
}

#[tokio::test]
async fn failures_are_retried_with_growing_delays_and_reported() {
    bounded(async {
        let tg = fake().await;
        let first = Duration::from_millis(200);
        tg.set_webhook_retry(first, 10);
        let mut hook = Receiver::start().await;
        set_webhook(&tg, json!({"url": hook.url})).await;
        let id = say(&tg, 1, "flaky");

        let hit = hook.next().await;
        assert_eq!(hit.update_id, id);
        hit.answer(503);
        let hit = hook.next().await;
        assert_eq!(hit.update_id, id);
        hit.answer(503);
        let hit = hook.next().await;
        assert_eq!(hit.update_id, id);
        hit.answer(200);

        let d = tg
            .wait_for_webhook_delivery(TOKEN, 3, WAIT)
            .await
            .expect("three attempts");
        assert_eq!(d.status, Some(200));
        let all = tg.webhook_deliveries(TOKEN);
        let statuses: Vec<_> = all.iter().map(|d| (d.attempt, d.status)).collect();
        assert_eq!(statuses, [(1, Some(503)), (2, Some(503)), (3, Some(200))]);
        assert_eq!(
            all[0].error.as_deref(),
            Some("Wrong response from the webhook: 503 Service Unavailable")
        );
        // Lower bounds: each retry waited its delay, and the delay doubled.
        let wait1 = all[1].started - all[0].at;
        let wait2 = all[2].started - all[1].at;
        assert!(wait1 >= first, "first retry after {wait1:?}");
        assert!(wait2 >= first * 2, "second retry after {wait2:?}");
        assert!(tg.pending_updates(TOKEN).is_empty());

        let info = post_json(&tg, TOKEN, "getWebhookInfo", json!({}))
            .await
            .json();
        assert_eq!(
            info["result"]["last_error_message"],
            "Wrong response from the webhook: 503 Service Unavailable"
        );
        let date = info["result"]["last_error_date"].as_i64().expect("a date");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        assert!(date.abs_diff(i64::try_from(now).expect("fits")) < 60);
    })
    .await;
}

#[tokio::test]
async fn an_update_is_dropped_after_max_attempts() {
    bounded(async {
        let tg = fake().await;
        tg.set_webhook_retry(Duration::from_millis(20), 3);
        set_webhook(&tg, json!({"url": closed_url().await})).await;
        let id = say(&tg, 1, "nobody listens");
        let third = tg
            .wait_for_webhook_delivery(TOKEN, 3, WAIT)
            .await
            .expect("three attempts");
        let all = tg.webhook_deliveries(TOKEN);
        for (i, d) in all.iter().enumerate() {
            assert_eq!(d.update_id, id);
            assert_eq!(d.attempt, u32::try_from(i + 1).expect("small"));
            assert_eq!(d.status, None);
            assert_eq!(d.error.as_deref(), Some("Connection refused"));
        }
        assert_eq!(third.attempt, 3);
        assert_eq!(tg.pending_update_count(TOKEN), 0, "given up");
        let view = tg.webhook_info(TOKEN).expect("still set");
        assert_eq!(
            view.last_error_message.as_deref(),
            Some("Connection refused")
        );
        assert!(view.last_error_date.is_some());
        // Well past the next would-be delay (80 ms), there is no 4th attempt.
        let more = tg
            .wait_for_webhook_delivery(TOKEN, 4, Duration::from_millis(400))
            .await;
        assert!(more.is_err(), "{more:?}");
    })
    .await;
}

#[tokio::test]
async fn no_more_than_max_connections_requests_are_in_flight() {
    bounded(async {
        let tg = fake().await;
        let mut hook = Receiver::start().await;
        set_webhook(&tg, json!({"url": hook.url, "max_connections": 2})).await;
        let ids: Vec<i64> = (1..=5).map(|chat| say(&tg, chat, "hi")).collect();

        let mut held = vec![hook.next().await, hook.next().await];
        hook.expect_quiet(Duration::from_millis(300)).await;
        let mut seen: Vec<i64> = held.iter().map(|h| h.update_id).collect();
        // Oldest first.
        seen.sort_unstable();
        assert_eq!(seen, ids[..2]);
        while seen.len() < ids.len() {
            // Answering one lets exactly one more in.
            held.remove(0).answer(200);
            let hit = hook.next().await;
            seen.push(hit.update_id);
            held.push(hit);
            assert_eq!(held.len(), 2);
        }
        for h in held {
            h.answer(200);
        }
        tg.wait_for_webhook_delivery(TOKEN, 5, WAIT)
            .await
            .expect("all delivered");
        seen.sort_unstable();
        assert_eq!(seen, ids);
        assert_eq!(tg.pending_update_count(TOKEN), 0);
    })
    .await;
}

#[tokio::test]
async fn a_chat_waits_for_its_oldest_update_while_other_chats_overtake() {
    bounded(async {
        let tg = fake().await;
        tg.set_webhook_retry(Duration::from_secs(1), 10);
        let mut hook = Receiver::start().await;
        set_webhook(&tg, json!({"url": hook.url})).await;
        let a1 = say(&tg, 1, "a1");
        let a2 = say(&tg, 1, "a2");
        let b1 = say(&tg, 2, "b1");

        let (x, y) = (hook.next().await, hook.next().await);
        let (hit_a1, hit_b1) = if x.update_id == a1 { (x, y) } else { (y, x) };
        assert_eq!((hit_a1.update_id, hit_b1.update_id), (a1, b1));
        let failed_at = Instant::now();
        hit_a1.answer(500);
        hit_b1.answer(200);
        // While a1 waits for its retry, a new update of chat 2 goes at once.
        let b2 = say(&tg, 2, "b2");
        let hit = hook.next().await;
        assert_eq!(hit.update_id, b2);
        hit.answer(200);
        // Then a1 again (not a2), no sooner than its delay.
        let hit = hook.next().await;
        assert_eq!(hit.update_id, a1);
        assert!(hit.at - failed_at >= Duration::from_millis(900));
        hit.answer(200);
        let hit = hook.next().await;
        assert_eq!(hit.update_id, a2);
        hit.answer(200);
        tg.wait_for_webhook_delivery(TOKEN, 5, WAIT)
            .await
            .expect("five attempts");
        assert_eq!(tg.pending_update_count(TOKEN), 0);
    })
    .await;
}

#[tokio::test]
async fn a_slow_webhook_times_out_and_is_retried() {
    bounded(async {
        let tg = fake().await;
        let timeout = Duration::from_millis(300);
        tg.set_webhook_timeout(timeout);
        tg.set_webhook_retry(Duration::from_millis(50), 5);
        let mut hook = Receiver::start().await;
        set_webhook(&tg, json!({"url": hook.url})).await;
        let id = say(&tg, 1, "slow");
        let slow = hook.next().await;
        let d = tg
            .wait_for_webhook_delivery(TOKEN, 1, WAIT)
            .await
            .expect("timed out");
        assert_eq!((d.update_id, d.status), (id, None));
        assert_eq!(d.error.as_deref(), Some("Read timeout expired"));
        assert!(d.at - d.started >= timeout);
        drop(slow);
        let hit = hook.next().await;
        assert_eq!(hit.update_id, id);
        hit.answer(200);
        let d = tg
            .wait_for_webhook_delivery(TOKEN, 2, WAIT)
            .await
            .expect("retried");
        assert_eq!((d.attempt, d.status), (2, Some(200)));
    })
    .await;
}

#[tokio::test]
async fn allowed_updates_filter_what_is_delivered() {
    bounded(async {
        let tg = fake().await;
        let mut hook = Receiver::start().await;
        set_webhook(
            &tg,
            json!({"url": hook.url, "allowed_updates": ["callback_query"]}),
        )
        .await;
        say(&tg, 1, "not wanted");
        let (c, u) = chat(1);
        let id = i64::from(tg.inject_callback_query(TOKEN, &c, &u, 1, "press"));
        let hit = hook.next().await;
        assert_eq!(hit.update_id, id);
        assert_eq!(hit.body["callback_query"]["data"], "press");
        hit.answer(200);
        tg.wait_for_webhook_delivery(TOKEN, 1, WAIT)
            .await
            .expect("delivered");
        assert_eq!(tg.pending_update_count(TOKEN), 0);
        let info = post_json(&tg, TOKEN, "getWebhookInfo", json!({}))
            .await
            .json();
        assert_eq!(info["result"]["allowed_updates"], json!(["callback_query"]));
    })
    .await;
}

#[tokio::test]
async fn get_updates_is_refused_while_a_webhook_is_set() {
    bounded(async {
        let tg = fake().await;
        let hook = Receiver::start().await;
        set_webhook(&tg, json!({"url": hook.url})).await;
        let raw = post_json(&tg, TOKEN, "getUpdates", json!({})).await;
        assert_eq!(raw.status, 409);
        assert_eq!(raw.json()["description"], conflicts::WEBHOOK_ACTIVE);
    })
    .await;
}

#[tokio::test]
async fn delete_webhook_stops_delivery_at_once() {
    bounded(async {
        let tg = fake().await;
        let mut hook = Receiver::start().await;
        set_webhook(&tg, json!({"url": hook.url})).await;
        let a = say(&tg, 1, "in flight");
        let held = hook.next().await;
        assert_eq!(held.update_id, a);

        let answer = post_json(&tg, TOKEN, "deleteWebhook", json!({}))
            .await
            .json();
        assert_eq!(
            answer,
            json!({"ok": true, "result": true, "description": "Webhook was deleted"})
        );
        // The answer to the request in flight no longer counts, and nothing
        // new is sent.
        held.answer(200);
        let b = say(&tg, 2, "after delete");
        hook.expect_quiet(Duration::from_millis(300)).await;
        assert!(tg.webhook_deliveries(TOKEN).is_empty());
        assert_eq!(tg.pending_update_count(TOKEN), 2);
        let got = post_json(&tg, TOKEN, "getUpdates", json!({})).await.json();
        let ids: Vec<i64> = got["result"]
            .as_array()
            .expect("updates")
            .iter()
            .map(|u| u["update_id"].as_i64().expect("id"))
            .collect();
        assert_eq!(ids, [a, b]);

        let again = post_json(&tg, TOKEN, "deleteWebhook", json!({}))
            .await
            .json();
        assert_eq!(again["description"], "Webhook is already deleted");
        assert!(tg.webhook_info(TOKEN).is_none());
    })
    .await;
}

#[tokio::test]
async fn a_new_webhook_replaces_the_old_one_and_can_drop_pending_updates() {
    bounded(async {
        let tg = fake().await;
        let mut old = Receiver::start().await;
        let mut new = Receiver::start().await;
        set_webhook(&tg, json!({"url": old.url})).await;
        say(&tg, 1, "to the old one");
        let held = old.next().await;
        let same = set_webhook(&tg, json!({"url": old.url})).await;
        assert_eq!(same["description"], "Webhook is already set");

        let answer = set_webhook(&tg, json!({"url": new.url, "drop_pending_updates": true})).await;
        assert_eq!(answer["description"], "Webhook was set");
        assert_eq!(tg.pending_update_count(TOKEN), 0);
        held.answer(200);
        let id = say(&tg, 1, "to the new one");
        let hit = new.next().await;
        assert_eq!(hit.update_id, id);
        hit.answer(200);
        old.expect_quiet(Duration::from_millis(200)).await;
        let d = tg
            .wait_for_webhook_delivery(TOKEN, 1, WAIT)
            .await
            .expect("delivered");
        assert_eq!(d.update_id, id, "the old webhook's answer was not recorded");
    })
    .await;
}

#[tokio::test]
async fn shutdown_stops_delivery() {
    bounded(async {
        let tg = fake().await;
        let mut hook = Receiver::start().await;
        set_webhook(&tg, json!({"url": hook.url})).await;
        say(&tg, 1, "in flight");
        let held = hook.next().await;
        tg.shutdown();
        tg.closed().await;
        held.answer(200);
        say(&tg, 2, "after shutdown");
        hook.expect_quiet(Duration::from_millis(300)).await;
        assert!(tg.webhook_deliveries(TOKEN).is_empty());
        assert_eq!(tg.pending_update_count(TOKEN), 2);
    })
    .await;
}

#[tokio::test]
async fn a_test_side_webhook_also_delivers_and_an_unreachable_one_is_harmless() {
    bounded(async {
        let tg = fake().await;
        tg.set_webhook(TOKEN, "https://127.0.0.1:8443/hook");
        let id = say(&tg, 1, "kept");
        let d = tg
            .wait_for_webhook_delivery(TOKEN, 1, WAIT)
            .await
            .expect("attempted");
        assert_eq!(d.update_id, id);
        assert_eq!(d.status, None);
        assert!(d.error.is_some());
        assert_eq!(tg.pending_update_count(TOKEN), 1, "still pending");

        let mut hook = Receiver::start().await;
        tg.set_webhook(TOKEN, &hook.url);
        let hit = hook.next().await;
        assert_eq!(hit.update_id, id);
        assert_eq!(hit.secret, None);
        hit.answer(200);
        tg.wait_for_webhook_delivery(TOKEN, 2, WAIT)
            .await
            .expect("delivered");
        assert_eq!(tg.pending_update_count(TOKEN), 0);
    })
    .await;
}

#[tokio::test]
async fn set_webhook_checks_its_parameters_like_telegram() {
    bounded(async {
        let tg = fake().await;
        let refused = |body: Value| {
            let tg = tg.clone();
            async move {
                let raw = post_json(&tg, TOKEN, "setWebhook", body).await;
                assert_eq!(raw.status, 400, "{}", raw.text);
                raw.json()["description"]
                    .as_str()
                    .expect("description")
                    .to_owned()
            }
        };
        assert_eq!(
            refused(json!({"url": "http://example.com/hook"})).await,
            "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
        );
        assert_eq!(
            refused(json!({"url": "https://example.com:9000/hook"})).await,
            "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443"
        );
        assert_eq!(
            refused(json!({"url": "ftp://example.com/"})).await,
            "Bad Request: invalid webhook URL specified"
        );
        for bad in ["a b", "a+b", "a/b=", "секрет"] {
            assert_eq!(
                refused(json!({"url": "https://example.com/hook", "secret_token": bad})).await,
                "Bad Request: secret token contains unallowed characters"
            );
        }
        assert_eq!(
            refused(json!({"url": "https://example.com/hook", "secret_token": "a".repeat(257)}))
                .await,
            "Bad Request: secret token is too long"
        );
        assert!(tg.webhook_info(TOKEN).is_none(), "nothing was set");

        // max_connections is clamped to 1–100, as Telegram's server does.
        let url = closed_url().await;
        set_webhook(&tg, json!({"url": url, "max_connections": 0})).await;
        assert_eq!(tg.webhook_info(TOKEN).expect("set").max_connections, 1);
        set_webhook(&tg, json!({"url": url, "max_connections": 101})).await;
        assert_eq!(tg.webhook_info(TOKEN).expect("set").max_connections, 100);

        // Form fields work too; a 256-character secret is fine.
        let secret = "Z".repeat(256);
        let raw = send(
            reqwest::Client::new()
                .post(format!("{}/bot{TOKEN}/setWebhook", tg.url()))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!(
                    "url=https%3A%2F%2Fexample.com%3A8443%2Fhook&secret_token={secret}&max_connections=7"
                )),
        )
        .await;
        assert_eq!(raw.json()["description"], "Webhook was set");
        let view = tg.webhook_info(TOKEN).expect("set");
        assert_eq!(view.url, "https://example.com:8443/hook");
        assert_eq!(view.secret_token.as_deref(), Some(secret.as_str()));
        assert_eq!(view.max_connections, 7);
        let recorded = tg
            .wait_for_request(TOKEN, "setWebhook", 11, WAIT)
            .await
            .expect("every call recorded");
        assert_eq!(recorded.body["max_connections"], "7");
        tg.set_webhook(TOKEN, "");
    })
    .await;
}
