//! `fleet-3`: three instances on one PostgreSQL share 300 `echo` bots
//! (issue 22). Two instances start and split the bots; a third joins, and
//! the time until every instance holds its share (100 ± 1) is measured,
//! with the longest time any moved bot was running nowhere (its handover
//! gap); then one instance is killed with kill -9 and the time until its
//! bots run on the others is measured, with a message sent to each of
//! them meanwhile answered exactly once. Default `lease_ttl` (10 s).
//!
//! Needs PostgreSQL: `BOTVISOR_BENCH_DATABASE_URL` (or `TEST_DATABASE_URL`)
//! names a server where the run may create and drop a database.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fake_telegram::{Chat, FakeTelegram, User};
use sqlx::{Connection, Executor};

use crate::daemon::Daemon;
use crate::fleet::{self, Echoes};

const BOTS: usize = 300;
/// Far past every target: a run that gets here has failed.
const GIVE_UP: Duration = Duration::from_secs(120);

/// The status endpoint's base URL, from the daemon's start-up line.
async fn endpoint(daemon: &Daemon) -> String {
    daemon.wait_for_lines("status endpoint listening", 1).await;
    let output = daemon.output();
    let addr = output
        .lines()
        .find(|l| l.contains("status endpoint listening"))
        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("addr=")))
        .expect("the endpoint's address");
    format!("http://{addr}")
}

/// The instances (by index) each bot runs on, by name.
async fn running(client: &reqwest::Client, bases: &[&str]) -> BTreeMap<String, Vec<usize>> {
    let mut running: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, base) in bases.iter().enumerate() {
        let status: serde_json::Value = client
            .get(format!("{base}/status"))
            .send()
            .await
            .expect("GET /status")
            .json()
            .await
            .expect("JSON");
        for bot in status["bots"].as_array().into_iter().flatten() {
            let entry = running
                .entry(bot["name"].as_str().unwrap_or_default().to_owned())
                .or_default();
            if bot["state"] == "running" {
                entry.push(i);
            }
        }
    }
    running
}

/// Samples until every bot runs on exactly one instance and each runs
/// `low..=high`; panics if a bot ever runs on two. The longest time any
/// bot ran nowhere meanwhile.
async fn settle(client: &reqwest::Client, bases: &[&str], low: usize, high: usize) -> Duration {
    let started = Instant::now();
    let mut nowhere_since: BTreeMap<String, Instant> = BTreeMap::new();
    let mut longest = Duration::ZERO;
    loop {
        let now = Instant::now();
        let running = running(client, bases).await;
        let mut per_instance = vec![0usize; bases.len()];
        for (bot, on) in &running {
            assert!(on.len() <= 1, "{bot} runs on instances {on:?}");
            match on.first() {
                Some(i) => {
                    per_instance[*i] += 1;
                    if let Some(since) = nowhere_since.remove(bot) {
                        longest = longest.max(now - since);
                    }
                }
                None => {
                    nowhere_since.entry(bot.clone()).or_insert(now);
                }
            }
        }
        if nowhere_since.is_empty()
            && running.len() == BOTS
            && per_instance.iter().all(|n| (low..=high).contains(n))
        {
            return longest;
        }
        assert!(
            started.elapsed() < GIVE_UP,
            "never settled at {low}..={high}: {per_instance:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One run: [join → shares s, longest handover gap s, kill -9 → its bots
/// running elsewhere s, 409s].
pub async fn fleet3() -> Vec<f64> {
    botvisor::limits::raise_fd_limit();
    let admin = std::env::var("BOTVISOR_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("TEST_DATABASE_URL"))
        .expect("fleet-3 needs PostgreSQL: set BOTVISOR_BENCH_DATABASE_URL");
    let name = format!("botvisor_bench_fleet_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("connect to PostgreSQL");
    conn.execute(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .await
    .expect("drop an old database");
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .await
        .expect("create the database");
    let mut url = url::Url::parse(&admin).expect("a URL");
    url.set_path(&format!("/{name}"));

    let tg = FakeTelegram::start().await.expect("start the fake");
    let echoes = Echoes::register(&tg, BOTS);
    let supervisor = format!(
        "{}[supervisor.http]\nlisten = \"127.0.0.1:0\"\n",
        fleet::unpaced(&tg, "10s", "info")
    );
    let config = echoes.config(&supervisor, |_| String::new());
    let mut env = echoes.env.clone();
    env.push(("DATABASE_URL".to_owned(), url.to_string()));
    let client = reqwest::Client::new();

    let a = Daemon::start(&config, &env);
    let mut b = Daemon::start(&config, &env);
    let (base_a, base_b) = (endpoint(&a).await, endpoint(&b).await);
    settle(&client, &[&base_a, &base_b], BOTS / 2 - 1, BOTS / 2 + 1).await;

    // A third joins.
    let mut c = Daemon::start(&config, &env);
    let base_c = endpoint(&c).await;
    let joined = Instant::now();
    let gap = settle(
        &client,
        &[&base_a, &base_b, &base_c],
        BOTS / 3 - 1,
        BOTS / 3 + 1,
    )
    .await;
    let spread = joined.elapsed();

    // kill -9 of the first; a message to each of its bots meanwhile.
    let before = running(&client, &[&base_a]).await;
    let its_bots: Vec<usize> = before
        .iter()
        .filter(|(_, on)| !on.is_empty())
        .filter_map(|(name, _)| name.strip_prefix('e')?.parse().ok())
        .collect();
    a.signal(libc::SIGKILL);
    let killed = Instant::now();
    let user = User::new(77, "Deneme");
    for i in &its_bots {
        let text = format!("after the kill {i}");
        tg.inject_message(&echoes.tokens[*i], &Chat::private(&user), &user, &text);
    }
    settle(&client, &[&base_b, &base_c], BOTS / 2 - 1, BOTS / 2 + 1).await;
    let repolled = killed.elapsed();
    for i in &its_bots {
        let text = format!("after the kill {i}");
        let token = &echoes.tokens[*i];
        let started = Instant::now();
        while !tg.sent_messages(token).iter().any(|m| m.text == text) {
            assert!(started.elapsed() < GIVE_UP, "bot {i} never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let times = tg
            .sent_messages(token)
            .iter()
            .filter(|m| m.text == text)
            .count();
        assert_eq!(times, 1, "bot {i} answered {times} times");
    }
    let conflicts = tg
        .requests()
        .iter()
        .filter(|r| r.status() == Some(409))
        .count();
    b.terminate().await;
    c.terminate().await;
    drop(a);
    let _ = conn
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .await;
    vec![
        spread.as_secs_f64(),
        gap.as_secs_f64(),
        repolled.as_secs_f64(),
        conflicts as f64,
    ]
}
