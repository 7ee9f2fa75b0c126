//! Helpers shared by the fake's integration tests: starting a fake with one
//! bot, a teloxide `Bot` pointed at it, a raw HTTP client for what teloxide
//! cannot show (status codes, non-JSON bodies, 5xx without teloxide's 10 s
//! pause), and a timeout that bounds every test.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use fake_telegram::{Chat, FakeTelegram, User};
use serde_json::Value;
use teloxide::Bot;

/// The token of the bot every test registers first.
pub const TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";

/// Upper bound for any single test.
pub const TEST_LIMIT: Duration = Duration::from_secs(60);

/// A generous bound for waits on events that should happen at once.
pub const WAIT: Duration = Duration::from_secs(10);

/// Runs a test body under [`TEST_LIMIT`].
pub async fn bounded<F: Future<Output = ()>>(body: F) {
    tokio::time::timeout(TEST_LIMIT, body)
        .await
        .expect("test exceeded its time limit");
}

/// A fake with [`TOKEN`] registered as `@test_bot`.
pub async fn fake() -> FakeTelegram {
    let tg = FakeTelegram::start().await.expect("fake starts");
    tg.add_bot(TOKEN, "test_bot");
    tg
}

/// A teloxide bot using `token` against the fake.
pub fn teloxide_bot(tg: &FakeTelegram, token: &str) -> Bot {
    Bot::new(token).set_api_url(reqwest::Url::parse(&tg.url()).expect("valid url"))
}

pub fn alice() -> User {
    User::new(1001, "Alice").with_username("alice")
}

pub fn bob() -> User {
    User::new(1002, "Bob")
}

pub fn alice_chat() -> Chat {
    Chat::private(&alice())
}

/// A raw answer: status, content type and body text.
pub struct Raw {
    pub status: u16,
    pub content_type: String,
    pub text: String,
}

impl Raw {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).expect("JSON body")
    }
}

/// POSTs a JSON body to `/bot<token>/<method>`.
pub async fn post_json(tg: &FakeTelegram, token: &str, method: &str, body: Value) -> Raw {
    let resp = reqwest::Client::new()
        .post(format!("{}/bot{token}/{method}", tg.url()))
        .json(&body)
        .send()
        .await
        .expect("request succeeds");
    raw(resp).await
}

/// Sends any prepared request.
pub async fn send(req: reqwest::RequestBuilder) -> Raw {
    raw(req.send().await.expect("request succeeds")).await
}

async fn raw(resp: reqwest::Response) -> Raw {
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = resp.text().await.expect("body");
    Raw {
        status,
        content_type,
        text,
    }
}
