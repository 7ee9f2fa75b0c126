//! The fleet (issue 22): instances on one PostgreSQL share the bots by
//! weight, hand bots over without a gap or a repeat, take a dead
//! instance's bots within the lease TTL, and a paused instance that lost
//! its bots sends and stores nothing for them. Real binaries, the fake
//! Telegram and the real PostgreSQL that `.ci/run` starts; without
//! `TEST_DATABASE_URL` the tests say they were skipped.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{ConfigDir, Daemon, HTTP, PROMPT, TestDatabase, endpoint, get, supervisor_table};
use fake_telegram::{BotInfo, Chat, FakeTelegram, User};

/// Short leases, so that the faults play out in seconds.
const TTL: Duration = Duration::from_secs(3);
const FLEET: &str = "[supervisor.fleet]\nlease_ttl = \"3s\"\n";

fn token(i: usize) -> String {
    format!("{}:token-of-fleet-bot-{i}", 2000 + i)
}

/// `bots` echo bots (f1…) on PostgreSQL, with a status endpoint.
fn config_text(api_url: &str, bots: usize) -> String {
    let mut text = supervisor_table(api_url, HTTP);
    text.push_str(FLEET);
    for i in 1..=bots {
        text.push_str(&format!(
            "[bot.f{i}]\nkind = \"echo\"\ntoken_env = \"F{i}\"\n"
        ));
    }
    text
}

struct Fleet {
    tg: FakeTelegram,
    bots: Vec<BotInfo>,
    config: ConfigDir,
    vars: Vec<(String, String)>,
    /// Every message sent, by bot index: the texts, to check each is
    /// answered exactly once.
    sent: BTreeMap<usize, Vec<String>>,
    next: u64,
}

impl Fleet {
    async fn new(db: &TestDatabase, bots: usize) -> Fleet {
        let tg = FakeTelegram::start().await.expect("start the fake");
        let infos: Vec<BotInfo> = (1..=bots)
            .map(|i| tg.add_bot(&token(i), &format!("f{i}_bot")))
            .collect();
        let config = ConfigDir::new(&config_text(&tg.url(), bots));
        let mut vars: Vec<(String, String)> =
            (1..=bots).map(|i| (format!("F{i}"), token(i))).collect();
        vars.push(("DATABASE_URL".to_owned(), db.url.clone()));
        vars.push(("RUST_LOG".to_owned(), "botvisor=debug,info".to_owned()));
        Fleet {
            tg,
            bots: infos,
            config,
            vars,
            sent: BTreeMap::new(),
            next: 1,
        }
    }

    /// Starts an instance: the daemon and its status endpoint.
    async fn start(&self) -> (Daemon, String) {
        let vars: Vec<(&str, &str)> = self
            .vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut daemon = Daemon::start(&self.config.path, &vars);
        let base = endpoint(&mut daemon).await;
        (daemon, base)
    }

    /// Sends one new message to every bot.
    fn send_round(&mut self) {
        for (i, bot) in self.bots.iter().enumerate() {
            let n = self.next;
            self.next += 1;
            let user = User::new(100 + n, "Tester");
            let text = format!("message {n} to f{}", i + 1);
            self.tg
                .inject_message(&bot.token, &Chat::private(&user), &user, &text);
            self.sent.entry(i).or_default().push(text);
        }
    }

