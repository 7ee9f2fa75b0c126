//! SIGTERM to exit: the shipped two bots idle, and one `echo` bot with 20
//! handlers in flight (each just started, 1 s from its reply). With handlers in flight
//! the run checks that every one of them replied exactly once and that the
//! fake's confirmed offset covers them all (Telegram would not deliver them
//! again), and reports how long the exit took after the last reply.

use std::time::Duration;

use fake_telegram::{Chat, FakeTelegram, User};

use crate::daemon::Daemon;
use crate::faq::ms;
use crate::fleet::{self, Echoes};
use crate::footprint::Shipped;

const IN_FLIGHT: u64 = 20;

/// One idle shutdown: [SIGTERM to exit, ms].
pub async fn idle() -> Vec<f64> {
    let mut shipped = Shipped::start().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (took, _) = shipped.daemon.terminate().await;
    shipped.daemon.assert_no_errors();
    vec![ms(took)]
}

/// One shutdown with handlers in flight: [SIGTERM to exit, s; last reply
/// to exit, ms].
pub async fn in_flight() -> Vec<f64> {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let echoes = Echoes::register(&tg, 1);
    let token = &echoes.tokens[0];
    // Queued before the start, so the first getUpdates hands over all of
    // them in one batch.
    let mut last_id = 0;
    for i in 0..IN_FLIGHT {
        let user = User::new(500 + i, "Yavas");
        last_id = tg.inject_message(token, &Chat::private(&user), &user, "slow");
    }
    // The dispatcher's debug line "handling an update" says a handler has
    // started: the SIGTERM goes once all of them run.
    let supervisor = fleet::unpaced(&tg, "10s", "warn,botvisor::worker::dispatch=debug");
    let config = echoes.config(&supervisor, |_| {
        "slow_on = \"slow\"\nslow_for = \"1s\"\n".to_owned()
    });
    let mut daemon = Daemon::start(&config, &echoes.env);
    daemon
        .wait_for_lines("handling an update", IN_FLIGHT as usize)
        .await;
    assert!(tg.sent_messages(token).is_empty(), "all still in flight");
    let (took, exited) = daemon.terminate().await;
    daemon.assert_no_errors();
    let sent = tg.sent_messages(token);
    assert_eq!(sent.len(), IN_FLIGHT as usize, "every handler replied once");
    let mut chats: Vec<i64> = sent.iter().map(|m| m.chat_id).collect();
    chats.sort_unstable();
    chats.dedup();
    assert_eq!(chats.len(), IN_FLIGHT as usize, "one reply per chat");
    assert_eq!(
        tg.confirmed_offset(token),
        i64::from(last_id) + 1,
        "the handled updates are confirmed"
    );
    let last_reply = sent.iter().map(|m| m.at).max().expect("replies");
    vec![took.as_secs_f64(), ms(exited - last_reply)]
}
