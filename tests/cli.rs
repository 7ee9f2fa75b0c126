//! The command line as an operator meets it: `--version`, `--help`, `check`
//! on the shipped and on broken configs, `check` and the daemon agreeing on
//! the same file, the previews, and hostile input (huge names, endless
//! files, a closed pipe). Runs the real binary.

mod common;

use common::{ConfigDir, run_to_end};

fn shipped_config() -> String {
    format!("{}/supervisor.toml", env!("CARGO_MANIFEST_DIR"))
}

/// The 1-based line and column where `needle` starts in `text`.
fn position(text: &str, needle: &str) -> String {
    let offset = text.find(needle).expect("needle in text");
    let line = text[..offset].matches('\n').count() + 1;
    let column = offset - text[..offset].rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("{line}:{column}")
}

#[tokio::test]
async fn version_and_help_describe_the_command() {
    let version = run_to_end(&["--version"], &[]).await;
    assert_eq!(version.code(), Some(0));
    assert_eq!(
        version.stdout.trim(),
        format!("botvisor {}", env!("CARGO_PKG_VERSION"))
    );

    let help = run_to_end(&["--help"], &[]).await;
    assert_eq!(help.code(), Some(0));
    for expected in [
        "--config",
        "check",
        "Exit codes",
        "78",
        "SIGTERM",
        "SIGHUP",
        "SIGUSR1",
        ".env",
        "TANITIM_TOKEN",
        "DATABASE_URL",
        "RUST_LOG",
        "PORT",
    ] {
        assert!(
            help.stdout.contains(expected),
            "help lacks {expected:?}:\n{}",
            help.stdout
        );
    }

    let wrong = run_to_end(&["--no-such-flag"], &[]).await;
    assert_eq!(wrong.code(), Some(2), "{}", wrong.stderr);
}

#[tokio::test]
async fn check_lists_the_shipped_bots_when_their_tokens_are_set() {
    let config = shipped_config();
    let out = run_to_end(
        &["check", "--config", &config],
        &[
            ("TANITIM_TOKEN", common::REAL_SHAPED_TOKEN),
            ("DUYURU_TOKEN", common::SECOND_TOKEN),
        ],
    )
    .await;
    assert_eq!(
        out.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("tanitim")
            && lines[0].contains("faq")
            && lines[0].contains("TANITIM_TOKEN")
    );
    assert!(lines[0].ends_with("token set"), "{}", lines[0]);
    assert!(
        lines[1].starts_with("duyuru")
            && lines[1].contains("announcements")
            && lines[1].contains("DUYURU_TOKEN")
    );
    assert!(out.stdout.contains("valid, 2 bot(s), 2 enabled"));
    for token in [common::REAL_SHAPED_TOKEN, common::SECOND_TOKEN] {
        assert!(!out.stdout.contains(token) && !out.stderr.contains(token));
    }
}

#[tokio::test]
async fn check_reports_a_missing_token_with_its_position() {
    let config = shipped_config();
    let text = std::fs::read_to_string(&config).expect("read the shipped config");
    let out = run_to_end(
        &["check", "--config", &config],
        &[("TANITIM_TOKEN", common::REAL_SHAPED_TOKEN)],
    )
    .await;
    assert_eq!(out.code(), Some(78));
    assert!(out.stdout.contains("token NOT SET"), "{}", out.stdout);
    let at = position(&text, "\"DUYURU_TOKEN\"");
    let expected = format!("supervisor.toml:{at}: bot.duyuru.token_env: DUYURU_TOKEN is not set");
    assert!(
        out.stderr.contains(&expected),
        "expected {expected:?} in:\n{}",
        out.stderr
    );
}

