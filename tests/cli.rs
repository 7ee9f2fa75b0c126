//! The command line as an operator meets it: `--version`, `--help`, `check`
//! on the shipped and on broken configs, and the daemon's refusal to start
//! without a runnable bot. Runs the real binary.

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
    for expected in ["--config", "check", "Exit codes", "78"] {
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
    assert!(out.stdout.contains("valid, 2 bot(s)"));
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
    let expected = format!(
        "supervisor.toml:{at}: bot.duyuru.token_env: the environment variable DUYURU_TOKEN is not set"
    );
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
            "1:6: bot.a: missing key `token_env`",
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
            "4:11: bot.a: invalid type: integer `1`, expected a boolean",
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
    assert_eq!(
        out.stderr.trim(),
        "botvisor: no bot can run: tanitim: TANITIM_TOKEN is not set; duyuru: DUYURU_TOKEN is not set"
    );
    // Each bot's problem is also in the log, for Heroku's log stream.
    assert!(
        out.stdout
            .contains("bot will not run: tanitim: TANITIM_TOKEN is not set"),
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
        "botvisor: no bot can run: the config enables no bot"
    );
}
