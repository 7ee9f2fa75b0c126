//! Telegram-like flood limits: per chat per second, per group per minute,
//! per bot per second; the 429 shape and `retry_after`; the 429 counter; and
//! that rejected sends are not recorded as sent.

mod common;

use std::time::Duration;

use common::{TOKEN, bounded, fake, post_json, teloxide_bot};
use fake_telegram::RateLimits;
use serde_json::json;
use teloxide::RequestError;
use teloxide::prelude::*;

fn retry_secs(err: &RequestError) -> u64 {
    match err {
        RequestError::RetryAfter(s) => s.seconds().into(),
        other => panic!("expected RetryAfter, got {other:?}"),
    }
}

#[tokio::test]
async fn per_chat_limit() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        tg.set_rate_limits(RateLimits {
            per_chat_per_second: Some(3),
            ..RateLimits::disabled()
        });
        for i in 0..3 {
            bot.send_message(ChatId(10), format!("m{i}"))
                .await
                .expect("within the limit");
        }
        let err = bot
            .send_message(ChatId(10), "one too many")
            .await
            .expect_err("4th in a second");
        assert!(retry_secs(&err) >= 1);
        // Other chats have their own window.
        bot.send_message(ChatId(11), "elsewhere")
            .await
            .expect("another chat");
        // The raw answer.
        let raw = post_json(
            &tg,
            TOKEN,
            "sendMessage",
            json!({"chat_id": 10, "text": "x"}),
        )
        .await;
        assert_eq!(raw.status, 429);
        let body = raw.json();
        let n = body["parameters"]["retry_after"]
            .as_u64()
            .expect("retry_after");
        assert!(n >= 1);
        assert_eq!(
            body["description"],
            format!("Too Many Requests: retry after {n}")
        );
        assert_eq!(tg.too_many_requests_count(TOKEN), 2);
        assert_eq!(tg.sent_messages(TOKEN).len(), 4);
    })
    .await;
}

#[tokio::test]
async fn the_window_slides() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        tg.set_rate_limits(RateLimits {
            per_chat_per_second: Some(1),
            ..RateLimits::disabled()
        });
        bot.send_message(ChatId(10), "first").await.expect("first");
        let err = bot
            .send_message(ChatId(10), "second")
            .await
            .expect_err("too soon");
        let wait = retry_secs(&err);
        assert_eq!(wait, 1);
        // Waiting what the server asked for is enough.
        tokio::time::sleep(Duration::from_secs(wait)).await;
        bot.send_message(ChatId(10), "later")
            .await
            .expect("after retry_after");
    })
    .await;
}

#[tokio::test]
async fn per_group_per_minute_limit() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        tg.set_rate_limits(RateLimits {
            per_group_per_minute: Some(3),
            ..RateLimits::disabled()
        });
        for i in 0..3 {
            bot.send_message(ChatId(-100), format!("g{i}"))
                .await
                .expect("within the limit");
        }
        let err = bot
            .send_message(ChatId(-100), "4th this minute")
            .await
            .expect_err("group limit");
        let wait = retry_secs(&err);
        assert!((50..=60).contains(&wait), "retry after {wait}");
        // Private chats are not groups.
        for i in 0..5 {
            bot.send_message(ChatId(100), format!("p{i}"))
                .await
                .expect("private chats are not limited per minute");
        }
        // Edits count too.
        let err = bot
            .edit_message_text(ChatId(-100), teloxide::types::MessageId(1), "edited")
            .await
            .expect_err("edit counts against the group");
        retry_secs(&err);
        assert_eq!(tg.too_many_requests_count(TOKEN), 2);
    })
    .await;
}

#[tokio::test]
async fn global_per_second_limit() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        tg.set_rate_limits(RateLimits {
            global_per_second: Some(5),
            ..RateLimits::disabled()
        });
        for chat in 1..=5 {
            bot.send_message(ChatId(chat), "hi").await.expect("within");
        }
        let err = bot
            .send_message(ChatId(6), "hi")
            .await
            .expect_err("global limit");
        assert!(retry_secs(&err) >= 1);
        // Another bot has its own global window.
        tg.add_bot("42:other", "other_bot");
        teloxide_bot(&tg, "42:other")
            .send_message(ChatId(6), "hi")
            .await
            .expect("other bot");
        assert_eq!(tg.sent_messages(TOKEN).len(), 5);
    })
    .await;
}

#[tokio::test]
async fn telegram_preset_and_turning_limits_off() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        let preset = RateLimits::telegram();
        assert_eq!(preset.per_chat_per_second, Some(1));
        assert_eq!(preset.per_group_per_minute, Some(20));
        assert_eq!(preset.global_per_second, Some(30));
        tg.set_rate_limits(preset);
        bot.send_message(ChatId(1), "a").await.expect("first");
        assert!(bot.send_message(ChatId(1), "b").await.is_err());
        tg.set_rate_limits(None);
        for _ in 0..10 {
            bot.send_message(ChatId(1), "c").await.expect("limits off");
        }
        assert!(!RateLimits::disabled().is_enabled());
    })
    .await;
}
