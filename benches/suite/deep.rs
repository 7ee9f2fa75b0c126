//! A hostile page beside a busy FAQ bot (issue 13): the relay of the same
//! process reads a 5 MB list page nested a million levels deep on every
//! check,
//! on one async worker thread (a one-core dyno), while the shipped Tanıtım
//! bot answers a steady 20 commands a second from 100 users. Reports the
//! FAQ's latency; every command must get its answer once.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fake_telegram::{Chat, FakeTelegram, User};

use crate::daemon::{Daemon, LIMIT};
use crate::faq::{commands, ms, quantile};
use crate::fleet;
use crate::site::Site;

const FAQ: &str = "902:token-of-the-benchmarked-faq-bot";
const RELAY: &str = "903:token-of-the-deep-page-relay";
const RATE: u32 = 20;
const SECONDS: u32 = 10;

/// One run: [p50, p99, max] FAQ latency in ms, and the relay's checks of
/// the deep page meanwhile.
pub async fn run() -> Vec<f64> {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(FAQ, "tanitim_bot");
    tg.add_bot(RELAY, "duyuru_bot");
    let site = Site::start().await;
    // The list page itself: every check reads and rejects it.
    let deep = format!("<html><body>{}</body></html>", "<div>".repeat(1_000_000));
    site.set_html("/list", &deep);
    let content = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("content/tanitim.toml");
    let config = format!(
        "{}[bot.tanitim]\nkind = \"faq\"\ntoken_env = \"FAQ_TOKEN\"\ncontent_file = \"{}\"\n\
         [bot.duyuru]\nkind = \"announcements\"\ntoken_env = \"RELAY_TOKEN\"\nlist_url = \"{}\"\n\
         link_selector = \"div.ann-list ul li a\"\ntext_selector = \"div.page-about\"\ncheck_every = \"1s\"\n",
        fleet::unpaced(&tg, "10s", "warn"),
        content.display(),
        site.url("/list"),
    );
    let mut daemon = Daemon::start(
        &config,
        &[
            ("FAQ_TOKEN".to_owned(), FAQ.to_owned()),
            ("RELAY_TOKEN".to_owned(), RELAY.to_owned()),
            ("TOKIO_WORKER_THREADS".to_owned(), "1".to_owned()),
        ],
    );
    tg.wait_for_request(FAQ, "getUpdates", 1, LIMIT)
        .await
        .expect("the FAQ bot polls");
    site.wait_for_requests("/list", 1, LIMIT)
        .await
        .expect("the relay reads the deep page");
    let checks_before = site.requests("/list");
    let commands = commands();
    let total = (RATE * SECONDS) as usize;
    let mut latencies = Vec::with_capacity(total);
    let start = tokio::time::Instant::now();
    for i in 0..total {
        tokio::time::sleep_until(start + Duration::from_secs(1) / RATE * i as u32).await;
        let user = User::new(400_000 + (i as u64 % 100), "Aday");
        let (command, answer) = &commands[i % commands.len()];
        let asked = Instant::now();
        tg.inject_message(FAQ, &Chat::private(&user), &user, command);
        let sent = tg
            .wait_for_sent(FAQ, i + 1, LIMIT)
            .await
            .expect("an answer");
        assert!(
            sent[i].text.starts_with(answer.as_str()),
            "the answer to {command}"
        );
        latencies.push(ms(sent[i].at.saturating_duration_since(asked)));
    }
    let checks = site.requests("/list") - checks_before;
    assert!(
        checks >= 2,
        "the relay kept reading the deep page: {checks}"
    );
    daemon.terminate().await;
    let max = latencies.iter().copied().fold(0.0, f64::max);
    vec![
        quantile(&latencies, 0.50),
        quantile(&latencies, 0.99),
        max,
        checks as f64,
    ]
}
