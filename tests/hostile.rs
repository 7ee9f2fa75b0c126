//! Hostile surroundings, running the real binary against the fake Telegram:
//! a flood of idle connections to the status endpoint at the usual
//! file-descriptor limit must not starve the bots, nor the endpoint itself.

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{PROMPT, assert_echoes, command, spawn_reader, supervisor_table};
use fake_telegram::Fault;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::watch;

const TOKEN: &str = "1313:token-of-the-echo-bot";
/// The soft and hard descriptor limit the daemon runs under: the usual
/// default on Linux.
const FD_LIMIT: libc::rlim_t = 1024;
const IDLE_CONNECTIONS: usize = 2000;

/// The daemon's printed lines and a counter that moves with each.
struct Lines {
    lines: Arc<Mutex<Vec<String>>>,
    count: watch::Receiver<usize>,
}

impl Lines {
    /// Waits for a line containing `needle`, at most `timeout`.
    async fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let found = tokio::time::timeout(timeout, async {
            loop {
                if let Some(line) = self
                    .lines
                    .lock()
                    .expect("lines lock")
                    .iter()
                    .find(|l| l.contains(needle))
                {
                    return line.clone();
                }
                if self.count.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| {
            panic!(
                "no line containing {needle:?} within {timeout:?}; output:\n{}",
                self.lines.lock().expect("lines lock").join("\n")
            )
        })
    }
}

/// Raises the test process's soft descriptor limit to at least `wanted`
/// (within its hard limit).
fn raise_own_fd_limit(wanted: libc::rlim_t) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit with pointers to a valid local.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit), 0);
        limit.rlim_cur = limit.rlim_cur.max(wanted.min(limit.rlim_max));
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit), 0);
    }
}

#[tokio::test]
async fn two_thousand_idle_connections_at_1024_descriptors_starve_nothing() {
    // The test itself needs more than 2,000 descriptors.
    raise_own_fd_limit(IDLE_CONNECTIONS as libc::rlim_t + 512);
    let tg = fake_telegram::FakeTelegram::start()
        .await
        .expect("start the fake");
    tg.add_bot(TOKEN, "echo_bot");
    let config = common::ConfigDir::new(&format!(
        "{}[bot.echo]\nkind = \"echo\"\ntoken_env = \"E_TOKEN\"\n",
        supervisor_table(&tg.url(), "[supervisor.http]\nlisten = \"127.0.0.1:0\"\n")
    ));
    let path = config.path.to_str().expect("a UTF-8 path");
    let mut cmd = command(&["--config", path], &[("E_TOKEN", TOKEN)]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: only setrlimit (async-signal-safe) runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: FD_LIMIT,
                rlim_max: FD_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = cmd.spawn().expect("start botvisor");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, count) = watch::channel(0usize);
    let tx = Arc::new(tx);
    spawn_reader(
        child.stdout.take().expect("stdout"),
        "",
        lines.clone(),
        tx.clone(),
    );
    spawn_reader(
        child.stderr.take().expect("stderr"),
        "stderr: ",
        lines.clone(),
        tx,
    );
    let mut lines = Lines { lines, count };
    let line = lines.wait_for("status endpoint listening", PROMPT).await;
    let addr = line
        .split_whitespace()
        .find_map(|word| word.strip_prefix("addr="))
        .unwrap_or_else(|| panic!("no addr= in {line:?}"))
        .to_owned();
    assert_echoes(&tg, TOKEN, 7, "before the flood").await;

    // 2,000 connections that never send a byte, all held open by the test.
    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    let mut hanging = 0;
    for _ in 0..IDLE_CONNECTIONS {
        // A connect that hangs means a full listen queue; the kernel sends
        // the SYN again after 1 s, so one may pass a moment's overflow. Five
        // in a row mean the daemon has stopped accepting: waiting longer
        // shows nothing more.
        match tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(&addr)).await {
            Ok(Ok(stream)) => {
                idle.push(stream);
                hanging = 0;
            }
            Ok(Err(_)) => {}
            Err(_) => {
                hanging += 1;
                if hanging == 5 {
                    break;
                }
            }
        }
    }
    eprintln!("{} idle connections open", idle.len());
    assert!(idle.len() > 1000, "only {} connections", idle.len());
    lines
        .wait_for("the status endpoint has all its connections open", PROMPT)
        .await;

    // The bot still answers, at once.
    let started = Instant::now();
    for n in 0..5 {
        assert_echoes(&tg, TOKEN, 7, &format!("during the flood {n}")).await;
    }
    eprintln!("5 echoes during the flood: {:?}", started.elapsed());
    // The endpoint answers a fresh connection once the idle ones time out.
    let started = Instant::now();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(2))
        .build()
        .expect("a client");
    let body = loop {
        if let Ok(response) = client.get(format!("http://{addr}/healthz")).send().await
            && response.status() == 200
        {
            break response.text().await.expect("a body");
        }
        assert!(
            started.elapsed() < PROMPT,
            "/healthz did not answer within {PROMPT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("/healthz answered after {:?}", started.elapsed());
    assert!(body.starts_with("ok: 1 bot(s)"), "{body}");
    drop(idle);
    assert_echoes(&tg, TOKEN, 7, "after the flood").await;

    // SAFETY: kill(2) on the child we spawned.
    let pid = i32::try_from(child.id().expect("running")).expect("a pid");
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = tokio::time::timeout(PROMPT, child.wait())
        .await
        .expect("exits in time")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
}

/// Reads from `stream` until the daemon closes it (end of file or an
/// error), while `trickle` sends one byte of a never-ending request head
/// every 200 ms when set. Returns how long the connection lived.
async fn lifetime(mut stream: TcpStream, trickle: bool) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
        .iter()
        .chain(std::iter::repeat(&b'a'));
    let mut head = head.copied();
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            },
            () = tokio::time::sleep(Duration::from_millis(200)), if trickle => {
                let byte = [head.next().unwrap_or(b'a')];
                if stream.write_all(&byte).await.is_err() {
                    return started.elapsed();
                }
            }
        }
        assert!(
            started.elapsed() < PROMPT,
            "the connection is still open after {PROMPT:?}"
        );
    }
}

