//! Conflicts between pollers of one token. A 409 storm: another poller
//! shows up (its getUpdates ends botvisor's held one with 409, as Telegram
//! does) and every poll of botvisor's gets 409 for 5 s; then it is gone.
//! Measured: from the end of the storm to botvisor's next successful poll.
//! And a takeover: two instances on one SQLite store, the second in
//! standby; SIGTERM to the first right after the second's failed try for
//! the leases (the worst moment: it tries every second); measured: from
//! the SIGTERM to the second's first getUpdates of each bot, and every 409
//! either got. Messages flow all along; each must be answered once.

use std::time::{Duration, Instant};

use fake_telegram::{Chat, FakeTelegram, Fault, Outcome, User};

use crate::daemon::{Daemon, LIMIT};
use crate::fleet::{self, Echoes};

/// How long every poll gets 409.
const STORM: Duration = Duration::from_secs(5);

/// One storm: [end of storm to next successful poll, s; 409s answered].
pub async fn storm() -> Vec<f64> {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let echoes = Echoes::register(&tg, 1);
    let token = echoes.tokens[0].clone();
    let config = echoes.config(&fleet::supervisor(&tg, "10s", "warn"), |_| String::new());
    let mut daemon = Daemon::start(&config, &echoes.env);
    let held = tg
        .wait_for_request(&token, "getUpdates", 1, LIMIT)
        .await
        .expect("botvisor polls");
    tg.wait_until_polling(&token, LIMIT)
        .await
        .expect("botvisor's poll is held");
    // The other poller: a short long poll of its own.
    let rival = tokio::spawn(
        reqwest::Client::new()
            .post(format!("{}/bot{token}/getUpdates", tg.url()))
            .header("content-type", "application/json")
            .body("{\"timeout\":1}")
            .send(),
    );
    let first = tg
        .wait_for_request_matching("botvisor's poll ended by 409", LIMIT, |r| {
            r.seq == held.seq && r.status() == Some(409)
        })
        .await
        .expect("the other poller ends botvisor's poll");
    tg.add_fault(
        &token,
        "getUpdates",
        Fault::conflict_other_poller().forever(),
    );
    let started = Instant::now();
    tokio::time::sleep(STORM).await;
    let end = Instant::now();
    tg.clear_faults(&token);
    let next = tg
        .wait_for_request_matching("a poll after the storm", LIMIT, |r| {
            r.token == token && r.method == "getupdates" && r.at >= end && r.status() != Some(409)
        })
        .await
        .expect("botvisor polls again");
    let recovery = (next.at - end).as_secs_f64();
    let rival = rival.await.expect("the rival").expect("the rival's poll");
    assert!(rival.status().is_success(), "the rival's poll is answered");
    // No spinning in the storm: botvisor (10 s long polls, unlike the
    // rival's 1 s) waited about 3 s or more between polls.
    let polls: Vec<Instant> = tg
        .requests_of(&token, "getUpdates")
        .iter()
        .filter(|r| r.body["timeout"] == 10 && r.seq >= first.seq && r.seq <= next.seq)
        .map(|r| r.at)
        .collect();
    for pair in polls.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(2_400),
            "polls {:?} apart in a conflict",
            pair[1] - pair[0]
        );
    }
    let conflicts = tg
        .requests_of(&token, "getUpdates")
        .iter()
        .filter(|r| r.body["timeout"] == 10 && r.status() == Some(409))
        .count();
    assert!(
        conflicts >= 2,
        "{conflicts} 409s in {:?}",
        started.elapsed()
    );
    // And it answers again, once.
    let user = User::new(5, "Deneme");
    tg.inject_message(&token, &Chat::private(&user), &user, "after");
    tg.wait_for_sent(&token, 1, LIMIT)
        .await
        .expect("botvisor answers after the storm");
    daemon.terminate().await;
    daemon.assert_no_errors();
    assert_eq!(tg.sent_messages(&token).len(), 1, "answered once");
    vec![recovery, conflicts as f64]
}

/// One takeover: [SIGTERM to the second instance's first getUpdates, s
/// (the slower of two bots); 409s answered to either].
pub async fn takeover() -> Vec<f64> {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let echoes = Echoes::register(&tg, 2);
    let shared = tempfile::tempdir().expect("a folder for the shared store");
    let store = format!(
        "store = \"sqlite:{}\"\n",
        shared.path().join("botvisor.db").display()
    );
    // The second instance polls with an 11 s timeout, so its requests can
    // be told from the first's at the fake.
    let first_config = echoes.config(&(fleet::supervisor(&tg, "10s", "info") + &store), |_| {
        String::new()
    });
    let second_config = echoes.config(&(fleet::supervisor(&tg, "11s", "info") + &store), |_| {
        String::new()
    });
    let mut first = Daemon::start(&first_config, &echoes.env);
    for token in &echoes.tokens {
        tg.wait_for_request(token, "getUpdates", 1, LIMIT)
            .await
            .expect("the first instance polls");
    }
    // Messages all along: before, during and after the takeover.
    let stop = tokio_util::sync::CancellationToken::new();
    let injector = {
        let tg = tg.clone();
        let tokens = echoes.tokens.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut injected = Vec::new();
            let mut ticker = tokio::time::interval(Duration::from_millis(20));
            let mut k = 0u64;
            while !stop.is_cancelled() {
                ticker.tick().await;
                let token = &tokens[(k % 2) as usize];
                let user = User::new(2_000 + k, "Deneme");
                let text = format!("t{k}");
                tg.inject_message(token, &Chat::private(&user), &user, &text);
                injected.push((token.clone(), text));
                k += 1;
            }
            injected
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The second instance logs "standby" right after its first try for
    // each lease failed and then tries again every second: a SIGTERM at
    // once is the worst moment, just after a try.
    let mut second = Daemon::start(&second_config, &echoes.env);
    second.wait_for_lines("standby", echoes.tokens.len()).await;
    let (took, exited) = first.terminate().await;
    let sigterm = exited - took;
    let mut gap = Duration::ZERO;
    for token in &echoes.tokens {
        let taken = tg
            .wait_for_request_matching("the second instance's first poll", LIMIT, |r| {
                r.token == *token && r.method == "getupdates" && r.body["timeout"] == 11
            })
            .await
            .expect("the second instance takes over");
        gap = gap.max(taken.at.saturating_duration_since(sigterm));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    let injected = injector.await.expect("the injector");
    for token in &echoes.tokens {
        let count = injected.iter().filter(|(t, _)| t == token).count();
        tg.wait_for_sent(token, count, LIMIT)
            .await
            .expect("every message answered");
    }
    second.terminate().await;
    first.assert_no_errors();
    second.assert_no_errors();
    for token in &echoes.tokens {
        let sent = tg.sent_messages(token);
        let count = injected.iter().filter(|(t, _)| t == token).count();
        assert_eq!(sent.len(), count, "nothing answered twice");
        for (_, text) in injected.iter().filter(|(t, _)| t == token) {
            assert_eq!(
                sent.iter().filter(|m| m.text == *text).count(),
                1,
                "{text} answered once"
            );
        }
    }
    let conflicts = tg
        .requests()
        .iter()
        .filter(|r| r.method == "getupdates" && r.outcome == Outcome::Status(409))
        .count();
    vec![gap.as_secs_f64(), conflicts as f64]
}
