//! The gateway, spoken to directly: a "probe" process bot (a shell that
//! writes down its environment and sleeps) gets a local token and the
//! gateway's address; the test then talks to the gateway as a bot's
//! library would, and checks each answer against Telegram's.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{ConfigDir, Daemon, HTTP, PROMPT, supervisor_table};
use fake_telegram::{Chat, FakeTelegram, User};
use serde_json::Value;

/// A token of Telegram's shape, built at run time.
fn real_token(id: u64) -> String {
    format!("{id}:{}", "Rq9".repeat(12).get(..35).unwrap_or_default())
}

/// What the probe wrote down: its environment.
struct Probe {
    vars: Vec<(String, String)>,
}

impl Probe {
    fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn token(&self) -> &str {
        self.var("BOT_TOKEN").expect("BOT_TOKEN is set")
    }

    fn url(&self) -> &str {
        self.var("BOT_API_URL").expect("BOT_API_URL is set")
    }

    fn method(&self, method: &str) -> String {
        format!("{}/bot{}/{method}", self.url(), self.token())
    }
}

/// A config with one probe bot `p` whose program writes its environment to
/// `env.txt` (whole, then renamed) and sleeps.
fn probe_config(api_url: &str, extra: &str) -> (ConfigDir, PathBuf) {
    let config = ConfigDir::new("");
    let out = config.folder().join("env.txt");
    let text = format!(
        "{}[bot.p]\nkind = \"process\"\ntoken_env = \"P_TOKEN\"\n\
         command = [\"sh\", \"-c\", \"env > env.tmp && mv env.tmp env.txt && exec sleep 600\"]\n{extra}",
        supervisor_table(api_url, HTTP)
    );
    std::fs::write(&config.path, text).expect("write the config");
    (config, out)
}

/// Waits for the probe's environment file; reads it.
async fn probe_env(path: &Path) -> Probe {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            let vars = text
                .lines()
                .filter_map(|line| line.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            return Probe { vars };
        }
        assert!(started.elapsed() < PROMPT, "the probe never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn post(url: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let code = response.status().as_u16();
    let text = response.text().await.expect("a body");
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (code, json)
}

#[tokio::test]
async fn the_probe_gets_a_local_token_and_the_gateway_answers_as_telegram() {
    let tg = FakeTelegram::start().await.expect("fake");
    let token = real_token(700_001);
    tg.add_bot(&token, "probe_bot");
    let (config, env_file) = probe_config(&tg.url(), "");
    let mut daemon = Daemon::start(&config.path, &[("P_TOKEN", &token)]);
    let probe = probe_env(&env_file).await;

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
