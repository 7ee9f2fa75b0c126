//! A process bot's program as botvisor supervises it: restarted by the
//! bot's policy when it exits, up to parking; its unconfirmed updates and
//! queued sends kept across its crash and botvisor's kill -9; stopped (and
//! killed at the deadline) with botvisor; gone with botvisor even at a
//! kill -9; restarted by SIGHUP only when its table changed; and its output
//! in botvisor's log, bounded, however much it prints.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::programs::{PROBE, alive, gone, pid_of, post, probe, program_pid, program_table, rss};
use common::{
    ConfigDir, Daemon, HTTP, PROMPT, bot_status, endpoint, supervisor_table, wait_for_status,
};
use fake_telegram::{Chat, FakeTelegram, User};
use serde_json::Value;

fn real_token(id: u64) -> String {
    format!("{id}:{}", "Kp7".repeat(12).get(..35).unwrap_or_default())
}

#[tokio::test]
async fn a_program_that_keeps_exiting_is_restarted_by_the_policy_then_parked() {
    let tg = FakeTelegram::start().await.expect("fake");
    let token = real_token(710_001);
    tg.add_bot(&token, "crashing_bot");
    let config = ConfigDir::new(&format!(
        "{}{}[bot.c.restart]\nmax_restarts = 2\nwindow = \"1m\"\npark_for = \"1h\"\n",
        supervisor_table(&tg.url(), HTTP),
        program_table("c", "echo going down; exit 3", "")
    ));
    let mut daemon = Daemon::start(&config.path, &[("C_TOKEN", &token)]);
    let base = endpoint(&mut daemon).await;
    let backing_off = wait_for_status(&base, "c", PROMPT, |s| {
        s["state"] == "backing_off"
            && s["reason"]
                .as_str()
                .is_some_and(|r| r.contains("exited with status 3"))
    })
    .await;
    assert!(
        backing_off["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("the program exited with status 3"),
        "{backing_off}"
    );
    let parked = wait_for_status(&base, "c", PROMPT, |s| s["state"] == "parked").await;
    assert!(
        parked["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("exited with status 3"),
        "{parked}"
    );
    assert_eq!(parked["restarts"], 3, "{parked}");
    assert_eq!(parked["process"]["starts"], 3, "{parked}");
    // Its output is in the log, under the bot's name.
    assert!(daemon.output().contains("bot=c") && daemon.output().contains("going down"));
    let (code, metrics) = common::get(&base, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("botvisor_process_starts_total{bot=\"c\"} 3"),
        "{metrics}"
    );
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn unconfirmed_updates_and_queued_sends_outlive_a_crash_of_the_program_and_a_kill_9_of_botvisor()
 {
    let tg = FakeTelegram::start().await.expect("fake");
    let token = real_token(710_002);
    tg.add_bot(&token, "durable_bot");
    let config = ConfigDir::new(&format!(
        "{}{}",
        supervisor_table(&tg.url(), HTTP),
        program_table("p", PROBE, "")
    ));
    let dir = config.folder().to_path_buf();
    let mut daemon = Daemon::start(&config.path, &[("P_TOKEN", &token)]);
    let base = endpoint(&mut daemon).await;
    let first = probe(&dir, 0).await;
    let (url, local) = (first.url().to_owned(), first.token().to_owned());
    let method = |m: &str| format!("{url}/bot{local}/{m}");
    let alice = User::new(42, "Alice");
    let chat = Chat::private(&alice);
    let ids: Vec<u32> = ["a", "b", "c"]
        .iter()
        .map(|text| tg.inject_message(&token, &chat, &alice, text))
        .collect();
    let offered = |answer: &Value| -> Vec<u64> {
        answer["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u["update_id"].as_u64())
            .collect()
    };
    let started = Instant::now();
    loop {
        let (_, answer) = post(&method("getUpdates"), serde_json::json!({"timeout": 2})).await;
        if offered(&answer).len() == 3 {
            break;
        }
        assert!(started.elapsed() < PROMPT, "never all three: {answer}");
    }
    // Confirm the first only; then the program crashes.
    let (_, answer) = post(
        &method("getUpdates"),
        serde_json::json!({"offset": ids[0] + 1}),
    )
    .await;
    assert_eq!(offered(&answer), [u64::from(ids[1]), u64::from(ids[2])]);
    let first = program_pid(&base, "p").await;
    // SAFETY: kill(2) on the child botvisor started, with a valid signal.
    unsafe { libc::kill(i32::try_from(first).unwrap_or(0), libc::SIGKILL) };
    // Restarted by the policy, with the same local token; the two
    // unconfirmed updates are offered again.
    let second = wait_for_status(&base, "p", PROMPT, |s| {
        pid_of(s).is_some_and(|p| p != first)
    })
    .await;
    assert_eq!(second["process"]["starts"], 2, "{second}");
    let again = probe(&dir, 1).await.token().to_owned();
    assert_eq!(again, local, "the local token changes only with botvisor");
    let (_, answer) = post(&method("getUpdates"), serde_json::json!({"timeout": 5})).await;
    assert_eq!(
        offered(&answer),
        [u64::from(ids[1]), u64::from(ids[2])],
        "{answer}"
    );

    // Three sends to one chat: one goes at once, two wait for the pacer.
    for text in ["bir", "iki", "üç"] {
        let url = method("sendMessage");
        tokio::spawn(
            async move { post(&url, serde_json::json!({"chat_id": 42, "text": text})).await },
        );
    }
    wait_for_status(&base, "p", PROMPT, |s| {
        s["outbox"]["pending"].as_u64().unwrap_or(0) >= 2 && s["messages_sent"] == 1
    })
    .await;
    // botvisor dies at once; its program with it.
    let program = program_pid(&base, "p").await;
    daemon.signal(libc::SIGKILL);
    daemon.wait_exit(PROMPT).await;
    gone(program, PROMPT).await;

    // A new botvisor: the same two updates are offered to its program, and
    // the queued sends go out, each once (at most the one in flight at the
    // kill again).
    let mut daemon = Daemon::start(&config.path, &[("P_TOKEN", &token)]);
    let _base = endpoint(&mut daemon).await;
    let third = probe(&dir, 2).await;
    let (url, local) = (third.url().to_owned(), third.token().to_owned());
    let (code, answer) = post(
        &format!("{url}/bot{local}/getUpdates"),
        serde_json::json!({"timeout": 10}),
    )
    .await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(
        offered(&answer),
        [u64::from(ids[1]), u64::from(ids[2])],
        "{answer}"
    );
    let sent = tg
        .wait_for_sent(&token, 3, PROMPT)
        .await
        .expect("all three");
    let texts: Vec<&str> = sent.iter().map(|m| m.text.as_str()).collect();
    for text in ["bir", "iki", "üç"] {
        let times = texts.iter().filter(|t| **t == text).count();
        assert!(
            (1..=2).contains(&times),
            "{text} went {times} times: {texts:?}"
        );
    }
    assert!(texts.len() <= 4, "{texts:?}");
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn sigterm_stops_the_programs_and_kills_those_that_ignore_it_within_the_deadline() {
    let tg = FakeTelegram::start().await.expect("fake");
    let (a, b) = (real_token(710_003), real_token(710_004));
    tg.add_bot(&a, "polite_bot");
    tg.add_bot(&b, "stubborn_bot");
    // shutdown_timeout 5s: the programs get what is left of it.
    let config = ConfigDir::new(&format!(
        "{}{}{}",
        supervisor_table(&tg.url(), HTTP),
        program_table("a", "exec sleep 600", ""),
        program_table(
            "b",
            "trap '' TERM; touch stubborn; sleep 600 & sleep 600; wait",
            ""
        )
    ));
    let mut daemon = Daemon::start(&config.path, &[("A_TOKEN", &a), ("B_TOKEN", &b)]);
    let base = endpoint(&mut daemon).await;
    let polite = program_pid(&base, "a").await;
    let stubborn = program_pid(&base, "b").await;
    // Once it ignores SIGTERM.
    let started = Instant::now();
    while !config.folder().join("stubborn").exists() {
        assert!(
            started.elapsed() < PROMPT,
            "the stubborn program never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_exit(Duration::from_secs(30)).await;
    let took = started.elapsed();
    assert_eq!(status.code(), Some(0), "{}", daemon.output());
    assert!(took < Duration::from_secs(6), "took {took:?}");
    assert!(
        !alive(polite) && !alive(stubborn),
        "a program outlived botvisor"
    );
    // The stubborn program's own child, in its process group, too.
    let output = daemon.output();
    assert!(
        output.contains("did not stop after SIGTERM; killing it"),
        "{output}"
    );
}

#[tokio::test]
async fn programs_die_with_botvisor_and_sighup_restarts_only_a_changed_one() {
    let tg = FakeTelegram::start().await.expect("fake");
    let (a, b) = (real_token(710_005), real_token(710_006));
    tg.add_bot(&a, "kept_bot");
    tg.add_bot(&b, "changed_bot");
    let text = |b_extra: &str| {
        format!(
            "{}{}{}",
            supervisor_table(&tg.url(), HTTP),
            program_table("a", "exec sleep 600", ""),
            program_table("b", "exec sleep 600", b_extra)
        )
    };
    let config = ConfigDir::new(&text(""));
    let vars = [("A_TOKEN", a.as_str()), ("B_TOKEN", b.as_str())];
    let mut daemon = Daemon::start(&config.path, &vars);
    let base = endpoint(&mut daemon).await;
    let (a1, b1) = (program_pid(&base, "a").await, program_pid(&base, "b").await);
    std::fs::write(&config.path, text("env = { LEVEL = \"hard\" }\n")).expect("write");
    daemon.signal(libc::SIGHUP);
    let changed = wait_for_status(&base, "b", PROMPT, |s| pid_of(s).is_some_and(|p| p != b1)).await;
    let b2 = pid_of(&changed).expect("a pid");
    gone(b1, PROMPT).await;
    let environ = std::fs::read(format!("/proc/{b2}/environ")).expect("its environment");
    assert!(String::from_utf8_lossy(&environ).contains("LEVEL=hard"));
    assert_eq!(
        pid_of(&bot_status(&base, "a").await),
        Some(a1),
        "the unchanged program was restarted"
    );
    assert!(alive(a1));

    // kill -9: both programs go with botvisor, and a new botvisor starts
    // its own.
    daemon.signal(libc::SIGKILL);
    daemon.wait_exit(PROMPT).await;
    gone(a1, PROMPT).await;
    gone(b2, PROMPT).await;
    let mut daemon = Daemon::start(&config.path, &vars);
    let base = endpoint(&mut daemon).await;
    let a3 = program_pid(&base, "a").await;
    assert!(alive(a3) && a3 != a1);
    daemon.stop_cleanly().await;
    gone(a3, PROMPT).await;
}

/// The process group of process `pid`.
fn group_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command's `)`: state, ppid, pgrp.
    stat.rsplit_once(") ")?
        .1
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// The live processes of group `group`.
fn members(group: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| alive(*pid) && group_of(*pid) == Some(group))
        .collect()
}

#[tokio::test]
async fn what_a_program_started_itself_dies_with_botvisor_too() {
    let tg = FakeTelegram::start().await.expect("fake");
    let token = real_token(710_010);
    tg.add_bot(&token, "spawning_bot");
    // Not `exec`: the shell stays, with two children of its own, as with
    // `npm start` or `poetry run`.
    let config = ConfigDir::new(&format!(
        "{}{}",
        supervisor_table(&tg.url(), HTTP),
        program_table("s", "sleep 600 & sleep 600 & wait", "")
    ));
    let mut daemon = Daemon::start(&config.path, &[("S_TOKEN", &token)]);
    let base = endpoint(&mut daemon).await;
    let program = program_pid(&base, "s").await;
    let group = group_of(program).expect("its group");
    let started = Instant::now();
    while members(group).len() < 4 {
        assert!(
            started.elapsed() < PROMPT,
            "the group never grew: {:?}",
            members(group)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.signal(libc::SIGKILL);
    daemon.wait_exit(PROMPT).await;
    let started = Instant::now();
    while !members(group).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "left running after botvisor's kill -9: {:?}",
            members(group)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_program_flooding_its_output_costs_neither_memory_nor_the_other_bots() {
    let tg = FakeTelegram::start().await.expect("fake");
    let (flood, echo) = (real_token(710_007), real_token(710_008));
    tg.add_bot(&flood, "flood_bot");
    tg.add_bot(&echo, "echo_bot");
    let config = ConfigDir::new(&format!(
        "{}{}[bot.e]\nkind = \"echo\"\ntoken_env = \"E_TOKEN\"\n",
        supervisor_table(&tg.url(), HTTP),
        // Endless lines, and one line of a megabyte at a time.
        program_table(
            "f",
            "yes 'a line of output' & head -c 100000000 /dev/zero | tr '\\0' x; wait",
            ""
        )
    ));
    let mut daemon = Daemon::start(&config.path, &[("F_TOKEN", &flood), ("E_TOKEN", &echo)]);
    let base = endpoint(&mut daemon).await;
    let pid = daemon.pid();
    program_pid(&base, "f").await;
    daemon
        .wait_for_line("of the program's output", PROMPT)
        .await;
    let before = rss(pid);
    let started = Instant::now();
    // The other bot answers as usual while the program floods.
    for i in 0..5 {
        common::assert_echoes(&tg, &echo, 100 + i, &format!("still here {i}")).await;
    }
    while started.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = rss(pid);
    assert!(
        after < before + (20 << 20),
        "RSS grew from {before} to {after}"
    );
    // Lines are bounded in length and in rate.
    let lines = daemon.lines();
    let program_lines: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("bot=f") && l.contains("stream="))
        .collect();
    assert!(
        program_lines.iter().all(|l| l.len() < 3_000),
        "an uncut line"
    );
    let seconds = started.elapsed().as_secs_f64() + 5.0;
    assert!(
        (program_lines.len() as f64) < 500.0 + 100.0 * seconds,
        "{} lines in {seconds} s",
        program_lines.len()
    );
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn a_20_mb_upload_goes_through_disk_not_memory() {
    let tg = FakeTelegram::start().await.expect("fake");
    let token = real_token(710_009);
    tg.add_bot(&token, "upload_bot");
    let config = ConfigDir::new(&format!(
        "{}{}",
        supervisor_table(&tg.url(), HTTP),
        program_table("p", PROBE, "")
    ));
    let dir: PathBuf = config.folder().to_path_buf();
    let mut daemon = Daemon::start(&config.path, &[("P_TOKEN", &token)]);
    let _base = endpoint(&mut daemon).await;
    let first = probe(&dir, 0).await;
    let (url, local) = (first.url().to_owned(), first.token().to_owned());
    let pid = daemon.pid();
    let before = rss(pid);
    let file: Vec<u8> = (0..(20u32 << 20)).map(|i| (i % 253) as u8).collect();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampler = tokio::spawn({
        let peak = peak.clone();
        async move {
            loop {
                peak.fetch_max(rss(pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    let form = reqwest::multipart::Form::new()
        .text("chat_id", "42")
        .text("caption", "big")
        .part(
            "document",
            reqwest::multipart::Part::bytes(file.clone()).file_name("big.bin"),
        );
    let response = reqwest::Client::new()
        .post(format!("{url}/bot{local}/sendDocument"))
        .multipart(form)
        .send()
        .await
        .expect("the upload");
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = response.json().await.expect("JSON");
    assert!(
        answer["result"]["document"]["file_id"].is_string(),
        "{answer}"
    );
    sampler.abort();
    let peak = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .max(rss(pid));
    let sent = tg.sent_messages(&token);
    let document = sent[0].media.clone().expect("the document");
    assert!(document.bytes == file, "the bytes differ");
    assert!(
        peak < before + (10 << 20),
        "RSS went from {before} to {peak}"
    );
    // The spooled file is gone once it went out.
    let spool = dir.join("botvisor.spool").join("p");
    let left = std::fs::read_dir(&spool).map_or(0, |d| d.count());
    assert_eq!(left, 0, "files left in {}", spool.display());
    daemon.stop_cleanly().await;
}
