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

/// From this many bots on, the shipped 25 s poll timeout, as an operator
/// with many bots would run them (and the idle window is one such round).
const MANY: usize = 1_000;

/// Commands answered, one at a time, by bots picked at random while all
/// the others idle.
const PICKED: usize = 20;

/// One run with `n` bots: [start-up s, RSS MB, CPU s per idle minute,
/// SIGTERM to exit ms], and from [`MANY`] bots on the median ms a command
/// to a bot picked at random waits for its answer.
pub async fn run(n: usize) -> Vec<f64> {
    // The fake holds a long poll per bot: more sockets than the usual soft
    // limit of this process.
    botvisor::limits::raise_fd_limit();
    let tg = FakeTelegram::start().await.expect("start the fake");
    let echoes = Echoes::register(&tg, n);
    let (poll, idle_window) = if n >= MANY {
        ("25s", Duration::from_secs(25))
    } else {
        ("10s", IDLE_WINDOW)
    };
    let config = echoes.config(&fleet::unpaced(&tg, poll, "warn"), |_| String::new());
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
    let cpu = daemon.idle_cpu_per_minute(idle_window).await;
    let rss = daemon.rss() as f64 / 1e6;
    // Idle means idle: one long-poll round per bot (two at the window's
    // edges), no spinning.
    let during = polls() - before;
    assert!(
        during <= 2 * n,
        "{during} getUpdates of {n} idle bots in 10 s"
    );
    // A bot picked at random answers while the others idle.
    let user = User::new(42, "Deneme");
    let mut picked_ms = Vec::new();
    if n >= MANY {
        use rand::Rng as _;
        let picks: Vec<usize> = {
            let mut rng = rand::rng();
            (0..PICKED).map(|_| rng.random_range(0..n)).collect()
        };
        for pick in picks {
            let token = &echoes.tokens[pick];
            let before = tg.sent_messages(token).len();
            let start = std::time::Instant::now();
            tg.inject_message(token, &Chat::private(&user), &user, "picked");
            tg.wait_for_sent(token, before + 1, LIMIT)
                .await
                .expect("the picked bot answers");
            picked_ms.push(ms(start.elapsed()));
        }
        picked_ms.sort_by(f64::total_cmp);
    }
    // Every bot still answers, once (more for those picked above).
    let answered: Vec<usize> = echoes
        .tokens
        .iter()
        .map(|token| tg.sent_messages(token).len())
        .collect();
    for token in &echoes.tokens {
        tg.inject_message(token, &Chat::private(&user), &user, "ping");
    }
    for (token, before) in echoes.tokens.iter().zip(&answered) {
        let sent = tg
            .wait_for_sent(token, before + 1, LIMIT)
            .await
            .expect("every bot answers");
        assert_eq!(sent[*before].text, "ping");
    }
    let (stop, _) = daemon.terminate().await;
    daemon.assert_no_errors();
    // One pass over the request log: thousands of bots.
    let mut connects = std::collections::HashMap::<String, usize>::new();
    for request in tg.requests().iter().filter(|r| r.method == "getme") {
        *connects.entry(request.token.clone()).or_default() += 1;
    }
    for (token, before) in echoes.tokens.iter().zip(&answered) {
        assert_eq!(
            tg.sent_messages(token).len(),
            before + 1,
            "one answer per bot"
        );
        assert_eq!(connects.get(token), Some(&1), "no restart");
    }
    let mut figures = vec![startup, rss, cpu, ms(stop)];
    if n >= MANY {
        figures.push(picked_ms.get(PICKED / 2).copied().unwrap_or(f64::NAN));
    }
    figures
}