/// Each broken config exits 78 and names the line and column of the
/// problem. (The validation table in `src/config/tests.rs` checks the
/// messages in detail; this checks what the operator sees from the binary.)
#[tokio::test]
async fn check_rejects_broken_configs_with_line_and_column() {
    let bot = "[bot.a]\nkind = \"echo\"\ntoken_env = \"A_TOKEN\"\n";
    let cases: Vec<(&str, String, &str)> = vec![
        ("bad TOML", "[supervisor\n".into(), "1:12: unclosed table"),
        (
            "unknown key",
            format!("{bot}colour = \"red\"\n"),
            "4:1: bot.a: unknown key `colour`",
        ),
        (
            "unknown kind",
            "[bot.a]\nkind = \"chess\"\ntoken_env = \"A\"\n".into(),
            "2:8: bot.a.kind: unknown kind `chess`",
        ),
        (
            "duplicate bot table",
            format!("{bot}{bot}"),
            "4:6: duplicate key",
        ),
        (
            "bad duration",
            "[supervisor]\nshutdown_timeout = \"soon\"\n".into(),
            "2:20: supervisor.shutdown_timeout: `soon` is not a duration",
        ),
        (
            "literal token",
            format!("{bot}# old token: {}\n", common::REAL_SHAPED_TOKEN),
            "4:14: a bot token is written in the config file",
        ),
        (
            "missing token_env",
            "[bot.a]\nkind = \"echo\"\n".into(),
            "1:6: bot.a: needs token_env (the environment variable that holds its token) or token_file",
        ),
        (
            "bad name characters",
            "[bot.\"Tanıtım\"]\nkind = \"echo\"\ntoken_env = \"A\"\n".into(),
            "1:6: bot.Tanıtım: `Tanıtım` is not a bot name",
        ),
        (
            "zero limit",
            "[supervisor.restart]\nmax_restarts = 0\n".into(),
            "2:16: supervisor.restart.max_restarts: must be a whole number of at least 1",
        ),
        (
            "negative limit",
            "[supervisor.restart]\njitter = -0.5\n".into(),
            "2:10: supervisor.restart.jitter: must be between 0 and 1",
        ),
        (
            "wrong type",
            format!("{bot}enabled = 1\n"),
            "4:11: bot.a.enabled: must be true or false, not the number 1",
        ),
        (
            "unknown top-level table",
            "[bots.a]\n".into(),
            "1:2: bots: unknown key `bots`",
        ),
    ];
    for (what, text, expected) in cases {
        let dir = ConfigDir::new(&text);
        let path = dir.path.to_str().expect("utf-8 path").to_owned();
        let out = run_to_end(
            &["check", "--config", &path],
            &[("A_TOKEN", "1:x"), ("A", "1:x")],
        )
        .await;
        assert_eq!(out.code(), Some(78), "{what}: stderr:\n{}", out.stderr);
        let expected = format!("{path}:{expected}");
        assert!(
            out.stderr.contains(&expected),
            "{what}: expected {expected:?} in:\n{}",
            out.stderr
        );
        assert!(
            !out.stderr.contains("panicked") && !out.stderr.contains("backtrace"),
            "{what}: {}",
            out.stderr
        );
        assert!(
            !out.stderr.contains(common::REAL_SHAPED_TOKEN),
            "{what}: the error repeats the token"
        );
        assert!(
            out.stderr.lines().count() <= 2,
            "{what}: one or two lines:\n{}",
            out.stderr
        );
    }
}

#[tokio::test]
async fn a_missing_config_file_is_a_config_error() {
    let out = run_to_end(&["check", "--config", "/nonexistent/supervisor.toml"], &[]).await;
    assert_eq!(out.code(), Some(78));
    assert!(
        out.stderr
            .contains("/nonexistent/supervisor.toml: cannot read the config file"),
        "{}",
        out.stderr
    );
    let daemon = run_to_end(&["--config", "/nonexistent/supervisor.toml"], &[]).await;
    assert_eq!(daemon.code(), Some(78));
}

