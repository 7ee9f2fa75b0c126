//! SIGHUP against the fake, running the real binary: only the bots whose
//! config changed restart, an invalid config changes nothing, and bots can
//! be added and removed while the others keep polling without a break.

mod common;

use std::time::Duration;

use common::{ConfigDir, Daemon, PROMPT, assert_echoes, supervisor_table};
use fake_telegram::{Chat, FakeTelegram, Outcome, User};

const TOKEN_A: &str = "404:token-of-bot-a";
const TOKEN_B: &str = "505:token-of-bot-b";
const TOKEN_C: &str = "606:token-of-bot-c";
const VARS: &[(&str, &str)] = &[
    ("A_TOKEN", TOKEN_A),
    ("B_TOKEN", TOKEN_B),
    ("C_TOKEN", TOKEN_C),
];

/// A supervisor table whose long polls last 30 s, so that an interrupted
/// poll would show as an extra getUpdates.
fn supervisor(api_url: &str) -> String {
    supervisor_table(api_url, "").replace("poll_timeout = \"2s\"", "poll_timeout = \"30s\"")
}

fn bot(name: &str, extra: &str) -> String {
    format!(
        "[bot.{name}]\nkind = \"echo\"\ntoken_env = \"{}_TOKEN\"\n{extra}\n",
        name.to_uppercase()
    )
}

