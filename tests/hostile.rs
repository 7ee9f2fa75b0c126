//! Hostile surroundings, running the real binary against the fake Telegram:
//! a flood of idle connections to the status endpoint at the usual
//! file-descriptor limit must not starve the bots, nor the endpoint itself.

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{PROMPT, assert_echoes, command, spawn_reader, supervisor_table};
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