#[tokio::test]
async fn the_daemon_without_any_token_exits_78_with_one_line() {
    let config = shipped_config();
    let out = run_to_end(&["--config", &config], &[]).await;
    assert_eq!(
        out.code(),
        Some(78),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    // Once, on stderr, before logging starts: nothing on stdout.
    assert_eq!(
        out.stderr.trim(),
        format!(
            "botvisor: {config}: no bot can run: tanitim: TANITIM_TOKEN is not set; duyuru: DUYURU_TOKEN is not set"
        )
    );
    assert_eq!(out.stdout, "", "the error is not repeated as a log line");
}

/// Runs `check` and the daemon on the same file with the same variables;
/// returns both outputs. A daemon that starts is stopped by the test's
/// timeout only if it does not exit, so each case here must be one the
/// daemon refuses.
async fn check_and_daemon(text: &str, vars: &[(&str, &str)]) -> (common::Output, common::Output) {
    let dir = ConfigDir::new(text);
    let path = dir.path.to_str().expect("utf-8 path").to_owned();
    let check = run_to_end(&["check", "--config", &path], vars).await;
    let daemon = run_to_end(&["--config", &path], vars).await;
    (check, daemon)
}

/// Everything the daemon refuses at start, `check` refuses with the same
/// words (issue 14: `check` used to pass these and the daemon exit 78).
#[tokio::test]
async fn check_and_the_daemon_give_the_same_verdict() {
    let bot = "[bot.a]\nkind = \"echo\"\ntoken_env = \"A\"\n";
    let port = format!("[supervisor.http]\nlisten = \"0.0.0.0:$PORT\"\n{bot}");
    let disabled = format!("{bot}enabled = false\n");
    let store = format!("[supervisor]\nstore_env = \"MY_DB\"\n{bot}");
    let two = format!(
        "{bot}[bot.b]\nkind = \"echo\"\ntoken_env = \"B\"\n[bot.b.restart]\nmax_restarts = 3\n"
    );
    let log_dir = format!("[supervisor]\nlog_dir = \"supervisor.toml/logs\"\n{bot}");
    // What, the file, the variables, words both must say.
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "PORT unset",
            &port,
            vec![("A", "1:x")],
            "needs the PORT variable, which is not set",
        ),
        (
            "not a token",
            bot,
            vec![("A", "hello")],
            "no bot can run: a: A does not hold a bot token",
        ),
        (
            "a `bot` prefix",
            bot,
            vec![("A", "bot1:x")],
            "A does not hold a bot token",
        ),
        (
            "every bot disabled",
            &disabled,
            vec![("A", "1:x")],
            "no bot can run: the config enables no bot",
        ),
        (
            "store variable",
            &store,
            vec![("A", "1:x"), ("MY_DB", "mysql://db")],
            "MY_DB is set but is not a postgres:// URL",
        ),
        (
            // The config file itself stands where a folder should be.
            "a log_dir that cannot be created",
            &log_dir,
            vec![("A", "1:x")],
            "cannot write logs to ",
        ),
        (
            "one token twice, the first not a token",
            &two,
            vec![("A", "x"), ("B", "x")],
            "no bot can run",
        ),
    ];
    for (what, text, vars, words) in cases {
        let (check, daemon) = check_and_daemon(text, &vars).await;
        assert_eq!(check.code(), Some(78), "{what}: check:\n{}", check.stderr);
        assert_eq!(
            daemon.code(),
            Some(78),
            "{what}: daemon:\n{}{}",
            daemon.stdout,
            daemon.stderr
        );
        assert!(
            check.stderr.contains(words),
            "{what}: check:\n{}",
            check.stderr
        );
        // The daemon's whole complaint is among check's lines, word for word.
        for line in daemon.stderr.lines() {
            let line = line.trim_start_matches("botvisor: ");
            assert!(
                check.stderr.contains(line),
                "{what}: {line:?} not in check's\n{}",
                check.stderr
            );
        }
        assert!(
            daemon.stderr.contains(words),
            "{what}: daemon:\n{}",
            daemon.stderr
        );
    }
}

