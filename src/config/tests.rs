//! Config validation as a table: each case is config text and the problems
//! an operator must see, as `line:column key: message fragment`.

use std::path::Path;
use std::time::Duration;

use super::*;

/// A token-shaped string, built at run time so no token-shaped literal sits
/// in the source.
fn fake_token() -> String {
    format!("{}:{}", "123456789", "AAH".to_owned() + &"x".repeat(32))
}

/// Validates `text` and compares its problems with `expected`, each
/// `"line:column key: fragment"` (the key may be empty).
fn check(text: &str, expected: &[&str]) {
    let err =
        Config::from_str(text, Path::new("test.toml")).expect_err("the config must be rejected");
    let ConfigError::Invalid { problems, .. } = &err else {
        panic!("expected Invalid, got {err}");
    };
    let got: Vec<String> = problems
        .iter()
        .map(|p| format!("{} {}: {}", p.at, p.key, p.message))
        .collect();
    assert_eq!(got.len(), expected.len(), "problems: {got:#?}");
    for (got, expected) in got.iter().zip(expected) {
        let (position, rest) = expected.split_once(' ').expect("expected has a position");
        let (key, fragment) = rest
            .split_once(": ")
            .expect("expected has a key and message");
        let prefix = format!("{position} {key}: ");
        assert!(
            got.starts_with(&prefix),
            "got {got:?}, expected prefix {prefix:?}"
        );
        assert!(
            got.contains(fragment),
            "got {got:?}, expected it to contain {fragment:?}"
        );
    }
    // Rendered as file:line:column, one line per problem, and never the token.
    let rendered = err.to_string();
    assert_eq!(rendered.lines().count(), expected.len());
    assert!(
        rendered.lines().all(|l| l.starts_with("test.toml:")),
        "{rendered}"
    );
    assert!(!rendered.contains(&fake_token()), "{rendered}");
}

const BOT: &str = "[bot.a]\nkind = \"echo\"\ntoken_env = \"A_TOKEN\"\n";