    /// Waits until every message sent was answered, then checks that each
    /// was answered exactly once.
    async fn assert_each_answered_once(&self) {
        for (i, texts) in &self.sent {
            let token = &self.bots[*i].token;
            let started = Instant::now();
            loop {
                let sent = self.tg.sent_messages(token);
                if texts.iter().all(|t| sent.iter().any(|m| &m.text == t)) {
                    break;
                }
                assert!(
                    started.elapsed() < PROMPT * 2,
                    "bot f{} never answered some of {texts:?}; it sent {:?}",
                    i + 1,
                    sent.iter().map(|m| &m.text).collect::<Vec<_>>()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        for (i, texts) in &self.sent {
            let sent = self.tg.sent_messages(&self.bots[*i].token);
            for text in texts {
                let times = sent.iter().filter(|m| &m.text == text).count();
                assert_eq!(times, 1, "{text:?} was answered {times} times");
            }
        }
    }

    fn conflicts(&self) -> usize {
        self.tg
            .requests()
            .iter()
            .filter(|r| r.status() == Some(409))
            .count()
    }
}

/// Which instances (by index into `bases`) run each bot, by name.
async fn running(bases: &[&str]) -> BTreeMap<String, Vec<usize>> {
    let mut running: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, base) in bases.iter().enumerate() {
        let (code, body) = get(base, "/status").await;
        assert_eq!(code, 200, "{body}");
        let status: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        for bot in status["bots"].as_array().into_iter().flatten() {
            let name = bot["name"].as_str().unwrap_or_default().to_owned();
            let entry = running.entry(name).or_default();
            if bot["state"] == "running" {
                entry.push(i);
            }
        }
    }
    running
}

/// Waits until every one of `bots` bots runs on exactly one of `bases`,
/// and each instance runs between `low` and `high` of them; never sees a
/// bot running on two instances. How long it took.
async fn wait_for_spread(bases: &[&str], bots: usize, low: usize, high: usize) -> Duration {
    let started = Instant::now();
    loop {
        let running = running(bases).await;
        for (bot, on) in &running {
            assert!(on.len() <= 1, "{bot} runs on instances {on:?}");
        }
        let mut per_instance = vec![0usize; bases.len()];
        for on in running.values() {
            for i in on {
                per_instance[*i] += 1;
            }
        }
        let all = running.values().filter(|on| on.len() == 1).count() == bots;
        if all && per_instance.iter().all(|n| (low..=high).contains(n)) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < PROMPT * 2,
            "the bots never spread {low}..={high} per instance: {running:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn three_instances_share_the_bots_and_take_a_killed_ones_within_the_ttl() {
    let Some(db) = TestDatabase::create("three_instances_share_the_bots").await else {
        return;
    };
    let mut fleet = Fleet::new(&db, 6).await;
    let (mut first, a) = fleet.start().await;
    let took = wait_for_spread(&[&a], 6, 6, 6).await;
    eprintln!("one instance: all 6 bots running after {took:?}");
    fleet.send_round();

    // Two more join: each ends with 2 of the 6, handed over without a
    // gap or a repeat.
    let (mut second, b) = fleet.start().await;
    fleet.send_round();
    let (mut third, c) = fleet.start().await;
    fleet.send_round();
    let took = wait_for_spread(&[&a, &b, &c], 6, 2, 2).await;
    eprintln!("three instances: 2 bots each {took:?} after the third started");
    assert!(
        took <= TTL * 2 + Duration::from_secs(2),
        "the spread took {took:?}"
    );
    fleet.send_round();
    fleet.assert_each_answered_once().await;

    // The fleet part of /status: three instances, this one marked, 2 bots
    // each with their lease generation, none moving (it is a second old
    // at most: looked at again until it settles).
    let started = Instant::now();
    let body = loop {
        let (_, body) = get(&a, "/status").await;
        let status: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let fleet = &status["fleet"];
        let instances = fleet["instances"].as_array().cloned().unwrap_or_default();
        let settled = instances.len() == 3
            && fleet["moving"].as_array().is_some_and(Vec::is_empty)
            && instances
                .iter()
                .all(|i| i["bots"].as_array().map(Vec::len) == Some(2));
        if settled {
            break body;
        }
        assert!(
            started.elapsed() < PROMPT,
            "the fleet never settled: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let status: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let instances = status["fleet"]["instances"].as_array().expect("instances");
    assert_eq!(
        instances.iter().filter(|i| i["this"] == true).count(),
        1,
        "{body}"
    );
    for instance in instances {
        assert!(
            instance["bots"][0]["generation"].as_i64() >= Some(1),
            "{body}"
        );
        assert_eq!(instance["share"], 2, "{body}");
    }
    let (_, metrics) = get(&a, "/metrics").await;
    assert!(metrics.contains("botvisor_fleet_instances 3"), "{metrics}");
    assert!(metrics.contains("botvisor_fleet_bots_held 2"), "{metrics}");
    assert!(
        metrics.contains("botvisor_fleet_handovers_total "),
        "{metrics}"
    );

    // kill -9 of the first: its bots run on the other two within the TTL
    // plus 5 s, and what was sent meanwhile is answered once.
    first.signal(libc::SIGKILL);
    let killed = Instant::now();
    assert_eq!(first.wait_exit(PROMPT).await.code(), None);
    fleet.send_round();
    let took = wait_for_spread(&[&b, &c], 6, 3, 3).await;
    let took = took.max(killed.elapsed());
    eprintln!("kill -9: its bots polled again after {took:?}");
    assert!(took <= TTL + Duration::from_secs(5), "took {took:?}");
    fleet.send_round();
    fleet.assert_each_answered_once().await;
    assert_eq!(fleet.conflicts(), 0, "two instances polled one bot");

    second.stop_cleanly().await;
    third.stop_cleanly().await;
    db.drop_database().await;
}

#[tokio::test]
async fn a_rolling_restart_neither_loses_nor_repeats_a_reply() {
    let Some(db) = TestDatabase::create("a_rolling_restart").await else {
        return;
    };
    let mut fleet = Fleet::new(&db, 4).await;
    let (mut old_a, a) = fleet.start().await;
    let (mut old_b, b) = fleet.start().await;
    wait_for_spread(&[&a, &b], 4, 2, 2).await;
    fleet.send_round();

    // As Heroku restarts dynos: a new one starts, then the old one gets
    // SIGTERM; messages keep coming throughout.
    let (mut new_a, c) = fleet.start().await;
    fleet.send_round();
    wait_for_spread(&[&a, &b, &c], 4, 1, 2).await;
    old_a.signal(libc::SIGTERM);
    fleet.send_round();
    assert_eq!(old_a.wait_exit(PROMPT).await.code(), Some(0));
    let gap = wait_for_spread(&[&b, &c], 4, 2, 2).await;
    eprintln!("first instance replaced; spread again after {gap:?}");
    fleet.send_round();

    let (mut new_b, d) = fleet.start().await;
    fleet.send_round();
    old_b.signal(libc::SIGTERM);
    fleet.send_round();
    assert_eq!(old_b.wait_exit(PROMPT).await.code(), Some(0));
    wait_for_spread(&[&c, &d], 4, 2, 2).await;
    fleet.send_round();
    fleet.assert_each_answered_once().await;
    assert_eq!(fleet.conflicts(), 0, "two instances polled one bot");

    new_a.stop_cleanly().await;
    new_b.stop_cleanly().await;
    db.drop_database().await;
}

/// A TCP proxy to PostgreSQL that the test can cut: every connection
/// through it is dropped and new ones are closed at once, until restored.
struct StoreLink {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Cancelled to drop every connection open now.
    open: std::sync::Arc<std::sync::Mutex<tokio_util::sync::CancellationToken>>,
}

impl StoreLink {
    async fn start(target: std::net::SocketAddr) -> StoreLink {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("an address").port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = std::sync::Arc::new(std::sync::Mutex::new(
            tokio_util::sync::CancellationToken::new(),
        ));
        let (cut_flag, open_conns) = (cut.clone(), open.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if cut_flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let stop = open_conns.lock().expect("the lock").clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        () = stop.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        StoreLink { port, cut, open }
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut open = self.open.lock().expect("the lock");
        open.cancel();
        *open = tokio_util::sync::CancellationToken::new();
    }

    fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_store_unreachable_for_a_while_neither_doubles_nor_loses_and_the_shares_return() {
    let Some(db) = TestDatabase::create("a_store_unreachable").await else {
        return;
    };
    // The instances reach the database through a link the test cuts.
    let mut url = url::Url::parse(&db.url).expect("a URL");
    let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
    let target: std::net::SocketAddr =
        tokio::net::lookup_host((host.as_str(), url.port().unwrap_or(5432)))
            .await
            .expect("resolve the database")
            .next()
            .expect("an address");
    let link = StoreLink::start(target).await;
    url.set_host(Some("127.0.0.1")).expect("a host");
    url.set_port(Some(link.port)).expect("a port");
    let mut fleet = Fleet::new(&db, 4).await;
    for (key, value) in &mut fleet.vars {
        if key == "DATABASE_URL" {
            *value = url.to_string();
        }
    }
    let (mut first, a) = fleet.start().await;
    let (mut second, b) = fleet.start().await;
    wait_for_spread(&[&a, &b], 4, 2, 2).await;
    fleet.send_round();
    fleet.assert_each_answered_once().await;

    // Unreachable for four lease periods: the leases lapse, every bot
    // stops, none runs on two instances; what comes meanwhile waits.
    link.cut();
    let cut = Instant::now();
    let outage = TTL * 4;
    let mut rounds = 0;
    while cut.elapsed() < outage {
        for (bot, on) in running(&[&a, &b]).await {
            assert!(on.len() <= 1, "{bot} runs on {on:?} during the outage");
        }
        if rounds < 3 {
            fleet.send_round();
            rounds += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stopped = running(&[&a, &b]).await;
    assert!(
        stopped.values().all(Vec::is_empty),
        "bots still polling without their leases: {stopped:?}"
    );
    link.restore();
    let back = Instant::now();
    wait_for_spread(&[&a, &b], 4, 2, 2).await;
    let took = back.elapsed();
    eprintln!("the store back: shares again after {took:?}");
    assert!(took <= TTL * 2 + Duration::from_secs(3), "took {took:?}");
    fleet.send_round();
    fleet.assert_each_answered_once().await;
    assert_eq!(fleet.conflicts(), 0, "two instances polled one bot");

    first.stop_cleanly().await;
    second.stop_cleanly().await;
    db.drop_database().await;
}

#[tokio::test]
async fn a_paused_instance_sends_and_stores_nothing_for_the_bots_it_lost() {
    let Some(db) = TestDatabase::create("a_paused_instance").await else {
        return;
    };
    let mut fleet = Fleet::new(&db, 2).await;
    let (mut paused, a) = fleet.start().await;
    let (mut other, b) = fleet.start().await;
    wait_for_spread(&[&a, &b], 2, 1, 1).await;
    fleet.send_round();
    fleet.assert_each_answered_once().await;

    // SIGSTOP past the TTL: the other instance takes both bots, and
    // answers what comes meanwhile.
    paused.signal(libc::SIGSTOP);
    let stopped = Instant::now();
    fleet.send_round();
    let took = wait_for_spread(&[&b], 2, 2, 2).await;
    eprintln!("the paused instance's bot moved after {took:?}");
    assert!(
        stopped.elapsed() <= TTL + Duration::from_secs(5),
        "took {:?}",
        stopped.elapsed()
    );
    fleet.assert_each_answered_once().await;

    // Woken up, it knows it lost the bot: no send, no store, and it says so.
    paused.signal(libc::SIGCONT);
    paused.wait_for_line("lost the lease", PROMPT).await;
    fleet.send_round();
    fleet.send_round();
    fleet.assert_each_answered_once().await;
    // It takes its share back through a handover, still exactly once.
    wait_for_spread(&[&a, &b], 2, 1, 1).await;
    fleet.send_round();
    fleet.assert_each_answered_once().await;

    paused.stop_cleanly().await;
    other.stop_cleanly().await;
    db.drop_database().await;
}

/// Fencing in the store: once another instance took the bot, every write
/// under the old lease is refused inside its own transaction, and nothing
/// of it is stored; the new holder's writes go through.
#[tokio::test]
async fn a_write_under_a_lost_lease_is_refused_in_its_transaction() {
    use botvisor::store::{
        BotStore, InstanceInfo, Leases, OutboxCommit, Store, StoreError, StoreSpec,
    };
    use sqlx::{Connection, Executor};
    let Some(db) = TestDatabase::create("a_write_under_a_lost_lease").await else {
        return;
    };
    let spec = StoreSpec::Postgres(db.url.clone());
    let store = Store::open(&spec).await.expect("open the store");
    let instance = |id: &str| InstanceInfo {
        id: id.to_owned(),
        host: "test".to_owned(),
        started_at: 0,
        weight: 1,
    };
    let a = Leases::for_store(&spec, instance("a"), TTL).expect("leases");
    let b = Leases::for_store(&spec, instance("b"), TTL).expect("leases");
    for leases in [&a, &b] {
        let wanted = std::collections::HashSet::from(["77".to_owned()]);
        leases.fleet().expect("a fleet store").set_plan(wanted, &[]);
    }
    let lease_a = a.try_acquire("77").await.expect("try").expect("free");
    assert!(
        b.try_acquire("77").await.expect("try").is_none(),
        "a holds it"
    );
    let bot_a = BotStore::new(store.clone(), "77".to_owned(), lease_a.fence());
    assert!(
        bot_a
            .subscribe(-100)
            .await
            .expect("a writes while it holds")
    );

    // a's lease runs out unrenewed (a paused past the TTL); b takes it.
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    conn.execute("UPDATE bot_leases SET expires_at = 0 WHERE bot_id = '77'")
        .await
        .expect("expire the lease");
    let lease_b = b
        .try_acquire("77")
        .await
        .expect("try")
        .expect("expired: free");
    let fence_b = lease_b.fence().expect("fenced");
    assert_eq!(fence_b.generation(), 2, "the generation only grows");

    let refused = bot_a
        .subscribe(-200)
        .await
        .expect_err("a no longer holds it");
    assert!(
        matches!(refused, StoreError::Fenced { generation: 1 }),
        "{refused}"
    );
    let commit = OutboxCommit {
        offset: Some(5),
        ..OutboxCommit::default()
    };
    assert!(matches!(
        bot_a.commit(&commit).await,
        Err(StoreError::Fenced { .. })
    ));
    assert_eq!(
        store.offset("77").await.expect("read"),
        None,
        "nothing stored"
    );

    let bot_b = BotStore::new(store.clone(), "77".to_owned(), Some(fence_b));
    assert!(bot_b.subscribe(-300).await.expect("b writes"));
    let chats: Vec<i64> = bot_b
        .subscriptions()
        .await
        .expect("read")
        .iter()
        .map(|s| s.chat_id)
        .collect();
    assert_eq!(chats, [-100, -300]);
    drop(conn);
    db.drop_database().await;
}
