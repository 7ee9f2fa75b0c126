//! `scale-10000-webhook`: 10,000 `echo` bots by webhook in one process
//! (issue 22). Start-up to every bot's `setWebhook`, resident memory and
//! CPU time per idle minute (one whole minute: every bot's
//! `getWebhookInfo` check comes round once in it, and the shared scan of
//! the store sixty times), then a command to a bot picked at random, which
//! the fake delivers by webhook as Telegram does.

use std::time::Duration;

use fake_telegram::{Chat, FakeTelegram, User};

use crate::daemon::{Daemon, LIMIT};
use crate::faq::ms;
use crate::fleet::{self, Echoes};
use crate::footprint::SETTLE;

const BOTS: usize = 10_000;
/// One whole round of the staggered `getWebhookInfo` checks.
const IDLE_WINDOW: Duration = Duration::from_secs(60);

/// A port free now, for the public URL the fake delivers to.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One run: [start-up s, RSS MB, CPU s per idle minute, a command ms].
pub async fn run() -> Vec<f64> {
    botvisor::limits::raise_fd_limit();
    let tg = FakeTelegram::start().await.expect("start the fake");
    let echoes = Echoes::register(&tg, BOTS);
    let port = free_port();
    let supervisor = format!(
        "{}[supervisor.http]\nlisten = \"127.0.0.1:{port}\"\n\
         [supervisor.webhook]\npublic_url = \"http://127.0.0.1:{port}\"\n",
        fleet::unpaced(&tg, "25s", "warn")
    );
    let config = echoes.config(&supervisor, |_| "delivery = \"webhook\"\n".to_owned());
    let mut daemon = Daemon::start(&config, &echoes.env);
    let mut last = daemon.spawned;
    for token in &echoes.tokens {
        let set = tg
            .wait_for_request(token, "setWebhook", 1, LIMIT)
            .await
            .expect("every bot sets its webhook");
        last = last.max(set.at);
    }
    let startup = (last - daemon.spawned).as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let cpu = daemon.idle_cpu_per_minute(IDLE_WINDOW).await;
    let rss = daemon.rss() as f64 / 1e6;
    // A bot picked at random answers through its webhook.
    let pick = {
        use rand::Rng as _;
        rand::rng().random_range(0..BOTS)
    };
    let token = &echoes.tokens[pick];
    let user = User::new(42, "Deneme");
    let started = std::time::Instant::now();
    tg.inject_message(token, &Chat::private(&user), &user, "picked");
    tg.wait_for_sent(token, 1, LIMIT)
        .await
        .expect("the picked bot answers");
    let answered = ms(started.elapsed());
    let polls = tg
        .requests()
        .iter()
        .filter(|r| r.method == "getupdates")
        .count();
    assert_eq!(polls, 0, "a webhook bot polled");
    daemon.terminate().await;
    vec![startup, rss, cpu, answered]
}
