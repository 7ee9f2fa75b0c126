//! The ruler: how many requests per second the fake Telegram serves to a
//! trivial client, so every other figure can be read as a fraction of it.

use std::time::Instant;

use fake_telegram::FakeTelegram;

const TOKEN: &str = "900:token-of-the-capacity-client";

/// sendMessage requests per second, 64 clients at once, 500 each.
pub async fn run() -> Vec<f64> {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN, "capacity_bot");
    tg.set_request_log_capacity(1000);
    let client = reqwest::Client::new();
    let url = format!("{}/bot{TOKEN}/sendMessage", tg.url());
    let per_task = 500;
    let tasks = 64;
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let client = client.clone();
        let url = url.clone();
        handles.push(tokio::spawn(async move {
            for _ in 0..per_task {
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(format!("{{\"chat_id\":{},\"text\":\"x\"}}", 10_000 + t))
                    .send()
                    .await
                    .expect("the fake answers");
                assert!(response.status().is_success());
            }
        }));
    }
    for handle in handles {
        handle.await.expect("a client task");
    }
    let rate = f64::from(per_task * tasks) / started.elapsed().as_secs_f64();
    assert_eq!(
        tg.sent_messages(TOKEN).len(),
        (per_task * tasks) as usize,
        "every request served"
    );
    vec![rate]
}