#[test]
fn broken_configs_name_line_column_and_key() {
    let token_case = format!(
        "{BOT}[bot.b]\nkind = \"echo\"\ntoken_env = \"{}\"\n",
        fake_token()
    );
    let cases: Vec<(String, Vec<&str>)> = vec![
        // Bad TOML.
        ("[supervisor\nlog_level = \"info\"\n".into(), vec!["1:12 : unclosed table, expected `]`"]),
        // An unknown key, in the supervisor and in a bot.
        (
            "[supervisor]\nshutdown_timout = \"5s\"\n".into(),
            vec!["2:1 supervisor: unknown key `shutdown_timout`"],
        ),
        (
            format!("{BOT}tokn_env = \"X\"\n"),
            vec!["4:1 bot.a: unknown key `tokn_env`"],
        ),
        // An unknown top-level table.
        ("[supervisr]\n".into(), vec!["1:2 supervisr: unknown key `supervisr`"]),
        // An unknown kind.
        (
            "[bot.a]\nkind = \"weather\"\ntoken_env = \"A\"\n".into(),
            vec!["2:8 bot.a.kind: unknown kind `weather`; the kinds are faq, announcements"],
        ),
        // A duplicate bot table.
        (format!("{BOT}{BOT}"), vec!["4:6 : duplicate key: this table or key is already defined at line 1"]),
        // A key given twice names the line of the first.
        (
            format!("{BOT}kind = \"faq\"\n"),
            vec!["4:1 : duplicate key: this table or key is already defined at line 2"],
        ),
        // A bad duration, and a zero one.
        (
            "[supervisor]\nshutdown_timeout = \"25 parsecs\"\npoll_timeout = \"0s\"\n".into(),
            vec![
                "2:20 supervisor.shutdown_timeout: `25 parsecs` is not a duration",
                "3:16 supervisor.poll_timeout: must be longer than zero",
            ],
        ),
        // A literal token in the file.
        (
            token_case,
            vec!["6:14 : a bot token is written in the config file"],
        ),
        // A missing token_env.
        ("[bot.a]\nkind = \"echo\"\n".into(), vec!["1:6 bot.a: needs token_env (the environment variable that holds its token) or token_file"]),
        // Bad name characters.
        (
            "[bot.Tanitim]\nkind = \"echo\"\ntoken_env = \"T\"\n[bot.\"a b\"]\nkind = \"echo\"\ntoken_env = \"T2\"\n".into(),
            vec![
                "1:6 bot.Tanitim: `Tanitim` is not a bot name",
                "4:6 bot.a b: `a b` is not a bot name",
            ],
        ),
        // Zero and negative limits.
        (
            "[supervisor.restart]\nmax_restarts = 0\nmultiplier = 0.5\njitter = -1\n".into(),
            vec![
                "2:16 supervisor.restart.max_restarts: must be a whole number of at least 1",
                "3:14 supervisor.restart.multiplier: must be a number of at least 1",
                "4:10 supervisor.restart.jitter: must be between 0 and 1",
            ],
        ),
        (
            format!("{BOT}[bot.a.restart]\nmax_restarts = -3\n"),
            vec!["5:16 bot.a.restart.max_restarts: must be a whole number of at least 1"],
        ),
        // Wrong types.
        // Wrong types name the key and say what it must be, in plain words.
        (
            format!("{BOT}enabled = \"yes\"\n"),
            vec!["4:11 bot.a.enabled: must be true or false, not the text \"yes\""],
        ),
        (
            "[supervisor]\nshutdown_timeout = 25\n".into(),
            vec!["2:20 supervisor.shutdown_timeout: must be a duration in double quotes with its unit, e.g. \"25s\" or \"10m\", not the number 25"],
        ),
        (
            "[supervisor.restart]\nmultiplier = \"2\"\n".into(),
            vec!["2:14 supervisor.restart.multiplier: must be a number, e.g. 2 or 1.5"],
        ),
        (
            "[supervisor]\noperators = [\n  1,\n  \"me\",\n]\n".into(),
            vec!["4:3 supervisor.operators: must be a whole number, not the text \"me\""],
        ),
        (
            "[supervisor]\nlog_level = [\"info\"]\n".into(),
            vec!["2:13 supervisor.log_level: must be text in double quotes, not a list"],
        ),
        // Names too long to be names are refused in one line, not repeated.
        (
            format!("[bot.{}]\nkind = \"echo\"\ntoken_env = \"A\"\n", "a".repeat(70_000)),
            vec!["1:6 bot.aaaaaaaaaaaaaaaaaaaa…: a name of 70000 characters is not a bot name"],
        ),
        (
            format!("[bot.a]\nkind = \"echo\"\ntoken_env = \"{}\"\n", "A".repeat(70_000)),
            vec!["3:13 bot.a.token_env: must be the name of an environment variable (1 to 128"],
        ),
        ("bot = 3\n".into(), vec!["1:7 bot: must be a table"]),
        // Values that are not what they claim to be.
        (
            "[supervisor]\napi_url = \"not a url\"\nlog_format = \"xml\"\nlog_level = \"info,,=[\"\npoll_timeout = \"60s\"\n"
                .into(),
            vec![
                "2:11 supervisor.api_url: is not a URL",
                "3:14 supervisor.log_format: `xml` is not a log format",
                "4:13 supervisor.log_level: is not a log filter",
                "5:16 supervisor.poll_timeout: must be at most 50s",
            ],
        ),
        // Two enabled bots with one token variable; a disabled third is fine.
        (
            format!("{BOT}[bot.b]\nkind = \"echo\"\ntoken_env = \"A_TOKEN\"\n[bot.c]\nkind = \"echo\"\ntoken_env = \"A_TOKEN\"\nenabled = false\n"),
            vec!["6:13 bot.b.token_env: A_TOKEN is already the token of bot a"],
        ),
        // Absurd durations.
        (
            "[supervisor.restart]\npark_for = \"500000000y\"\n".into(),
            vec!["2:12 supervisor.restart.park_for: must be at most a year"],
        ),
        (
            "[supervisor.restart]\ninitial_backoff = \"2m\"\nmax_backoff = \"1m\"\n".into(),
            vec!["2:19 supervisor.restart.initial_backoff: must not be longer than max_backoff"],
        ),
    ];
    let mut failures = Vec::new();
    for (text, expected) in &cases {
        if let Err(panic) = std::panic::catch_unwind(|| check(text, expected)) {
            let got = Config::from_str(text, Path::new("test.toml"))
                .err()
                .map(|e| e.to_string());
            failures.push(format!(
                "{text:?}: {:?}\n  got: {got:?}",
                panic.downcast_ref::<String>()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn an_empty_file_is_all_defaults() {
    let config = Config::from_str("", Path::new("dir/supervisor.toml")).expect("empty is valid");
    assert_eq!(config.supervisor, SupervisorSettings::default());
    assert!(config.bots.is_empty());
    let empty_tables =
        Config::from_str("[supervisor]\n[supervisor.restart]\n", Path::new("x.toml"))
            .expect("empty tables are valid");
    assert_eq!(empty_tables.supervisor, SupervisorSettings::default());
}

#[test]
fn bot_overrides_merge_over_supervisor_defaults() {
    let text = "[supervisor]\napi_url = \"http://127.0.0.1:9/\"\n[supervisor.restart]\nmax_restarts = 9\n\
                [bot.a]\nkind = \"echo\"\ntoken_env = \"A\"\n[bot.a.restart]\npark_for = \"1m\"\n\
                [bot.b]\nkind = \"echo\"\ntoken_env = \"B\"\nenabled = false\napi_url = \"http://127.0.0.1:8\"\n";
    let config = Config::from_str(text, Path::new("x.toml")).expect("valid");
    let a = config.bot("a").expect("bot a");
    assert_eq!(a.restart.max_restarts, 9);
    assert_eq!(a.restart.park_for, Duration::from_secs(60));
    assert_eq!(a.api_url.as_str(), "http://127.0.0.1:9/");
    assert!(a.enabled);
    let b = config.bot("b").expect("bot b");
    assert!(!b.enabled);
    assert_eq!(b.restart.park_for, RestartPolicy::default().park_for);
    assert_eq!(b.kind.name(), "echo");
    assert_eq!(
        config
            .bots
            .iter()
            .map(|b| b.name.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
}

#[test]
fn relative_paths_resolve_against_the_config_folder() {
    let config = Config::from_str(
        "[supervisor]\nlog_dir = \"logs\"\n",
        Path::new("/etc/botvisor/supervisor.toml"),
    )
    .expect("valid");
    assert_eq!(
        config.supervisor.log_dir.as_deref(),
        Some(Path::new("/etc/botvisor/logs"))
    );
}

/// The shipped file parses to what README.md documents.
#[test]
fn the_shipped_config_is_the_departments_two_bots() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("supervisor.toml");
    let config = Config::load(&path).expect("the shipped config is valid");
    let bots: Vec<_> = config
        .bots
        .iter()
        .map(|b| {
            (
                b.name.as_str(),
                b.kind.name(),
                b.token_env.as_str(),
                b.enabled,
            )
        })
        .collect();
    assert_eq!(
        bots,
        [
            ("tanitim", "faq", "TANITIM_TOKEN", true),
            ("duyuru", "announcements", "DUYURU_TOKEN", true)
        ]
    );
    assert_eq!(
        config.supervisor,
        SupervisorSettings::default(),
        "the shipped values are the defaults"
    );
}

#[test]
fn the_checker_finds_the_same_positions_by_its_line_index() {
    let text = "[bot.ı]\nkind = \"echo\"\n\n# ünïcode\ntoken_env = \"A\"\n\nlast";
    let checker = super::raw::Checker::new(text, None);
    for offset in 0..=text.len() + 2 {
        assert_eq!(
            checker.at(offset..offset),
            Location::of_offset(text, offset),
            "offset {offset}"
        );
    }
}

#[test]
fn locations_count_characters_not_bytes() {
    let text = "ı = 1\nab";
    assert_eq!(
        Location::of_offset(text, 0),
        Location { line: 1, column: 1 }
    );
    assert_eq!(
        Location::of_offset(text, "ı".len()),
        Location { line: 1, column: 2 }
    );
    assert_eq!(
        Location::of_offset(text, text.len()),
        Location { line: 2, column: 3 }
    );
}

const CONTENT: &str = "greeting = \"Merhaba\"\nhelp_header = \"Komutlar\"\nclosing_question = \"Başka?\"\n\
                       yes_label = \"Evet\"\nno_label = \"Hayır\"\ngoodbye = \"Güle güle\"\n\
                       unknown_command = \"Bilinmeyen komut\"\ncontact = \"@kisi\"\n\
                       [[bot.f.content.command]]\nname = \"staj\"\ndescription = \"Staj\"\nanswer = \"İki staj; soru: {contact}\"\n";

#[test]
fn faq_content_can_be_inline() {
    let text = format!("[bot.f]\nkind = \"faq\"\ntoken_env = \"F\"\n[bot.f.content]\n{CONTENT}");
    let config = Config::from_str(&text, Path::new("x.toml")).expect("valid");
    let KindSettings::Faq(settings) = &config.bot("f").expect("bot f").kind else {
        panic!("not faq");
    };
    assert_eq!(settings.content.greeting, "Merhaba");
    assert_eq!(settings.content.commands[0].name, "staj");
    assert_eq!(settings.content.commands[0].answer, "İki staj; soru: @kisi");
    assert_eq!(settings.content_file, None);
}

#[test]
fn faq_content_problems_in_inline_tables_and_choices() {
    check(
        &format!(
            "[bot.f]\nkind = \"faq\"\ntoken_env = \"F\"\ncontent_file = \"c.toml\"\n[bot.f.content]\n{CONTENT}"
        ),
        &["4:16 bot.f.content_file: give the content either inline"],
    );
    check(
        "[bot.f]\nkind = \"faq\"\ntoken_env = \"F\"\n",
        &["1:6 bot.f: a faq bot needs its content"],
    );
    check(
        &format!(
            "[bot.f]\nkind = \"faq\"\ntoken_env = \"F\"\n[bot.f.content]\n{}",
            CONTENT.replace("name = \"staj\"", "name = \"start\"")
        ),
        &["14:8 bot.f.content.command[0].name: /start is built in"],
    );
    check(
        "[bot.f]\nkind = \"faq\"\ntoken_env = \"F\"\ncontent_file = \"/nonexistent/c.toml\"\n",
        &["4:16 bot.f.content_file: cannot read the content file /nonexistent/c.toml"],
    );
}

#[test]
fn operator_settings_are_checked_with_positions() {
    check(
        &format!(
            "[supervisor]\noperators = [42, -5]\npoll_timeout = \"30s\"\nwatchdog_after = \"20s\"\n\
             [supervisor.http]\nlisten = \"localhost\"\n\
             [supervisor.alerts]\nchat_id = -100\nvia_bot = \"nobody\"\nmax_per_hour = 0\n{BOT}"
        ),
        &[
            "2:18 supervisor.operators: positive whole numbers",
            "4:18 supervisor.watchdog_after: at least poll_timeout + 5s",
            "6:10 supervisor.http.listen: address and port",
            "9:11 supervisor.alerts.via_bot: there is no [bot.nobody]",
            "10:16 supervisor.alerts.max_per_hour: at least 1",
        ],
    );
    check(
        &format!("[supervisor.alerts]\nchat_id = 0\nvia_bot = \"a\"\n{BOT}enabled = false\n"),
        &[
            "2:11 supervisor.alerts.chat_id: must be a chat id",
            "3:11 supervisor.alerts.via_bot: bot a is disabled",
        ],
    );
    check(
        &format!("{BOT}[supervisor.http]\nport = 1\n"),
        &["5:1 supervisor: unknown key `port`, expected `listen`"],
    );
}

#[test]
fn operator_settings_parse() {
    let config = Config::from_str(
        &format!(
            "[supervisor]\noperators = [42, 7]\n\
             [supervisor.http]\nlisten = \"0.0.0.0:$PORT\"\n\
             [supervisor.alerts]\nchat_id = -1001234567890\nvia_bot = \"a\"\n{BOT}"
        ),
        Path::new("x.toml"),
    )
    .expect("valid");
    let s = &config.supervisor;
    assert_eq!(s.operators, [42, 7]);
    assert_eq!(
        s.http.as_ref().map(|h| h.listen.as_str()),
        Some("0.0.0.0:$PORT")
    );
    let alerts = s.alerts.as_ref().expect("alerts");
    assert_eq!(
        (alerts.chat_id, alerts.via_bot.as_str(), alerts.max_per_hour),
        (-1_001_234_567_890, "a", 20)
    );
    // Three long polls by default, never under 30 s.
    assert_eq!(s.watchdog_limit(), Duration::from_secs(90));
    let short = Config::from_str(
        &format!("[supervisor]\npoll_timeout = \"2s\"\n{BOT}"),
        Path::new("x.toml"),
    )
    .expect("valid");
    assert_eq!(short.supervisor.watchdog_limit(), Duration::from_secs(30));
}

#[test]
fn outbox_limits_parse_and_are_checked() {
    let text = "[supervisor.outbox]\npacing = false\nper_chat_per_second = 2\nper_group_per_minute = 0\nmax_age = \"1h\"\n";
    let config = Config::from_str(text, Path::new("test.toml")).expect("valid");
    assert_eq!(
        config.supervisor.outbox,
        OutboxSettings {
            pacing: false,
            per_chat_per_second: 2,
            per_group_per_minute: 0,
            max_age: Duration::from_secs(3600),
            ..OutboxSettings::default()
        }
    );
    check(
        "[supervisor.outbox]\nmax_per_chat = 0\nper_bot_per_second = -1\n",
        &[
            "2:16 supervisor.outbox.max_per_chat: at least 1",
            "3:22 supervisor.outbox.per_bot_per_second: 0 or more",
        ],
    );
}

#[test]
fn webhook_delivery_is_checked_with_positions() {
    let text = "[supervisor.http]\nlisten = \"0.0.0.0:$PORT\"\n[supervisor.webhook]\npublic_url = \"https://$HEROKU_APP_NAME.herokuapp.com/\"\n[bot.a]\nkind = \"echo\"\ntoken_env = \"A_TOKEN\"\ndelivery = \"webhook\"\n";
    let config = Config::from_str(text, Path::new("test.toml")).expect("valid");
    let bot = config.bot("a").expect("bot a");
    assert_eq!(bot.delivery, crate::config::Delivery::Webhook);
    let webhook = config.supervisor.webhook.expect("a webhook table");
    assert_eq!(webhook.public_url, "https://$HEROKU_APP_NAME.herokuapp.com");
    assert_eq!(webhook.max_connections, 10);
    // Without a listener or a public URL, a webhook bot has nowhere to be
    // called.
    check(
        &format!("{BOT}delivery = \"webhook\"\n"),
        &["4:12 bot.a.delivery: needs [supervisor.http] listen"],
    );
    check(
        &format!("{BOT}delivery = \"push\"\n"),
        &["4:12 bot.a.delivery: use \"polling\" or \"webhook\""],
    );
    check(
        "[supervisor.webhook]\npublic_url = \"http://example.org\"\nmax_connections = 0\n",
        &[
            "2:14 supervisor.webhook.public_url: must be https",
            "3:19 supervisor.webhook.max_connections: from 1 to 100",
        ],
    );
    let local = "[supervisor.webhook]\npublic_url = \"http://127.0.0.1:8080\"\n";
    assert!(Config::from_str(local, Path::new("test.toml")).is_ok());
}

/// A folder with a content file (`c.toml`, written as raw bytes) and a
/// config naming it; returns the folder and the config's path.
fn with_content_file(content: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::fs::write(dir.path().join("c.toml"), content).expect("write the content");
    let path = dir.path().join("s.toml");
    std::fs::write(
        &path,
        "[bot.f]\nkind = \"faq\"\ntoken_env = \"F\"\ncontent_file = \"c.toml\"\n",
    )
    .expect("write the config");
    (dir, path)
}

/// The content as a file of its own (without the inline table's header).
fn content_file_text() -> String {
    CONTENT.replace("[[bot.f.content.command]]", "[[command]]")
}

/// The rendered problems of loading `path`.
fn load_problems(path: &Path) -> String {
    Config::load(path)
        .expect_err("the config must be rejected")
        .to_string()
}

#[test]
fn files_that_are_not_text_get_a_position_in_the_file_that_holds_them() {
    // Invalid UTF-8 in the config: line and column of the bad byte.
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("s.toml");
    std::fs::write(&path, b"[supervisor]\nlog_level = \"inf\xff\"\n").expect("write");
    let got = load_problems(&path);
    assert_eq!(
        got,
        format!(
            "{}:2:17: the file is not valid UTF-8 here; save it as UTF-8 (Turkish letters such as ı, ş and ğ are fine in UTF-8)",
            path.display()
        )
    );
    // In a content file: the content file's own position, not the key's.
    let mut bytes = content_file_text().into_bytes();
    let at = bytes.iter().position(|&b| b == b'H').expect("an H");
    bytes[at] = 0xC3; // a lone lead byte
    let (dir, path) = with_content_file(&bytes);
    let got = load_problems(&path);
    let content = dir.path().join("c.toml");
    assert!(
        got.starts_with(&format!(
            "{}:5:13: the file is not valid UTF-8",
            content.display()
        )),
        "{got}"
    );
    // A device that never ends, as the config and as the content.
    let got = load_problems(Path::new("/dev/zero"));
    assert!(
        got.starts_with("/dev/zero:1:1: the file is larger than 1024 KiB"),
        "{got}"
    );
    let (_dir, path) = with_content_file(b"");
    std::fs::write(
        &path,
        "[bot.f]\nkind = \"faq\"\ntoken_env = \"F\"\ncontent_file = \"/dev/zero\"\n",
    )
    .expect("write");
    let got = load_problems(&path);
    assert!(
        got.starts_with("/dev/zero:1:1: the file is larger than 1024 KiB"),
        "{got}"
    );
}

#[test]
fn crlf_and_a_byte_order_mark_are_read_cleanly() {
    let crlf = |text: &str| format!("\u{feff}{}", text.replace('\n', "\r\n"));
    let content = crlf(&content_file_text().replace(
        "answer = \"İki staj; soru: {contact}\"",
        "answer = \"\"\"\nİki staj.\nSoru: {contact}\"\"\"",
    ));
    let (dir, path) = with_content_file(content.as_bytes());
    std::fs::write(
        &path,
        crlf("[bot.f]\nkind = \"faq\"\ntoken_env = \"F\"\ncontent_file = \"c.toml\"\n"),
    )
    .expect("write");
    let config = Config::load(&path).expect("CRLF and a BOM are valid");
    let KindSettings::Faq(faq) = &config.bots[0].kind else {
        panic!("not faq");
    };
    assert_eq!(faq.content.commands[0].answer, "İki staj.\nSoru: @kisi");
    assert!(!format!("{:?}", faq.content).contains('\r'));
    // Positions in such a file are what an editor shows.
    std::fs::write(dir.path().join("c.toml"), crlf("greeting = 1\n")).expect("write");
    let got = load_problems(&path);
    assert!(got.contains("c.toml:1:12: greeting: must be text"), "{got}");
}

#[test]
fn content_file_problems_name_that_file() {
    let text = format!(
        "{}[[command]]\nname = \"staj\"\ndescription = \"Yine\"\nanswer = \"x\"\n# {}\n",
        content_file_text(),
        fake_token()
    );
    let (dir, path) = with_content_file(text.as_bytes());
    let got = load_problems(&path);
    let content = dir.path().join("c.toml").display().to_string();
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines.len(), 2, "{got}");
    assert_eq!(
        lines[0],
        format!(
            "{content}:14:8: command[1].name: /staj is defined twice; the first definition is command[0] at line 10"
        )
    );
    assert!(
        lines[1].starts_with(&format!(
            "{content}:17:3: a bot token is written in this content file"
        )),
        "{got}"
    );
    assert!(!got.contains(&fake_token()));
}

const RELAY: &str = "[bot.d]\nkind = \"announcements\"\ntoken_env = \"D\"\n\
                     list_url = \"https://mdbf.btu.edu.tr/tr/bilgisayar/duyuru/birim/193\"\n";

#[test]
fn relay_settings_get_plain_words_and_sane_minimums() {
    check(
        &format!(
            "{RELAY}link_selector = \"div..x\"\ntext_selector = \"a[=x]\"\ncheck_every = \"1ms\"\nrequest_timeout = \"10ms\"\n"
        ),
        &[
            "5:17 bot.d.link_selector: `div..x` is not a CSS selector: a `.` must be followed by a class name",
            "6:17 bot.d.text_selector: `a[=x]` is not a CSS selector:",
            "7:15 bot.d.check_every: must be at least 30s",
            "8:19 bot.d.request_timeout: must be at least 1s",
        ],
    );
    check(
        &format!(
            "{RELAY}link_selector = \"a\"\ntext_selector = \"p\"\n[bot.d.commands]\nstart = \"ekle\"\nlist = \"ekle\"\n"
        ),
        &["9:8 bot.d.commands.list: /ekle is already the name of commands.start"],
    );
    let text = "[bot.d]\nkind = \"announcements\"\ntoken_env = \"D\"\n\
                list_url = \"http://127.0.0.1:9/\"\nlink_selector = \"a\"\ntext_selector = \"p\"\n\
                check_every = \"200ms\"\n";
    let local = Config::from_str(text, Path::new("x.toml")).expect("a local site may be fast");
    assert!(local.warnings.is_empty());
    // A messages about selectors never asks the operator to report a bug.
    for selector in ["", "a >", "::", "a:hover", "p:nth-child(", "[", "@media"] {
        let text = format!("{RELAY}link_selector = \"{selector}\"\ntext_selector = \"p\"\n");
        let err = Config::from_str(&text, Path::new("x.toml"))
            .expect_err("not a selector")
            .to_string();
        assert!(err.contains("is not a CSS selector: "), "{selector}: {err}");
        assert!(
            !err.contains("Unexpected error") && !err.contains("developer"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn legal_but_dangerous_settings_are_warnings() {
    let text = format!(
        "[supervisor]\nshutdown_timeout = \"40s\"\n{RELAY}link_selector = \"a\"\ntext_selector = \"p\"\ncheck_every = \"1m\"\n"
    );
    let config = Config::from_str(&text, Path::new("x.toml")).expect("legal");
    let warnings: Vec<String> = config
        .warnings
        .iter()
        .map(|w| w.render(&config.path))
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(
        warnings[0].starts_with("x.toml:2:20: supervisor.shutdown_timeout: 40s is not under 30s"),
        "{warnings:#?}"
    );
    assert!(
        warnings[1].starts_with("x.toml:9:15: bot.d.check_every: reads the site 60 times an hour"),
        "{warnings:#?}"
    );
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("supervisor.toml");
    assert!(Config::load(&shipped).expect("valid").warnings.is_empty());
}

#[test]
fn process_bots_are_checked_with_positions() {
    let dir = tempfile::tempdir().expect("a folder");
    let script = dir.path().join("bot.sh");
    std::fs::write(&script, "#!/bin/sh\n").expect("write");
    let not_executable = dir.path().join("plain.txt");
    std::fs::write(&not_executable, "x").expect("write");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let path = dir.path().join("supervisor.toml");
    let parse = |text: &str| Config::from_str(text, &path);
    let head = "[bot.q]\nkind = \"process\"\ntoken_env = \"Q_TOKEN\"\n";
    // A program on PATH, one beside the config, an env table.
    let config = parse(&format!(
        "{head}command = [\"./bot.sh\", \"--level\", \"hard\"]\nenv = {{ QUIZ_LEVEL = \"hard\" }}\n"
    ))
    .expect("valid");
    let KindSettings::Process(settings) = &config.bots[0].kind else {
        panic!("a process bot");
    };
    assert_eq!(settings.command, ["./bot.sh", "--level", "hard"]);
    assert_eq!(settings.workdir, dir.path());
    assert_eq!(
        settings.env.get("QUIZ_LEVEL").map(String::as_str),
        Some("hard")
    );
    assert!(parse(&format!("{head}command = [\"sh\", \"-c\", \"true\"]\n")).is_ok());
    let problems = |text: &str| match parse(text) {
        Err(ConfigError::Invalid { problems, .. }) => problems
            .iter()
            .map(|p| format!("{} {}: {}", p.at, p.key, p.message))
            .collect::<Vec<_>>(),
        other => panic!("expected problems, got {other:?}"),
    };
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{head}command = []\n"),
            "4:11 bot.q.command: names no program",
        ),
        (
            format!("{head}command = [\"no-such-program-here\"]\n"),
            "4:12 bot.q.command: `no-such-program-here` is not found on PATH",
        ),
        (
            format!("{head}command = [\"./missing.sh\"]\n"),
            "4:12 bot.q.command: `./missing.sh` does not exist",
        ),
        (
            format!("{head}command = [\"./plain.txt\"]\n"),
            "4:12 bot.q.command: `./plain.txt` is not executable",
        ),
        (
            format!("{head}command = [\"sh\"]\nworkdir = \"nowhere\"\n"),
            "5:11 bot.q.workdir: the folder",
        ),
        (
            format!("{head}command = [\"sh\"]\nenv = {{ BOT_TOKEN = \"x\" }}\n"),
            "5:21 bot.q.env.BOT_TOKEN: botvisor sets this variable itself",
        ),
        (
            format!("{head}comand = [\"sh\"]\n"),
            "4:1 bot.q: unknown key `comand`",
        ),
        (
            "[supervisor.gateway]\nlisten = \"0.0.0.0:8081\"\n".to_owned(),
            "2:10 supervisor.gateway.listen: must be a loopback address",
        ),
    ];
    for (text, expected) in cases {
        let got = problems(&text);
        assert!(
            got.iter().any(|p| p.starts_with(expected)),
            "{text}\ngot {got:#?}\nexpected {expected:?}"
        );
    }
    let gateway = parse("[supervisor.gateway]\nlisten = \"127.0.0.1:8081\"\nspool_dir = \"up\"\n")
        .expect("valid");
    assert_eq!(gateway.supervisor.gateway.listen.port(), 8081);
    assert_eq!(
        gateway.supervisor.gateway.spool_dir,
        Some(dir.path().join("up"))
    );
}

#[test]
fn included_files_add_bots_with_their_own_positions() {
    let dir = tempfile::tempdir().expect("a folder");
    let bots_d = dir.path().join("bots.d");
    std::fs::create_dir(&bots_d).expect("a folder");
    std::fs::write(
        bots_d.join("10-quiz.toml"),
        "[bot.quiz]\nkind = \"echo\"\ntoken_file = \"quiz.token\"\n",
    )
    .expect("write");
    std::fs::write(
        bots_d.join("20-more.toml"),
        "[bot.more]\nkind = \"echo\"\ntoken_env = \"MORE_TOKEN\"\n",
    )
    .expect("write");
    let path = dir.path().join("supervisor.toml");
    let main = "include = [\"bots.d/*.toml\"]\n[bot.a]\nkind = \"echo\"\ntoken_env = \"A\"\n";
    let config = Config::from_str(main, &path).expect("valid");
    let names: Vec<&str> = config.bots.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["a", "quiz", "more"]);
    let quiz = config.bot("quiz").expect("quiz");
    // Relative to the file that names it.
    assert_eq!(
        quiz.token_file.as_deref(),
        Some(bots_d.join("quiz.token").as_path())
    );
    assert_eq!(
        quiz.file.as_deref(),
        Some(bots_d.join("10-quiz.toml").as_path())
    );
    assert_eq!(
        quiz.token_source(),
        format!("the token file {}", bots_d.join("quiz.token").display())
    );

    // A problem in an included file names that file, line and column; a
    // name defined twice names the first place.
    std::fs::write(
        bots_d.join("30-bad.toml"),
        "[bot.a]\nkind = \"echo\"\ntoken_env = \"OTHER\"\n[bot.b]\nkind = \"weather\"\ntoken_env = \"B\"\n[supervisor]\n",
    )
    .expect("write");
    let err = Config::from_str(main, &path).expect_err("invalid");
    let rendered = err.to_string();
    let bad = bots_d.join("30-bad.toml").display().to_string();
    assert!(
        rendered.contains(&format!(
            "{bad}:1:6: bot.a: bot a is already defined at {}:2:6",
            path.display()
        )),
        "{rendered}"
    );
    assert!(
        rendered.contains(&format!("{bad}:5:8: bot.b.kind: unknown kind `weather`")),
        "{rendered}"
    );
    assert!(
        rendered.contains(&format!("{bad}:7:2: supervisor: an included file holds")),
        "{rendered}"
    );
    std::fs::remove_file(bots_d.join("30-bad.toml")).expect("remove");

    // A pattern that names the config itself (`*.toml` beside it, however
    // the path is spelled) skips it.
    std::fs::write(&path, "include = [\"*.toml\", \"bots.d/*.toml\"]\n").expect("write");
    let config = Config::load(&path).expect("the config does not include itself");
    assert_eq!(config.bots.len(), 2);
    // `--config supervisor.toml` names it `supervisor.toml`, the pattern
    // `./supervisor.toml`: one file (the tests run in the package's folder).
    assert!(super::raw::same_file(
        Path::new("./Cargo.toml"),
        Path::new("Cargo.toml")
    ));
    assert!(!super::raw::same_file(
        Path::new("Cargo.toml"),
        Path::new("README.md")
    ));

    // Patterns that name nothing usable, and a table with both token keys.
    for (text, expected) in [
        (
            "include = \"bots.d/*.toml\"\n",
            "1:11 include: must be a list",
        ),
        (
            "include = [\"nowhere/*.toml\"]\n",
            "1:12 include: cannot read the folder",
        ),
        ("include = [\"bots.d/none.toml\"]\n", "1:12 include:"),
        (
            "[bot.x]\nkind = \"echo\"\ntoken_env = \"X\"\ntoken_file = \"x\"\n",
            "4:14 bot.x.token_file: give token_env or token_file, not both",
        ),
        ("[bot.x]\nkind = \"echo\"\n", "1:6 bot.x: needs token_env"),
    ] {
        let err = Config::from_str(text, &path).expect_err(text);
        let ConfigError::Invalid { problems, .. } = &err else {
            panic!("{err}");
        };
        let got: Vec<String> = problems
            .iter()
            .map(|p| format!("{} {}: {}", p.at, p.key, p.message))
            .collect();
        assert!(
            got.iter().any(|g| g.starts_with(expected)),
            "{text}: {got:#?}"
        );
    }
}