#[tokio::test]
async fn slow_and_idle_clients_are_cut_off() {
    let tg = fake_telegram::FakeTelegram::start()
        .await
        .expect("start the fake");
    tg.add_bot(TOKEN, "echo_bot");
    let config = common::ConfigDir::new(&format!(
        "{}[bot.echo]\nkind = \"echo\"\ntoken_env = \"E_TOKEN\"\n",
        supervisor_table(&tg.url(), "[supervisor.http]\nlisten = \"127.0.0.1:0\"\n")
    ));
    let mut daemon = common::Daemon::start(&config.path, &[("E_TOKEN", TOKEN)]);
    let line = daemon
        .wait_for_line("status endpoint listening", PROMPT)
        .await;
    let addr = line
        .split_whitespace()
        .find_map(|word| word.strip_prefix("addr="))
        .unwrap_or_else(|| panic!("no addr= in {line:?}"))
        .to_owned();

    // A slowloris: a request head one byte every 200 ms, never finished.
    let slow = TcpStream::connect(&addr).await.expect("connect");
    // A kept-alive connection that goes quiet after one request.
    let mut idle = TcpStream::connect(&addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send a request");
    let mut answer = vec![0u8; 4096];
    let n = idle.read(&mut answer).await.expect("an answer");
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    // A connection that never says anything.
    let silent = TcpStream::connect(&addr).await.expect("connect");

    let (slow, idle, silent) = tokio::join!(
        lifetime(slow, true),
        lifetime(idle, false),
        lifetime(silent, false)
    );
    eprintln!("closed after: slowloris {slow:?}, idle keep-alive {idle:?}, silent {silent:?}");
    // Cut off at their timeouts (5 s for a request, 10 s idle), not before.
    assert!(slow >= Duration::from_secs(4), "{slow:?}");
    assert!(silent >= Duration::from_secs(4), "{silent:?}");
    assert!(idle >= Duration::from_secs(9), "{idle:?}");
    assert_echoes(&tg, TOKEN, 8, "still answering").await;
    daemon.stop_cleanly().await;
}

/// Long enough for the scripted faults to play out, with every backoff.
const FAULTS_PLAYED: Duration = Duration::from_secs(60);

/// Every piece of `secret` eight characters long: a leak of part of a
/// token is a leak too.
fn pieces(secret: &str) -> Vec<&str> {
    (0..=secret.len().saturating_sub(8))
        .map(|at| &secret[at..at + 8])
        .collect()
}

/// Issue 13: an upstream whose error bodies echo the request path, token
/// included, percent-encoded (`%3A`, `%3a`) and JSON-escaped (`\u003a`),
/// for getMe and getUpdates, 4xx and 5xx, JSON and HTML. At trace level,
/// with log files, the status endpoint, alerts and `/durum` on, no piece
/// of either token's secret reaches any output.
#[tokio::test]
async fn error_bodies_echoing_the_token_leak_no_part_of_it() {
    const OPERATOR: u64 = 4_242;
    // Built at run time, of Telegram's shape (a 35-character secret).
    let secret_a = ["AAHq", "Zx81kPwv4TsN0mYc", "J3dLr7FeBg2UoWi"].concat();
    let secret_b = ["AAGm", "Tr5QeW9yUi0oPa2s", "D4fG6hJ8kL1zXcV"].concat();
    let token_a = format!("{}:{secret_a}", 5_550_123);
    let token_b = format!("{}:{secret_b}", 5_550_124);
    let tg = fake_telegram::FakeTelegram::start()
        .await
        .expect("start the fake");
    tg.add_bot(&token_a, "a_bot");
    tg.add_bot(&token_b, "b_bot");
    let operator = fake_telegram::User::new(OPERATOR, "Operator");
    tg.add_user(&operator);
    tg.add_chat(&fake_telegram::Chat::private(&operator));
    for fault in [
        Fault::echo_path(502, "Bad Gateway"),
        Fault::echo_path_page(400),
        // Counted failures: with max_restarts = 1 the bot parks.
        Fault::echo_path(400, "Bad Request: not today").times(2),
    ] {
        tg.add_fault(&token_a, "getMe", fault);
    }
    for fault in [
        Fault::echo_path(500, "Internal Server Error"),
        Fault::echo_path_page(503),
        Fault::echo_path(400, "Bad Request: wrong offset"),
    ] {
        tg.add_fault(&token_a, "getUpdates", fault);
    }
    let config = common::ConfigDir::new(&format!(
        "{}[bot.a]\nkind = \"echo\"\ntoken_env = \"A_TOKEN\"\n\
         [bot.a.restart]\nmax_restarts = 1\npark_for = \"3s\"\n\
         [bot.b]\nkind = \"echo\"\ntoken_env = \"B_TOKEN\"\n",
        supervisor_table(
            &tg.url(),
            &format!(
                "log_dir = \"logs\"\noperators = [{OPERATOR}]\n\
                 [supervisor.http]\nlisten = \"127.0.0.1:0\"\n\
                 [supervisor.alerts]\nchat_id = {OPERATOR}\nvia_bot = \"b\"\n"
            )
        )
    ));
    let mut events = tg.subscribe();
    let mut daemon = common::Daemon::start(
        &config.path,
        &[
            ("A_TOKEN", token_a.as_str()),
            ("B_TOKEN", token_b.as_str()),
            ("RUST_LOG", "trace"),
        ],
    );
    let base = common::endpoint(&mut daemon).await;

    // Every view, read each time the fake sees a request: a worker sets its
    // state before its next attempt, so each failure's reason is read.
    let (stop, mut stopped) = watch::channel(false);
    let sampler = {
        let base = base.clone();
        tokio::spawn(async move {
            let mut seen = String::new();
            loop {
                for path in ["/status", "/healthz", "/metrics"] {
                    seen.push_str(&common::get(&base, path).await.1);
                    seen.push('\n');
                }
                tokio::select! {
                    event = events.recv() => {
                        if matches!(event, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                            return seen;
                        }
                    }
                    _ = stopped.changed() => return seen,
                }
            }
        })
    };

    // The bot is parked by an echoing 400; its reason is on the board, in
    // /durum and in an alert.
    let parked = common::wait_for_status(&base, "a", FAULTS_PLAYED, |s| {
        s["state"] == "parked"
            && s["reason"]
                .as_str()
                .is_some_and(|r| r.contains("upstream request"))
    })
    .await;
    let mut everything = format!("{parked}\n");
    let private = fake_telegram::Chat::private(&operator);
    tg.inject_message(&token_b, &private, &operator, "/durum");
    let durum = tg
        .wait_for_sent(&token_b, 1, PROMPT)
        .await
        .expect("an answer to /durum");
    let alert = loop {
        let sent = tg.sent_messages(&token_b);
        if let Some(alert) = sent.iter().find(|m| m.text.contains("a is parked")) {
            break alert.text.clone();
        }
        tg.wait_for_sent(&token_b, sent.len() + 1, PROMPT)
            .await
            .expect("an alert that a is parked");
    };
    assert!(alert.contains("upstream request"), "{alert}");
    for message in &durum {
        everything.push_str(&message.text);
        everything.push('\n');
    }
    assert!(everything.contains("upstream request"), "{everything}");
    everything.push_str(&alert);

    // Then the getUpdates faults; the bot answers once they are over.
    assert_echoes(&tg, &token_a, 9, "after the faults").await;
    let _ = stop.send(true);
    let samples = sampler.await.expect("the sampler");
    assert!(samples.contains("upstream request"), "{samples}");
    everything.push_str(&samples);
    for message in tg.sent_messages(&token_b) {
        everything.push_str(&message.text);
        everything.push('\n');
    }
    daemon.stop_cleanly().await;
    everything.push_str(&daemon.output());
    let logs = config.folder().join("logs");
    let mut files = 0;
    for entry in std::fs::read_dir(&logs).expect("the log folder exists") {
        let path = entry.expect("a log file").path();
        everything.push_str(&std::fs::read_to_string(&path).expect("read a log file"));
        files += 1;
    }
    assert!(files > 0, "no log file in {}", logs.display());
    for secret in [&secret_a, &secret_b] {
        for piece in pieces(secret) {
            if let Some(line) = everything.lines().find(|l| l.contains(piece)) {
                panic!("a piece of a token's secret ({piece}) leaked:\n{line}");
            }
        }
    }
    // The run went through every echo, at trace level.
    for expected in [
        "TRACE",
        "getMe failed",
        "getUpdates failed",
        "upstream request /bot<redacted>/getMe",
        "upstream request /bot<redacted>/getUpdates",
    ] {
        assert!(
            everything.contains(expected),
            "expected {expected:?} somewhere in the output:\n{everything}"
        );
    }
}

/// A server that answers with 10 MB (a body that is no list of updates,
/// full of a user's text, then 10 MB error descriptions until the bot
/// parks): every view stays a few KB, and the user's text appears nowhere.
#[tokio::test]
async fn ten_megabyte_answers_stay_out_of_every_view() {
    const OPERATOR: u64 = 4_343;
    const LIMIT: usize = 4 << 10;
    let token_a = format!("{}:{}", 5_550_201, "token-of-the-flooded-bot");
    let token_b = format!("{}:{}", 5_550_202, "token-of-the-alerting-bot");
    let tg = fake_telegram::FakeTelegram::start()
        .await
        .expect("start the fake");
    tg.add_bot(&token_a, "a_bot");
    tg.add_bot(&token_b, "b_bot");
    let operator = fake_telegram::User::new(OPERATOR, "Operator");
    tg.add_user(&operator);
    tg.add_chat(&fake_telegram::Chat::private(&operator));
    let private = "özel mesaj: telefonum 0555 ".repeat(10 << 20 >> 5);
    let server = "sunucu hatası ".repeat(10 << 20 >> 4);
    tg.add_fault(
        &token_a,
        "getUpdates",
        Fault::ok(serde_json::json!({ "message": { "text": private } })),
    );
    tg.add_fault(
        &token_a,
        "getUpdates",
        Fault::api_error(400, format!("Bad Request: {server}")).times(2),
    );
    let config = common::ConfigDir::new(&format!(
        "{}[bot.a]\nkind = \"echo\"\ntoken_env = \"A_TOKEN\"\n\
         [bot.a.restart]\nmax_restarts = 1\npark_for = \"60s\"\n\
         [bot.b]\nkind = \"echo\"\ntoken_env = \"B_TOKEN\"\n",
        supervisor_table(
            &tg.url(),
            &format!(
                "log_dir = \"logs\"\noperators = [{OPERATOR}]\n\
                 [supervisor.http]\nlisten = \"127.0.0.1:0\"\n\
                 [supervisor.alerts]\nchat_id = {OPERATOR}\nvia_bot = \"b\"\n"
            )
        )
    ));
    let mut daemon = common::Daemon::start(
        &config.path,
        &[
            ("A_TOKEN", token_a.as_str()),
            ("B_TOKEN", token_b.as_str()),
            ("RUST_LOG", "trace"),
        ],
    );
    let base = common::endpoint(&mut daemon).await;
    common::wait_for_status(&base, "a", PROMPT, |s| s["state"] == "parked").await;
    let mut views: Vec<(String, String)> = Vec::new();
    for path in ["/status", "/healthz"] {
        views.push((path.to_owned(), common::get(&base, path).await.1));
    }
    // /metrics grows with the bots and their states: each line is bounded.
    for line in common::get(&base, "/metrics").await.1.lines() {
        views.push(("a /metrics line".to_owned(), line.to_owned()));
    }
    let chat = fake_telegram::Chat::private(&operator);
    tg.inject_message(&token_b, &chat, &operator, "/durum");
    tg.wait_for_request_matching("the /durum answer", PROMPT, |r| {
        r.method == "sendmessage" && r.body["text"].as_str().is_some_and(|t| t.contains("echo"))
    })
    .await
    .expect("an answer to /durum");
    tg.wait_for_request_matching("the parked alert", PROMPT, |r| {
        r.method == "sendmessage"
            && r.body["text"]
                .as_str()
                .is_some_and(|t| t.contains("a is parked"))
    })
    .await
    .expect("an alert that a is parked");
    for message in &tg.sent_messages(&token_b) {
        views.push(("a message".to_owned(), message.text.clone()));
    }
    daemon.stop_cleanly().await;
    for line in daemon.output().lines() {
        views.push(("a printed line".to_owned(), line.to_owned()));
    }
    for entry in std::fs::read_dir(config.folder().join("logs")).expect("the log folder") {
        let text = std::fs::read_to_string(entry.expect("a log file").path()).expect("read");
        for line in text.lines() {
            views.push(("a log line".to_owned(), line.to_owned()));
        }
    }
    let mut server_text_shown = false;
    for (what, text) in &views {
        assert!(
            text.len() <= LIMIT,
            "{what} is {} bytes: {}",
            text.len(),
            &text[..text.floor_char_boundary(300)]
        );
        assert!(!text.contains("telefonum"), "{what} shows the user's text");
        server_text_shown |= text.contains("sunucu hatası");
    }
    assert!(
        server_text_shown,
        "the server's error is shown, as an excerpt"
    );
}

/// One answer of 100 updates: 5 the parser rejects and 5 repeated ids
/// beside 90 good ones. 90 distinct replies, no restart, and the next poll
/// is past all of them.
#[tokio::test]
async fn a_batch_with_rejected_and_repeated_updates_gets_ninety_replies() {
    let tg = fake_telegram::FakeTelegram::start()
        .await
        .expect("start the fake");
    tg.add_bot(TOKEN, "echo_bot");
    let mut good = Vec::new();
    for i in 0..90u64 {
        let user = fake_telegram::User::new(700 + i, "Aday");
        tg.inject_message(
            TOKEN,
            &fake_telegram::Chat::private(&user),
            &user,
            &format!("m{i}"),
        );
    }
    for update in tg.pending_updates(TOKEN) {
        good.push(update);
    }
    let highest = good
        .iter()
        .filter_map(|u| u["update_id"].as_i64())
        .max()
        .expect("ids");
    let mut batch = good.clone();
    let bad = |id: serde_json::Value| {
        let mut update = good[0].clone();
        update["update_id"] = id;
        update
    };
    batch.insert(10, bad(serde_json::json!(-1)));
    batch.insert(20, bad(serde_json::json!("7")));
    batch.insert(30, bad(serde_json::json!(7.5)));
    batch.insert(40, serde_json::json!({ "message": "no id" }));
    batch.insert(50, serde_json::json!(42));
    for i in 0..5 {
        batch.insert(60 + i * 5, good[i * 7].clone());
    }
    assert_eq!(batch.len(), 100);
    tg.add_fault(
        TOKEN,
        "getUpdates",
        Fault::ok(serde_json::Value::Array(batch)),
    );
    let config = common::ConfigDir::new(&format!(
        "{}[bot.e]\nkind = \"echo\"\ntoken_env = \"E_TOKEN\"\n",
        supervisor_table(&tg.url(), "[supervisor.http]\nlisten = \"127.0.0.1:0\"\n")
    ));
    let mut daemon = common::Daemon::start(&config.path, &[("E_TOKEN", TOKEN)]);
    let base = common::endpoint(&mut daemon).await;
    tg.wait_for_request_matching("a poll past the batch", PROMPT, |r| {
        r.method == "getupdates" && r.body["offset"].as_i64() == Some(highest + 1)
    })
    .await
    .expect("the offset passes every update of the answer");
    tg.wait_for_sent(TOKEN, 90, PROMPT)
        .await
        .expect("90 replies");
    common::wait_for_status(&base, "e", PROMPT, |s| s["outbox"]["pending"] == 0).await;
    let status = common::bot_status(&base, "e").await;
    assert_eq!(status["restarts"], 0, "{status}");
    assert_eq!(status["state"], "running", "{status}");
    daemon.stop_cleanly().await;
    let mut texts: Vec<String> = tg
        .sent_messages(TOKEN)
        .into_iter()
        .map(|m| m.text)
        .collect();
    texts.sort();
    let mut expected: Vec<String> = (0..90).map(|i| format!("m{i}")).collect();
    expected.sort();
    assert_eq!(texts, expected, "each good update once");
}
