//! An outage of the Bot API (nothing listening: connection refused) is
//! waited out for as long as it lasts: the bot is never parked, its waits
//! stay within `max_backoff` (and the jitter), its state names the cause,
//! and it polls again within `max_backoff` of the API's return.

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::{ConfigDir, Daemon, HTTP, assert_echoes, bot_status, endpoint, supervisor_table};
use fake_telegram::FakeTelegram;

const TOKEN: &str = "6001:token-of-the-outage-bot";
/// As long as the operators' measured outage.
const OUTAGE: Duration = Duration::from_secs(180);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const JITTER: f64 = 0.2;

#[tokio::test]
async fn an_unreachable_bot_api_is_waited_out_without_parking() {
    // A loopback port with nothing on it.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let api_url = format!("http://{addr}");
    // Three counted failures would park the bot for an hour.
    let config = ConfigDir::new(&format!(
        "{}[bot.a]\nkind = \"echo\"\ntoken_env = \"A_TOKEN\"\n\
         [bot.a.restart]\ninitial_backoff = \"100ms\"\nmax_backoff = \"1s\"\njitter = {JITTER}\n\
         max_restarts = 3\nwindow = \"10m\"\npark_for = \"1h\"\n",
        supervisor_table(&api_url, HTTP)
    ));
    let mut daemon = Daemon::start(&config.path, &[("A_TOKEN", TOKEN)]);
    let base = endpoint(&mut daemon).await;
    let started = Instant::now();
    let longest_wait = MAX_BACKOFF.mul_f64(1.0 + JITTER) + Duration::from_millis(100);
    let mut samples = 0;
    let mut named_the_cause = false;
    while started.elapsed() < OUTAGE {
        let status = bot_status(&base, "a").await;
        assert_ne!(status["state"], "parked", "parked by an outage: {status}");
        if status["state"] == "backing_off" {
            let reason = status["reason"].as_str().unwrap_or_default().to_lowercase();
            assert!(reason.contains("connection refused"), "{status}");
            named_the_cause = true;
            if let Some(next) = status["next_attempt"]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339(t).ok())
            {
                let wait = next.duration_since(SystemTime::now()).unwrap_or_default();
                assert!(wait <= longest_wait, "a wait of {wait:?}: {status}");
            }
        }
        samples += 1;
        // Looking in at the board ten times a second for the whole outage.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(named_the_cause && samples > 100, "{samples} samples");
    assert!(!daemon.output().contains("parked"), "{}", daemon.output());

    // The API comes back on the same address.
    let tg = FakeTelegram::start_on(addr).await.expect("the API is back");
    tg.add_bot(TOKEN, "a_bot");
    let back = Instant::now();
    tg.wait_for_request(TOKEN, "getUpdates", 1, Duration::from_secs(10))
        .await
        .expect("polls again");
    let took = back.elapsed();
    assert!(
        took <= longest_wait + Duration::from_millis(400),
        "polled {took:?} after the API came back"
    );
    assert_echoes(&tg, TOKEN, 5, "geri geldim").await;
    daemon.stop_cleanly().await;
}
