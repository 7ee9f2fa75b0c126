//! The shipped two bots (Tanıtım and Duyuru, `supervisor.toml` as shipped)
//! at rest: resident memory and CPU time per idle minute, and the start-up
//! time from spawning the process to each bot's first getUpdates.

use std::time::Duration;

use fake_telegram::{Chat, FakeTelegram, User};

use crate::daemon::{Daemon, LIMIT};
use crate::faq::ms;
use crate::fleet::{self, DUYURU, TANITIM};
use crate::site::Site;

/// How long start-up gets to settle before an idle measurement.
pub const SETTLE: Duration = Duration::from_secs(2);
/// The idle window: the shipped poll timeout, so that it holds exactly one
/// long-poll round per bot, as every idle minute holds two.
const IDLE_WINDOW: Duration = Duration::from_secs(30);

/// The shipped bots on a fresh store, up and idle.
pub struct Shipped {
    pub tg: FakeTelegram,
    pub site: Site,
    pub daemon: Daemon,
}

impl Shipped {
    /// Starts them and waits until both poll and the relay's first check
    /// (which marks the listed announcements seen) has read the list.
    pub async fn start() -> Shipped {
        let tg = FakeTelegram::start().await.expect("start the fake");
        let site = fleet::site().await;
        let (config, env) = fleet::shipped(&tg, &site);
        let daemon = Daemon::start(&config, &env);
        for token in [TANITIM, DUYURU] {
            tg.wait_for_request(token, "getUpdates", 1, LIMIT)
                .await
                .expect("both bots poll");
        }
        site.wait_for_requests("/list", 1, LIMIT)
            .await
            .expect("the relay's first check");
        Shipped { tg, site, daemon }
    }

    /// Both bots still answer: Tanıtım its greeting, Duyuru its help.
    pub async fn assert_answering(&self) {
        let user = User::new(77, "Aday");
        for (token, command) in [(TANITIM, "/start"), (DUYURU, "/yardim")] {
            let before = self.tg.sent_messages(token).len();
            self.tg
                .inject_message(token, &Chat::private(&user), &user, command);
            self.tg
                .wait_for_sent(token, before + 1, LIMIT)
                .await
                .expect("the bot answers");
        }
    }
}

/// One idle run: [RSS in MB, of which file-backed, CPU seconds per idle
/// minute].
pub async fn idle() -> Vec<f64> {
    let mut shipped = Shipped::start().await;
    tokio::time::sleep(SETTLE).await;
    let polls = |token| shipped.tg.requests_of(token, "getUpdates").len();
    let before = [polls(TANITIM), polls(DUYURU)];
    let cpu = shipped.daemon.idle_cpu_per_minute(IDLE_WINDOW).await;
    let rss = shipped.daemon.rss() as f64 / 1e6;
    let rss_file = shipped.daemon.rss_file() as f64 / 1e6;
    // Idle means idle: one long-poll round per bot in the window (two at
    // most at its edges), no spinning.
    for (token, before) in [TANITIM, DUYURU].into_iter().zip(before) {
        let during = polls(token) - before;
        assert!(during <= 2, "{during} getUpdates in an idle window of 30 s");
    }
    assert_eq!(shipped.site.requests("/list"), 1, "one check in the window");
    shipped.assert_answering().await;
    shipped.daemon.terminate().await;
    shipped.daemon.assert_no_errors();
    vec![rss, rss_file, cpu]
}

/// One start: [Tanıtım ms, Duyuru ms] from spawning the process to the
/// bot's first getUpdates at the fake.
pub async fn startup() -> Vec<f64> {
    let mut shipped = Shipped::start().await;
    let mut figures = Vec::new();
    for token in [TANITIM, DUYURU] {
        let first = shipped
            .tg
            .wait_for_request(token, "getUpdates", 1, LIMIT)
            .await
            .expect("the bot polls");
        assert_eq!(shipped.tg.requests_of(token, "getMe").len(), 1, "one getMe");
        figures.push(ms(first.at - shipped.daemon.spawned));
    }
    // The FAQ bot registers its menu before it polls.
    let commands = shipped.tg.requests_of(TANITIM, "setMyCommands");
    let first_poll = &shipped.tg.requests_of(TANITIM, "getUpdates")[0];
    assert!(
        commands.first().is_some_and(|c| c.at <= first_poll.at),
        "setMyCommands before the first poll"
    );
    shipped.assert_answering().await;
    shipped.daemon.terminate().await;
    shipped.daemon.assert_no_errors();
    figures
}
