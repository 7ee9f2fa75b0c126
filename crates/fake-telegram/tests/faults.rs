//! Scripted faults: each kind (JSON error with parameters, dropped
//! connection, nginx HTML 502), how teloxide parses them, repeat counts,
//! method-specific versus any-method faults, delays, and their recording.

mod common;

use std::time::{Duration, Instant};

use common::{TOKEN, bounded, fake, post_json, send, teloxide_bot};
use fake_telegram::{Fault, FaultKind, MethodFilter, Outcome, conflicts};
use serde_json::json;
use teloxide::prelude::*;
use teloxide::types::Seconds;
use teloxide::{ApiError, RequestError};

#[tokio::test]
async fn retry_after_parses_as_teloxide_retry_after() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        tg.add_fault(TOKEN, "sendMessage", Fault::retry_after(7));
        let err = bot.send_message(ChatId(1), "x").await.expect_err("fault");
        assert!(
            matches!(err, RequestError::RetryAfter(s) if s == Seconds::from_seconds(7)),
            "{err:?}"
        );
        // Used up: the next one goes through.
        bot.send_message(ChatId(1), "x").await.expect("after fault");
        // The raw shape.
        tg.add_fault(TOKEN, "sendMessage", Fault::retry_after(3));
        let raw = post_json(
            &tg,
            TOKEN,
            "sendMessage",
            json!({"chat_id": 1, "text": "x"}),
        )
        .await;
        assert_eq!(raw.status, 429);
        assert_eq!(
            raw.json(),
            json!({
                "ok": false,
                "error_code": 429,
                "description": "Too Many Requests: retry after 3",
                "parameters": {"retry_after": 3}
            })
        );
    })
    .await;
}

#[tokio::test]
async fn migrate_parses_as_migrate_to_chat_id() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        tg.add_fault(TOKEN, "sendMessage", Fault::migrate(-1_001_234_567_890));
        let err = bot.send_message(ChatId(-55), "x").await.expect_err("fault");
        assert!(
            matches!(err, RequestError::MigrateToChatId(c) if c == ChatId(-1_001_234_567_890)),
            "{err:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn json_error_faults_parse_as_api_errors() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        tg.add_fault(TOKEN, "getMe", Fault::unauthorized());
        let err = bot.get_me().await.expect_err("401");
        assert!(
            matches!(err, RequestError::Api(ApiError::InvalidToken)),
            "{err:?}"
        );

        tg.add_fault(TOKEN, "getUpdates", Fault::conflict_other_poller());
        let err = bot.get_updates().await.expect_err("409");
        assert!(
            matches!(
                err,
                RequestError::Api(ApiError::TerminatedByOtherGetUpdates)
            ),
            "{err:?}"
        );

        tg.add_fault(
            TOKEN,
            "sendMessage",
            Fault::forbidden("Forbidden: bot was blocked by the user"),
        );
        let err = bot.send_message(ChatId(1), "x").await.expect_err("403");
        assert!(
            matches!(err, RequestError::Api(ApiError::BotBlocked)),
            "{err:?}"
        );

        tg.add_fault(TOKEN, "getUpdates", Fault::conflict_other_poller());
        let raw = post_json(&tg, TOKEN, "getUpdates", json!({})).await;
        assert_eq!(raw.status, 409);
        assert_eq!(raw.json()["description"], conflicts::OTHER_POLLER);
        assert!(raw.json().get("parameters").is_none());
    })
    .await;
}

#[tokio::test]
async fn repeat_counts_and_forever() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        tg.add_fault(TOKEN, "getMe", Fault::retry_after(1).times(2));
        assert!(bot.get_me().await.is_err());
        assert!(bot.get_me().await.is_err());
        bot.get_me().await.expect("third succeeds");

        tg.add_fault(TOKEN, MethodFilter::Any, Fault::unauthorized().forever());
        for _ in 0..5 {
            assert!(bot.get_me().await.is_err());
            assert!(bot.send_message(ChatId(1), "x").await.is_err());
        }
        tg.clear_faults(TOKEN);
        bot.get_me().await.expect("cleared");
        assert_eq!(tg.requests_of(TOKEN, "getme").len(), 9);
    })
    .await;
}

#[tokio::test]
async fn method_faults_take_precedence_over_any_method_faults() {
    bounded(async {
        let tg = fake().await;
        tg.add_fault(TOKEN, "*", Fault::unauthorized());
        tg.add_fault(TOKEN, "SENDMESSAGE", Fault::retry_after(2));
        let raw = post_json(
            &tg,
            TOKEN,
            "sendMessage",
            json!({"chat_id": 1, "text": "x"}),
        )
        .await;
        assert_eq!(raw.status, 429);
        let raw = post_json(
            &tg,
            TOKEN,
            "sendMessage",
            json!({"chat_id": 1, "text": "x"}),
        )
        .await;
        assert_eq!(raw.status, 401);
        let raw = post_json(
            &tg,
            TOKEN,
            "sendMessage",
            json!({"chat_id": 1, "text": "x"}),
        )
        .await;
        assert_eq!(raw.status, 200);
        let statuses: Vec<Option<u16>> = tg
            .requests_of(TOKEN, "sendMessage")
            .iter()
            .map(|r| r.status())
            .collect();
        assert_eq!(statuses, [Some(429), Some(401), Some(200)]);
    })
    .await;
}