#[tokio::test]
async fn changing_one_bot_restarts_only_that_bot() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let a = tg.add_bot(TOKEN_A, "a_bot");
    let b = tg.add_bot(TOKEN_B, "b_bot");
    let head = supervisor(&tg.url());
    let config = ConfigDir::new(&format!("{head}{}{}", bot("a", ""), bot("b", "")));
    let mut daemon = Daemon::start(&config.path, VARS);
    tg.wait_for_request(&a.token, "getUpdates", 1, PROMPT)
        .await
        .expect("a polls");
    tg.wait_for_request(&b.token, "getUpdates", 1, PROMPT)
        .await
        .expect("b polls");

    // b changes; a moves in the file but is the same.
    config.write(
        "supervisor.toml",
        &format!(
            "{head}# b first now\n{}{}",
            bot("b", "slow_on = \"wait\""),
            bot("a", "")
        ),
    );
    daemon.signal(libc::SIGHUP);
    daemon
        .wait_for_line(
            "reload: added: none; removed: none; restarted: b; unchanged: a",
            PROMPT,
        )
        .await;
    tg.wait_for_request(&b.token, "getUpdates", 2, PROMPT)
        .await
        .expect("b polls again");
    assert_eq!(tg.requests_of(&b.token, "getMe").len(), 2, "b reconnected");

    // a's long poll was never interrupted: still its first, still held.
    let a_polls = tg.requests_of(&a.token, "getUpdates");
    assert_eq!(a_polls.len(), 1, "a polled again: {a_polls:?}");
    assert_eq!(a_polls[0].outcome, Outcome::Pending);
    assert_eq!(tg.requests_of(&a.token, "getMe").len(), 1);
    // b's old worker stopped before its new one polled: no self-inflicted 409.
    assert!(
        tg.requests_of(&b.token, "getUpdates")
            .iter()
            .all(|r| r.status() != Some(409))
    );

    assert_echoes(&tg, &a.token, 77, "a works").await;
    assert_echoes(&tg, &b.token, 77, "b works").await;
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn an_invalid_config_keeps_everything_running() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let a = tg.add_bot(TOKEN_A, "a_bot");
    let head = supervisor(&tg.url());
    let config = ConfigDir::new(&format!("{head}{}", bot("a", "")));
    let mut daemon = Daemon::start(&config.path, VARS);
    tg.wait_for_request(&a.token, "getUpdates", 1, PROMPT)
        .await
        .expect("a polls");

    config.write(
        "supervisor.toml",
        &format!("{head}{}colour = \"red\"\n", bot("a", "")),
    );
    daemon.signal(libc::SIGHUP);
    daemon
        .wait_for_line(
            "reload: the config is invalid; keeping the running config",
            PROMPT,
        )
        .await;
    let problem = daemon
        .wait_for_line("bot.a: unknown key `colour`", PROMPT)
        .await;
    assert!(problem.contains("supervisor.toml:"), "{problem}");
    // The problem is a log event of its own: a timestamp, a level, the
    // reload it belongs to (issue 14: it was a bare second line).
    assert!(
        problem.starts_with(|c: char| c.is_ascii_digit()),
        "{problem}"
    );
    assert!(
        problem.contains("ERROR") && problem.contains("reload: "),
        "{problem}"
    );

    let a_polls = tg.requests_of(&a.token, "getUpdates");
    assert_eq!(a_polls.len(), 1);
    assert_eq!(a_polls[0].outcome, Outcome::Pending);
    assert_echoes(&tg, &a.token, 77, "still answering").await;
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn bots_can_be_added_and_removed() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let a = tg.add_bot(TOKEN_A, "a_bot");
    let b = tg.add_bot(TOKEN_B, "b_bot");
    let c = tg.add_bot(TOKEN_C, "c_bot");
    let head = supervisor(&tg.url());
    let config = ConfigDir::new(&format!("{head}{}{}", bot("a", ""), bot("b", "")));
    let mut daemon = Daemon::start(&config.path, VARS);
    tg.wait_for_request(&a.token, "getUpdates", 1, PROMPT)
        .await
        .expect("a polls");
    tg.wait_for_request(&b.token, "getUpdates", 1, PROMPT)
        .await
        .expect("b polls");

    config.write(
        "supervisor.toml",
        &format!("{head}{}{}", bot("a", ""), bot("c", "")),
    );
    daemon.signal(libc::SIGHUP);
    daemon
        .wait_for_line(
            "reload: added: c; removed: b; restarted: none; unchanged: a",
            PROMPT,
        )
        .await;
    tg.wait_for_request(&c.token, "getUpdates", 1, PROMPT)
        .await
        .expect("c polls");
    let stopped = daemon.wait_for_line("state=stopped", PROMPT).await;
    assert!(stopped.contains("bot=b"), "{stopped}");
    // The state is not repeated as its own reason (issue 14).
    assert!(!stopped.contains("stopped: stopped"), "{stopped}");
    assert_echoes(&tg, &c.token, 77, "c is new").await;
    assert_echoes(&tg, &a.token, 77, "a stays").await;

    // b no longer polls: a message to it waits unanswered.
    let user = User::new(78, "Left behind");
    tg.inject_message(&b.token, &Chat::private(&user), &user, "anyone?");
    assert_eq!(tg.requests_of(&b.token, "getUpdates").len(), 1);
    assert!(
        tg.wait_for_sent(&b.token, 1, Duration::from_millis(500))
            .await
            .is_err()
    );
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn renaming_a_bot_never_polls_its_token_twice() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let a = tg.add_bot(TOKEN_A, "a_bot");
    let head = supervisor(&tg.url());
    // A slow handler keeps the old worker busy while the new one would start.
    let config = ConfigDir::new(&format!(
        "{head}{}",
        bot("a", "slow_on = \"slow\"\nslow_for = \"1s\"")
    ));
    let mut vars = VARS.to_vec();
    vars.push(("RUST_LOG", "botvisor=debug,info"));
    let mut daemon = Daemon::start(&config.path, &vars);
    tg.wait_for_request(&a.token, "getUpdates", 1, PROMPT)
        .await
        .expect("a polls");
    let user = User::new(79, "Renamer");
    let slow = tg.inject_message(&a.token, &Chat::private(&user), &user, "slow");
    let line = daemon
        .wait_for_line(&format!("handling an update update_id={slow}"), PROMPT)
        .await;
    assert!(line.contains("bot=a"), "{line}");

    // Same token, new name: the new worker must wait for the old one.
    config.write(
        "supervisor.toml",
        &format!("{head}[bot.renamed]\nkind = \"echo\"\ntoken_env = \"A_TOKEN\"\n"),
    );
    daemon.signal(libc::SIGHUP);
    daemon
        .wait_for_line(
            "reload: added: renamed; removed: a; restarted: none; unchanged: none",
            PROMPT,
        )
        .await;
    assert_echoes(&tg, &a.token, 77, "renamed works").await;
    // The old worker finished its slow handler before the new one polled.
    let line = daemon
        .wait_for_line("running: polling as @a_bot", PROMPT)
        .await;
    assert!(line.contains("bot=a"), "{line}");
    let renamed = daemon.wait_for_line("bot=renamed", PROMPT).await;
    let finished = daemon.wait_for_line("state=stopped", PROMPT).await;
    assert!(finished.contains("bot=a"), "{finished}");
    let output = daemon.lines();
    let at = |needle: &str| output.iter().position(|l| l == needle);
    assert!(
        at(&finished) < at(&renamed),
        "the new worker started before the old one stopped"
    );
    let sent: Vec<String> = tg
        .sent_messages(&a.token)
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(
        sent.iter().filter(|t| *t == "slow").count(),
        1,
        "handled once: {sent:?}\n{}",
        daemon.output()
    );
    let conflicts = tg
        .requests_of(&a.token, "getUpdates")
        .iter()
        .filter(|r| r.status() == Some(409))
        .count();
    assert_eq!(conflicts, 0, "botvisor polled its own token twice");
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn included_files_and_token_files_are_read_again_on_reload() {
    use std::os::unix::fs::PermissionsExt;
    let tg = FakeTelegram::start().await.expect("start the fake");
    let a = tg.add_bot(TOKEN_A, "a_bot");
    let b = tg.add_bot(TOKEN_B, "b_bot");
    let c = tg.add_bot(TOKEN_C, "c_bot");
    let head = supervisor(&tg.url());
    let config = ConfigDir::new(&format!(
        "include = [\"bots.d/*.toml\"]\n{head}{}",
        bot("a", "")
    ));
    std::fs::create_dir(config.folder().join("bots.d")).expect("a folder");
    // b's token comes from a file beside its table, as a Docker secret would.
    let token_file = config.write("bots.d/b.token", &format!("{TOKEN_B}\n"));
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    config.write(
        "bots.d/10-b.toml",
        "[bot.b]\nkind = \"echo\"\ntoken_file = \"b.token\"\n",
    );
    let vars: &[(&str, &str)] = &[("A_TOKEN", TOKEN_A), ("C_TOKEN", TOKEN_C)];
    let mut daemon = Daemon::start(&config.path, vars);
    tg.wait_for_request(&a.token, "getUpdates", 1, PROMPT)
        .await
        .expect("a polls");
    tg.wait_for_request(&b.token, "getUpdates", 1, PROMPT)
        .await
        .expect("b, from an included file, polls with its token file's token");
    assert_echoes(&tg, &b.token, 79, "b is included").await;

    // A new file in the folder: c starts at the next SIGHUP, a and b go on.
    config.write("bots.d/20-c.toml", &bot("c", ""));
    let a_polls = tg.requests_of(&a.token, "getUpdates").len();
    daemon.signal(libc::SIGHUP);
    tg.wait_for_request(&c.token, "getUpdates", 1, PROMPT)
        .await
        .expect("c polls after the reload");
    assert_echoes(&tg, &c.token, 80, "c is new").await;
    assert_eq!(
        tg.requests_of(&a.token, "getUpdates").len(),
        a_polls,
        "a's long poll was not interrupted"
    );
    assert_echoes(&tg, &b.token, 79, "b stays").await;
    daemon.stop_cleanly().await;
    for token in [TOKEN_B, TOKEN_C] {
        let secret = token.split(':').nth(1).expect("a secret part");
        assert!(!daemon.output().contains(secret), "a token in the log");
    }
}
