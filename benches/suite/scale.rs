//! Many bots in one process: n `echo` bots (1, 10, 100, 500), each with its
//! own token. Start-up time from spawning the process to every bot's first
//! getUpdates, resident memory once all poll, CPU time per idle minute, and
//! the time from SIGTERM to exit.
//! Each run checks that every bot connected once (no restarts) and still
//! answers a message afterwards, exactly once.

use std::time::Duration;

use fake_telegram::{Chat, FakeTelegram, User};

use crate::daemon::{Daemon, LIMIT};
use crate::faq::ms;
use crate::fleet::{self, Echoes};
use crate::footprint::SETTLE;

/// The idle window, equal to this scenario's poll timeout so that it holds
/// exactly one long-poll round per bot (six per minute, three times as
/// many as the shipped 30 s timeout gives).
const IDLE_WINDOW: Duration = Duration::from_secs(10);

/// One run with `n` bots: [start-up s, RSS MB, CPU s per idle minute,
/// SIGTERM to exit ms].
pub async fn run(n: usize) -> Vec<f64> {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let echoes = Echoes::register(&tg, n);
    let config = echoes.config(&fleet::unpaced(&tg, "10s", "warn"), |_| String::new());
    let mut daemon = Daemon::start(&config, &echoes.env);
    let mut last = daemon.spawned;
    for token in &echoes.tokens {
        let first = tg
            .wait_for_request(token, "getUpdates", 1, LIMIT)
            .await
            .expect("every bot polls");
        last = last.max(first.at);
    }
    let startup = (last - daemon.spawned).as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let polls = || {
        tg.requests()
            .iter()
            .filter(|r| r.method == "getupdates")
            .count()
    };
    let before = polls();
    let cpu = daemon.idle_cpu_per_minute(IDLE_WINDOW).await;
    let rss = daemon.rss() as f64 / 1e6;
    // Idle means idle: one long-poll round per bot (two at the window's
    // edges), no spinning.
    let during = polls() - before;
    assert!(
        during <= 2 * n,
        "{during} getUpdates of {n} idle bots in 10 s"
    );
    // Every bot still answers, once.
    let user = User::new(42, "Deneme");
    for token in &echoes.tokens {
        tg.inject_message(token, &Chat::private(&user), &user, "ping");
    }
    for token in &echoes.tokens {
        let sent = tg
            .wait_for_sent(token, 1, LIMIT)
            .await
            .expect("every bot answers");
        assert_eq!(sent[0].text, "ping");
    }
    let (stop, _) = daemon.terminate().await;
    daemon.assert_no_errors();
    for token in &echoes.tokens {
        assert_eq!(tg.sent_messages(token).len(), 1, "one answer per bot");
        assert_eq!(tg.requests_of(token, "getMe").len(), 1, "no restart");
    }
    vec![startup, rss, cpu, ms(stop)]
}
