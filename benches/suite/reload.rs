//! SIGHUP with one changed bot out of 100 `echo` bots. The changed bot gets
//! `panic_on = "boom"`: the run measures how soon after the SIGHUP it polls
//! again, and proves the new settings are live (it then ignores "boom" with
//! a caught panic and answers the next message). Throughout the reload a
//! message goes to one of the other 99 every 5 ms; each must be answered
//! exactly once, and the slowest answer shows whether any of them paused.
//! None of the 99 may reconnect (a new getMe) or drop its held long poll.

use std::time::{Duration, Instant};

use fake_telegram::{Chat, FakeTelegram, Outcome, User};

use crate::daemon::{Daemon, LIMIT};
use crate::faq::ms;
use crate::fleet::{self, Echoes};
use crate::footprint::SETTLE;

const CHANGED: usize = 50;
const EVERY: Duration = Duration::from_millis(5);
const MESSAGES: usize = 400;
/// When the SIGHUP goes, after the first message.
const SIGHUP_AFTER: Duration = Duration::from_millis(500);

/// One reload: [changed bot polls again, ms; reconnects or dropped polls
/// of the other 99; their slowest answer before the SIGHUP, ms; their
/// slowest answer after it, ms].
pub async fn run(bots: usize) -> Vec<f64> {
    botvisor::limits::raise_fd_limit();
    let tg = FakeTelegram::start().await.expect("start the fake");
    let echoes = Echoes::register(&tg, bots);
    let supervisor = fleet::supervisor(&tg, "30s", "warn");
    let config = echoes.config(&supervisor, |_| String::new());
    let mut daemon = Daemon::start(&config, &echoes.env);
    for token in &echoes.tokens {
        tg.wait_for_request(token, "getUpdates", 1, LIMIT)
            .await
            .expect("every bot polls");
    }
    tokio::time::sleep(SETTLE).await;
    let changed = echoes.config(&supervisor, |i| {
        if i == CHANGED {
            "panic_on = \"boom\"\n".to_owned()
        } else {
            String::new()
        }
    });
    std::fs::write(daemon.config_path(), changed).expect("change the config");

    let others: Vec<usize> = (0..bots).filter(|i| *i != CHANGED).collect();
    let injector = {
        let tg = tg.clone();
        let tokens = echoes.tokens.clone();
        let others = others.clone();
        tokio::spawn(async move {
            let mut injected = Vec::with_capacity(MESSAGES);
            let mut ticker = tokio::time::interval(EVERY);
            for k in 0..MESSAGES {
                ticker.tick().await;
                let bot = others[k % others.len()];
                let user = User::new(1_000 + k as u64, "Deneme");
                let text = format!("m{k}");
                injected.push((bot, text.clone(), Instant::now()));
                tg.inject_message(&tokens[bot], &Chat::private(&user), &user, &text);
            }
            injected
        })
    };
    tokio::time::sleep(SIGHUP_AFTER).await;
    let sighup = Instant::now();
    daemon.signal(libc::SIGHUP);

    let token = &echoes.tokens[CHANGED];
    let reconnect = tg
        .wait_for_request(token, "getMe", 2, LIMIT)
        .await
        .expect("the changed bot reconnects");
    let again = tg
        .wait_for_request_matching("the changed bot's next poll", LIMIT, |r| {
            r.token == *token && r.method == "getupdates" && r.seq > reconnect.seq
        })
        .await
        .expect("the changed bot polls again");
    assert!(reconnect.at >= sighup, "the reconnect follows the SIGHUP");
    let polls_again = ms(again.at - sighup);

    let injected = injector.await.expect("the injector");
    let mut per_bot = vec![0; bots];
    for (bot, _, _) in &injected {
        per_bot[*bot] += 1;
    }
    for bot in &others {
        tg.wait_for_sent(&echoes.tokens[*bot], per_bot[*bot], LIMIT)
            .await
            .expect("every message answered");
    }
    let (mut before, mut after) = (0.0f64, 0.0f64);
    for (bot, text, at) in &injected {
        let replies: Vec<_> = tg
            .sent_messages(&echoes.tokens[*bot])
            .into_iter()
            .filter(|m| m.text == *text)
            .collect();
        assert_eq!(replies.len(), 1, "{text} answered once");
        let latency = ms(replies[0].at.saturating_duration_since(*at));
        if *at < sighup {
            before = before.max(latency);
        } else {
            after = after.max(latency);
        }
    }
    // The others went on as if nothing happened (one pass over the log:
    // thousands of bots).
    let changed_token = &echoes.tokens[CHANGED];
    let mut disturbed = 0;
    let mut connects = std::collections::HashMap::<&str, usize>::new();
    let requests = tg.requests();
    for request in requests.iter().filter(|r| r.token != *changed_token) {
        match request.method.as_str() {
            "getme" => *connects.entry(request.token.as_str()).or_default() += 1,
            "getupdates" if !matches!(request.outcome, Outcome::Pending | Outcome::Status(200)) => {
                disturbed += 1;
            }
            _ => {}
        }
    }
    disturbed += connects.values().map(|n| n - 1).sum::<usize>();
    // The changed bot runs its new settings: "boom" panics (caught, no
    // answer), the next message is answered.
    let user = User::new(9, "Deneme");
    tg.inject_message(token, &Chat::private(&user), &user, "boom");
    tg.inject_message(token, &Chat::private(&user), &user, "after");
    let sent = tg
        .wait_for_sent(token, 1, LIMIT)
        .await
        .expect("the changed bot answers");
    assert_eq!(sent[0].text, "after", "boom is not echoed");
    daemon.terminate().await;
    let errors: Vec<String> = daemon
        .errors()
        .into_iter()
        .filter(|l| !l.contains("panic"))
        .collect();
    assert!(
        errors.is_empty(),
        "botvisor logged errors:\n{}",
        errors.join("\n")
    );
    assert_eq!(
        tg.sent_messages(token).len(),
        1,
        "nothing else from the changed bot"
    );
    vec![polls_again, disturbed as f64, before, after]
}