#[tokio::test]
async fn faults_apply_to_unregistered_tokens() {
    bounded(async {
        let tg = fake().await;
        let raw = post_json(&tg, "9:unknown", "getMe", json!({})).await;
        assert_eq!(raw.status, 401);
        tg.add_fault("9:unknown", "getMe", Fault::retry_after(4));
        let raw = post_json(&tg, "9:unknown", "getMe", json!({})).await;
        assert_eq!(raw.status, 429);
    })
    .await;
}

#[tokio::test]
async fn delay_is_a_lower_bound() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        tg.add_fault(
            TOKEN,
            "getMe",
            Fault::retry_after(1).delay(Duration::from_millis(400)),
        );
        let started = Instant::now();
        assert!(bot.get_me().await.is_err());
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(400), "took {took:?}");
        assert!(took < Duration::from_secs(8), "took {took:?}");
    })
    .await;
}

#[tokio::test]
async fn dropped_connection_is_a_network_error() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        bot.get_me().await.expect("warm the connection pool");
        tg.add_fault(TOKEN, "getMe", Fault::drop_connection());
        let err = bot.get_me().await.expect_err("dropped");
        assert!(matches!(err, RequestError::Network(_)), "{err:?}");
        bot.get_me().await.expect("works again");
        let recorded = tg.requests_of(TOKEN, "getMe");
        assert_eq!(recorded[1].outcome, Outcome::Dropped);
        assert_eq!(recorded[2].outcome, Outcome::Status(200));
        assert_eq!(Fault::drop_connection().kind, FaultKind::DropConnection);
    })
    .await;
}

#[tokio::test]
async fn server_error_is_json_500() {
    bounded(async {
        let tg = fake().await;
        tg.add_fault(TOKEN, "getMe", Fault::server_error());
        let raw = post_json(&tg, TOKEN, "getMe", json!({})).await;
        assert_eq!(raw.status, 500);
        assert_eq!(
            raw.json(),
            json!({"ok": false, "error_code": 500, "description": "Internal Server Error: restart"})
        );
    })
    .await;
}

#[tokio::test]
async fn bad_gateway_is_an_html_page() {
    bounded(async {
        let tg = fake().await;
        tg.add_fault(TOKEN, MethodFilter::Any, Fault::bad_gateway_html().times(2));
        let raw = post_json(&tg, TOKEN, "getUpdates", json!({})).await;
        assert_eq!(raw.status, 502);
        assert!(
            raw.content_type.starts_with("text/html"),
            "{}",
            raw.content_type
        );
        assert!(raw.text.contains("<title>502 Bad Gateway</title>"));
        assert!(serde_json::from_str::<serde_json::Value>(&raw.text).is_err());
        let raw = send(reqwest::Client::new().get(format!("{}/bot{TOKEN}/getMe", tg.url()))).await;
        assert_eq!(raw.status, 502);
        assert_eq!(tg.requests_of(TOKEN, "getUpdates")[0].status(), Some(502));
    })
    .await;
}

/// teloxide waits 10 s after any 5xx before reading the body, so this one
/// test is slow on purpose: it shows the HTML page becomes `InvalidJson`.
#[tokio::test]
async fn teloxide_reads_the_html_page_as_invalid_json() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        tg.add_fault(TOKEN, "getMe", Fault::bad_gateway_html());
        let err = bot.get_me().await.expect_err("502");
        assert!(matches!(err, RequestError::InvalidJson { .. }), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn an_ok_fault_answers_its_result_at_once() {
    let tg = fake_telegram::FakeTelegram::start().await.expect("start");
    let bot = tg.add_bot("555:ok-fault", "ok_bot");
    tg.add_fault(
        &bot.token,
        "getUpdates",
        fake_telegram::Fault::ok(serde_json::json!([])).times(2),
    );
    let client = reqwest::Client::new();
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let body: serde_json::Value = client
            .post(format!("{}/bot{}/getUpdates", tg.url(), bot.token))
            .json(&serde_json::json!({"timeout": 30}))
            .send()
            .await
            .expect("answered")
            .json()
            .await
            .expect("JSON");
        assert_eq!(body, serde_json::json!({"ok": true, "result": []}));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "answered at once"
        );
    }
    assert_eq!(
        tg.requests_of(&bot.token, "getUpdates")[1].status(),
        Some(200)
    );
}
