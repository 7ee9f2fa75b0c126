//! The gateway spoken to directly (issue 21), through a "probe" process
//! bot's local token and address: how many sends a second it carries to
//! the fake with the pacing off, driven by a load generator in this
//! process, and what process bots and a large upload cost botvisor's
//! memory.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fake_telegram::{FakeTelegram, MediaKind};

use crate::daemon::{self, Daemon, LIMIT};
use crate::footprint::SETTLE;
use crate::program::{self, LOG_FILTER};

const CAPACITY_TOKEN: &str = "2102:token-of-the-probe-bot";
const SENDS: usize = 20_000;
const CHATS: usize = 1_000;
/// Requests in flight at once.
const CONCURRENCY: usize = 128;
/// Process bots in the larger footprint run.
const PROBES: usize = 50;
/// The upload: Telegram's 50 MB limit for bots, in bytes of 10⁶ like the
/// suite's MB.
const UPLOAD_BYTES: usize = 50_000_000;
/// How often botvisor's RSS is read during the upload.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

fn probe_token(i: usize) -> String {
    format!("{}:token-of-probe-bot-{i:03}", 2200 + i)
}

/// botvisor with a probe process bot per token (`[bot.pNNN]`, registered
/// with the fake), once botvisor polls for each and each program started.
async fn probes(tg: &FakeTelegram, supervisor: &str, tokens: &[String]) -> Daemon {
    let mut config = supervisor.to_owned();
    let mut env = vec![program::path_var()];
    for (i, token) in tokens.iter().enumerate() {
        tg.add_bot(token, &format!("probe_{i:03}_bot"));
        let var = format!("PROBE_{i:03}_TOKEN");
        config.push_str(&program::process_bot(
            &format!("p{i:03}"),
            &var,
            &program::probe_command(i),
        ));
        env.push((var, token.clone()));
    }
    let daemon = Daemon::start(&config, &env);
    for (i, token) in tokens.iter().enumerate() {
        tg.wait_for_request(token, "getUpdates", 1, LIMIT)
            .await
            .unwrap_or_else(|e| panic!("bot {i} never polled: {e:?}\n{}", daemon.output()));
        program::probe_env(&daemon, i).await;
    }
    daemon
}

/// One run of `gateway-capacity`: 20,000 sendMessage through the gateway
/// over 1,000 chats, 128 at a time, pacing off. [seconds, sends/s].
pub async fn capacity() -> Vec<f64> {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.set_request_log_capacity(1000);
    let mut daemon = probes(
        &tg,
        &crate::fleet::unpaced(&tg, "10s", LOG_FILTER),
        &[CAPACITY_TOKEN.to_owned()],
    )
    .await;
    let url = format!(
        "{}sendMessage",
        program::gateway_base(&program::probe_env(&daemon, 0).await)
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .expect("a client");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, url, next) = (client.clone(), url.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= SENDS {
                    return;
                }
                let body = format!(
                    "{{\"chat_id\":{},\"text\":\"send {i}\"}}",
                    3_000_000 + i % CHATS
                );
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("send {i}: {e}"));
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_else(|e| panic!("{e}"));
                let answer: serde_json::Value = serde_json::from_str(&text)
                    .unwrap_or_else(|_| panic!("send {i}: not JSON: {text}"));
                assert!(
                    status == 200 && answer["result"]["message_id"].is_i64(),
                    "send {i}: {status} {text}"
                );
            }
        }));
    }
    for task in tasks {
        task.await
            .unwrap_or_else(|e| panic!("a sender: {e}\n{}", daemon.output()));
    }
    let seconds = started.elapsed().as_secs_f64();
    daemon.terminate().await;
    daemon.assert_no_errors();
    let sent = tg.sent_messages(CAPACITY_TOKEN);
    assert_eq!(sent.len(), SENDS, "every send recorded once");
    let texts: HashSet<&str> = sent.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts.len(), SENDS, "a send recorded twice");
    vec![seconds, SENDS as f64 / seconds]
}

/// Reads `pid`'s RSS every [`SAMPLE_EVERY`] on a thread of its own (the
/// runtime is busy with the upload) until `stop`; the highest reading.
fn sample_rss(pid: i32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut highest = 0;
        while !stop.load(Ordering::SeqCst) {
            highest = highest.max(daemon::status_bytes(pid, "VmRSS"));
            std::thread::sleep(SAMPLE_EVERY);
        }
        highest.max(daemon::status_bytes(pid, "VmRSS"))
    })
}

/// One run of `gateway-footprint`: botvisor's RSS with one probe process
/// bot, a 50 MB `sendDocument` through its gateway, then RSS with 50.
/// [RSS 1 bot, RSS 50 bots, per bot, upload's RSS growth (MB), upload s].
pub async fn footprint() -> Vec<f64> {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let supervisor = crate::fleet::supervisor(&tg, "10s", LOG_FILTER);
    let mut daemon = probes(&tg, &supervisor, &[CAPACITY_TOKEN.to_owned()]).await;
    tokio::time::sleep(SETTLE).await;
    let one = daemon.rss();

    let url = format!(
        "{}sendDocument",
        program::gateway_base(&program::probe_env(&daemon, 0).await)
    );
    let file: Vec<u8> = (0..UPLOAD_BYTES)
        .map(|i| u8::try_from(i % 251).unwrap_or(0))
        .collect();
    let form = reqwest::multipart::Form::new()
        .text("chat_id", "3100000")
        .text("caption", "big")
        .part(
            "document",
            reqwest::multipart::Part::bytes(file.clone()).file_name("big.bin"),
        );
    let stop = Arc::new(AtomicBool::new(false));
    let before = daemon.rss();
    let sampler = sample_rss(daemon.pid(), stop.clone());
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(&url)
        .multipart(form)
        .timeout(LIMIT)
        .send()
        .await
        .unwrap_or_else(|e| panic!("the upload: {e}\n{}", daemon.output()));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_else(|e| panic!("{e}"));
    let upload_seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    let highest = sampler.join().expect("the RSS sampler");
    let answer: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    assert!(
        status == 200 && answer["result"]["message_id"].is_i64(),
        "the upload: {status} {text}"
    );
    let sent = tg.sent_messages(CAPACITY_TOKEN);
    assert_eq!(sent.len(), 1, "the document sent once");
    assert!(sent[0].is(MediaKind::Document), "{:?}", sent[0].method);
    let media = sent[0].media.as_ref().expect("the document's file");
    assert!(media.bytes[..] == file[..], "the document's bytes differ");
    daemon.terminate().await;
    daemon.assert_no_errors();

    let tg = FakeTelegram::start().await.expect("start the fake");
    let supervisor = crate::fleet::supervisor(&tg, "10s", LOG_FILTER);
    let tokens: Vec<String> = (0..PROBES).map(probe_token).collect();
    let mut daemon = probes(&tg, &supervisor, &tokens).await;
    tokio::time::sleep(SETTLE).await;
    let many = daemon.rss();
    daemon.terminate().await;
    daemon.assert_no_errors();

    let mb = |bytes: u64| bytes as f64 / 1e6;
    vec![
        mb(one),
        mb(many),
        (mb(many) - mb(one)) / (PROBES - 1) as f64,
        mb(highest.saturating_sub(before)),
        upload_seconds,
    ]
}