/// Tokens live in Heroku: on a laptop, `check --no-env` checks the file and
/// its content alone, passes, and says what it did not look at.
#[tokio::test]
async fn check_without_the_environment_checks_the_file_only() {
    let config = shipped_config();
    // Even a wrong token in the environment is not read.
    let out = run_to_end(
        &["check", "--no-env", "--config", &config],
        &[("TANITIM_TOKEN", "hello"), ("DATABASE_URL", "mysql://x")],
    )
    .await;
    assert_eq!(out.code(), Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(
            "valid, 2 bot(s), 2 enabled; not checked without the environment: TANITIM_TOKEN, DUYURU_TOKEN, DATABASE_URL, RUST_LOG"
        ),
        "{}",
        out.stdout
    );
    // A broken content file still fails it, at the content file's position.
    let dir =
        ConfigDir::new("[bot.f]\nkind = \"faq\"\ntoken_env = \"F\"\ncontent_file = \"c.toml\"\n");
    let content = dir.write("c.toml", "greeting = 5\n");
    let path = dir.path.to_str().expect("utf-8 path");
    let out = run_to_end(&["check", "--no-env", "--config", path], &[]).await;
    assert_eq!(out.code(), Some(78));
    assert!(
        out.stderr.contains(&format!(
            "{}:1:12: greeting: must be text in double quotes, not the number 5",
            content.display()
        )),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn check_warns_about_legal_but_dangerous_settings() {
    let dir = ConfigDir::new(
        "[supervisor]\nshutdown_timeout = \"45s\"\n[bot.a]\nkind = \"echo\"\ntoken_env = \"A\"\n",
    );
    let path = dir.path.to_str().expect("utf-8 path");
    let out = run_to_end(&["check", "--config", path], &[("A", "1:x")]).await;
    assert_eq!(out.code(), Some(0), "a warning does not fail the check");
    assert!(
        out.stdout.contains(&format!(
            "warning: {path}:2:20: supervisor.shutdown_timeout: 45s is not under 30s"
        )),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn check_says_when_the_bots_need_more_descriptors_than_allowed() {
    let bots: String = (0..100)
        .map(|i| format!("[bot.b{i}]\nkind = \"echo\"\ntoken_env = \"B{i}\"\n"))
        .collect();
    let dir = ConfigDir::new(&bots);
    let path = dir.path.to_str().expect("utf-8 path");
    let tokens: Vec<(String, String)> = (0..100)
        .map(|i| (format!("B{i}"), format!("{}:token-of-b{i}", 1000 + i)))
        .collect();
    let vars: Vec<(&str, &str)> = tokens
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let check = |hard: libc::rlim_t| {
        let mut command = common::command(&["check", "--config", path], &vars);
        // SAFETY: setrlimit is async-signal-safe, and the closure touches
        // nothing else between fork and exec.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: hard,
                    rlim_max: hard,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        command
    };
    // 100 bots and what botvisor keeps for itself: about 228.
    let out = check(200).output().await.expect("check ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a warning does not fail the check"
    );
    assert!(
        stdout.contains(
            "warning: the enabled bots need about 228 file descriptors, and this process may open at most 200"
        ),
        "{stdout}"
    );
    let out = check(1024).output().await.expect("check ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("file descriptors"), "{stdout}");
}

/// Input that used to panic or read without end (issue 13, item 7).
#[tokio::test]
async fn hostile_input_is_refused_without_a_panic() {
    let long_name = "a".repeat(70_000);
    let long_env = "A".repeat(70_000);
    let cases = [
        format!("[bot.{long_name}]\nkind = \"echo\"\ntoken_env = \"A\"\n"),
        format!("[bot.a]\nkind = \"echo\"\ntoken_env = \"{long_env}\"\n"),
        "[bot.a]\nkind = \"faq\"\ntoken_env = \"A\"\ncontent_file = \"/dev/zero\"\n".to_owned(),
    ];
    for text in &cases {
        let dir = ConfigDir::new(text);
        let path = dir.path.to_str().expect("utf-8 path");
        for command in ["check", "sandbox"] {
            let out = run_to_end(&[command, "--config", path], &[("A", "1:x")]).await;
            assert_eq!(out.code(), Some(78), "{command}: {}", out.stderr);
            assert!(
                !out.stderr.contains("panicked"),
                "{command}: {}",
                out.stderr
            );
            assert!(
                out.stderr.len() < 1000,
                "{command}: {} bytes",
                out.stderr.len()
            );
        }
    }
    let out = run_to_end(&["check", "--config", "/dev/zero"], &[]).await;
    assert_eq!(out.code(), Some(78));
    assert!(
        out.stderr
            .starts_with("botvisor: /dev/zero:1:1: the file is larger than 1024 KiB"),
        "{}",
        out.stderr
    );
}

/// `faq-preview | head -1` ends quietly; with one faq bot `--bot` may be
/// left out.
#[tokio::test]
async fn faq_preview_needs_no_bot_name_and_survives_a_closed_pipe() {
    let config = shipped_config();
    let out = run_to_end(&["faq-preview", "--config", &config, "erasmus"], &[]).await;
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("/erasmus"), "{}", out.stdout);

    // A reader that closes the pipe at once: the preview must not panic.
    let mut command = common::command(&["faq-preview", "--config", &config], &[]);
    command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("start botvisor");
    drop(child.stdout.take());
    let output = tokio::time::timeout(common::PROMPT, child.wait_with_output())
        .await
        .expect("finished in time")
        .expect("ran");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "", "quiet on a closed pipe");

    // Two faq bots: the name is needed, and the message says which exist.
    let dir = ConfigDir::new(&format!(
        "[bot.a]\nkind = \"faq\"\ntoken_env = \"A\"\ncontent_file = \"{0}/content/tanitim.toml\"\n\
         [bot.b]\nkind = \"faq\"\ntoken_env = \"B\"\ncontent_file = \"{0}/content/tanitim.toml\"\n",
        env!("CARGO_MANIFEST_DIR")
    ));
    let path = dir.path.to_str().expect("utf-8 path");
    let out = run_to_end(&["faq-preview", "--config", path], &[]).await;
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr
            .contains("there are several faq bots (a, b); choose one with --bot NAME"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn announcements_preview_fails_when_the_selector_finds_nothing() {
    let site = common::site::Site::start().await;
    site.set_html("/list", "<html><body><p>Yeni tasarım</p></body></html>");
    let dir = ConfigDir::new(&format!(
        "[bot.d]\nkind = \"announcements\"\ntoken_env = \"D\"\nlist_url = \"{}\"\n\
         link_selector = \"div.ann-list ul li a\"\ntext_selector = \"div.page-about\"\n",
        site.url("/list")
    ));
    let path = dir.path.to_str().expect("utf-8 path");
    let out = run_to_end(&["announcements-preview", "--config", path], &[]).await;
    assert_eq!(out.code(), Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("0 announcement(s) found"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn a_config_enabling_no_bot_exits_78() {
    let dir = ConfigDir::new("[bot.a]\nkind = \"echo\"\ntoken_env = \"A\"\nenabled = false\n");
    let path = dir.path.to_str().expect("utf-8 path");
    let out = run_to_end(&["--config", path], &[("A", "1:x")]).await;
    assert_eq!(out.code(), Some(78));
    assert_eq!(
        out.stderr.trim(),
        format!("botvisor: {path}: no bot can run: the config enables no bot")
    );
}

/// The daemon's start-up lines are readable (`dotenv=none`, not `None`) and
/// the config's warnings reach the log once, with their position.
#[tokio::test]
async fn the_daemon_logs_readable_fields_and_the_configs_warnings() {
    let tg = fake_telegram::FakeTelegram::start()
        .await
        .expect("start the fake");
    tg.add_bot("101:token-of-bot-a", "a_bot");
    let text = format!(
        "{}[bot.a]\nkind = \"echo\"\ntoken_env = \"A\"\n",
        common::supervisor_table(&tg.url(), "")
    )
    .replace("shutdown_timeout = \"5s\"", "shutdown_timeout = \"31s\"");
    let dir = ConfigDir::new(&text);
    let mut daemon = common::Daemon::start(&dir.path, &[("A", "101:token-of-bot-a")]);
    let line = daemon
        .wait_for_line("botvisor starting", common::PROMPT)
        .await;
    assert!(line.contains("dotenv=none"), "{line}");
    let warning = daemon
        .wait_for_line("supervisor.shutdown_timeout", common::PROMPT)
        .await;
    assert!(
        warning.contains("WARN")
            && warning.contains(":4:20: supervisor.shutdown_timeout: 31s is not under 30s"),
        "{warning}"
    );
    tg.wait_for_request("101:token-of-bot-a", "getUpdates", 1, common::PROMPT)
        .await
        .expect("the bot polls");
    daemon.stop_cleanly().await;
    let output = daemon.output();
    assert_eq!(
        output.matches("is not under 30s").count(),
        1,
        "the warning is logged once:\n{output}"
    );
}
