//! The daemon's start-up check, and `botvisor check`, which is that check
//! without the starting.
//!
//! [`startup`] decides, from a validated config and the environment, which
//! bots would run, why each other enabled bot would not, and what would stop
//! the daemon from starting at all (no bot can run, `$PORT` unset for the
//! status endpoint, a store variable that is not a PostgreSQL URL, a bad
//! `RUST_LOG`, a `log_dir` that cannot be created or written to; like the
//! daemon, the check creates a missing `log_dir`). The daemon refuses to
//! start on exactly these errors and
//! `check` reports them in the same words; the supervisor takes its list of
//! runnable bots from [`bots`]. `check` is stricter in one way only: an
//! enabled bot the daemon would skip (its token variable unset, not a
//! token, or a token another bot already uses) fails `check`, because an
//! operator runs `check` to learn that every enabled bot will run.
//!
//! [`Mode::NoEnv`] checks the config and its content without reading the
//! environment, for a laptop that has no tokens (they live in Heroku's
//! config vars), and lists the variables it did not check. Nothing here
//! prints a token: a bot's line says whether its variable is usable, never
//! what it holds.

use std::sync::LazyLock;

use regex::Regex;

use crate::config::{BotConfig, Config, Environment, Location, Problem, render_problems};
use crate::secret::Token;

/// What BotFather hands out: the bot's id, `:`, and URL-safe characters.
/// Real tokens have 35 characters after the colon; any length is accepted,
/// so the fake Telegram's short test tokens are tokens too. This catches a
/// value that is plainly not a token: a placeholder, a pasted `bot` prefix,
/// quotes or spaces.
static TOKEN_SHAPE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[0-9]+:[A-Za-z0-9_-]+$").expect("the token pattern is valid"));

/// Whether `check` reads the environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// As the daemon would start: the process environment and `.env`.
    Full,
    /// The config and content only; no variable is read.
    NoEnv,
}

/// What would become of one bot at start.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// It runs, with this token.
    Runs(Token),
    /// `enabled = false`.
    Disabled,
    /// It is enabled but would not run, for this reason (the daemon's
    /// words, e.g. `TANITIM_TOKEN is not set`).
    Skipped(String),
    /// Enabled; its token was not looked at ([`Mode::NoEnv`]).
    NotChecked,
}

/// The bots of a config, each with its [`Outcome`], in the file's order.
pub struct Bots {
    pub bots: Vec<(BotConfig, Outcome)>,
}

impl Bots {
    /// The bots that would run, with their tokens.
    pub fn runnable(&self) -> Vec<(BotConfig, Token)> {
        self.bots
            .iter()
            .filter_map(|(bot, outcome)| match outcome {
                Outcome::Runs(token) => Some((bot.clone(), token.clone())),
                _ => None,
            })
            .collect()
    }

    /// The enabled bots that would not run, by name, with the reason.
    pub fn skipped(&self) -> Vec<(String, String)> {
        self.bots
            .iter()
            .filter_map(|(bot, outcome)| match outcome {
                Outcome::Skipped(reason) => Some((bot.name.clone(), reason.clone())),
                _ => None,
            })
            .collect()
    }
}

/// Decides each bot's outcome from `env`: an enabled bot runs when its
/// variable holds something token-shaped that no earlier bot uses.
pub fn bots(config: &Config, env: &Environment) -> Bots {
    let mut out: Vec<(BotConfig, Outcome)> = Vec::new();
    // The bots that run so far, by token: a map, as thousands of bots are
    // checked at each start and SIGHUP.
    let mut running: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for bot in &config.bots {
        let outcome = if !bot.enabled {
            Outcome::Disabled
        } else {
            match env.token_of(bot) {
                Err(reason) => Outcome::Skipped(reason),
                Ok(token) if !TOKEN_SHAPE.is_match(token.expose()) => Outcome::Skipped(format!(
                    "{} does not hold a bot token: a token from BotFather is digits, `:` \
                         and letters, digits, `_` or `-`; look for quotes, spaces or a `bot` prefix",
                    bot.token_source()
                )),
                // Two workers with one token would end each other's long polls.
                Ok(token) => match running.get(token.expose()) {
                    Some(first) => Outcome::Skipped(format!(
                        "{} holds the same token as bot {first}",
                        bot.token_source(),
                    )),
                    None => match webhook_target(config, bot, env) {
                        Some(Err(reason)) => Outcome::Skipped(reason),
                        _ => {
                            running.insert(token.expose().to_owned(), bot.name.clone());
                            Outcome::Runs(token)
                        }
                    },
                },
            }
        };
        out.push((bot.clone(), outcome));
    }
    Bots { bots: out }
}

/// Where a webhook bot's updates arrive (`None` for a polling bot), or why
/// its URL cannot be made (a variable of `public_url` not set, or the
/// result not a URL Telegram calls).
pub fn webhook_target(
    config: &Config,
    bot: &BotConfig,
    env: &Environment,
) -> Option<Result<crate::webhook::Target, String>> {
    if bot.delivery != crate::config::Delivery::Webhook {
        return None;
    }
    let Some(settings) = &config.supervisor.webhook else {
        return Some(Err("[supervisor.webhook] is missing".to_owned()));
    };
    Some(
        crate::webhook::url_for(&settings.public_url, &bot.name, env).map(|url| {
            crate::webhook::Target {
                url,
                max_connections: settings.max_connections,
            }
        }),
    )
}

/// Why no bot can run, or `None` when at least one can: the text of the
/// daemon's `no bot can run: …` error.
pub fn nothing_to_run(runnable: usize, skipped: &[(String, String)]) -> Option<String> {
    if runnable > 0 {
        None
    } else if skipped.is_empty() {
        Some("the config enables no bot".to_owned())
    } else {
        let reasons: Vec<String> = skipped
            .iter()
            .map(|(name, reason)| format!("{name}: {reason}"))
            .collect();
        Some(reasons.join("; "))
    }
}

/// The verdict of the start-up check.
pub struct Startup {
    pub bots: Bots,
    /// Each enabled bot that would not run, at its `token_env`.
    pub skipped: Vec<Problem>,
    /// What stops the daemon from starting at all. Empty: it starts.
    pub errors: Vec<Problem>,
    /// The variables [`Mode::NoEnv`] did not read.
    pub not_checked: Vec<String>,
}

impl Startup {
    /// True when `check` passes: the daemon would start and run every
    /// enabled bot.
    pub fn passes(&self) -> bool {
        self.errors.is_empty() && self.skipped.is_empty()
    }
}

/// A problem about the start as a whole, with no place in the file.
fn general(message: String) -> Problem {
    Problem {
        at: Location { line: 0, column: 0 },
        file: None,
        key: String::new(),
        message,
    }
}

/// The daemon's start-up check: which bots run, and what would stop the
/// start. [`Mode::NoEnv`] reads no variable and checks only what the
/// config alone decides.
pub fn startup(config: &Config, env: &Environment, mode: Mode) -> Startup {
    let mut errors = Vec::new();
    let mut not_checked = Vec::new();
    let bots = match mode {
        Mode::Full => bots(config, env),
        Mode::NoEnv => Bots {
            bots: config
                .bots
                .iter()
                .map(|bot| {
                    let outcome = if bot.enabled {
                        not_checked.push(bot.token_source());
                        Outcome::NotChecked
                    } else {
                        Outcome::Disabled
                    };
                    (bot.clone(), outcome)
                })
                .collect(),
        },
    };
    let skipped: Vec<Problem> = bots
        .bots
        .iter()
        .filter_map(|(bot, outcome)| match outcome {
            Outcome::Skipped(reason) => Some(Problem {
                at: bot.token_env_at,
                file: bot.file.clone(),
                key: format!("bot.{}.{}", bot.name, bot.token_key()),
                message: reason.clone(),
            }),
            _ => None,
        })
        .collect();
    let unchecked = bots
        .bots
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::NotChecked))
        .count();
    if let Some(reason) = nothing_to_run(bots.runnable().len() + unchecked, &bots.skipped()) {
        errors.push(general(format!("no bot can run: {reason}")));
    }
    match mode {
        Mode::Full => {
            if let Some(http) = &config.supervisor.http
                && let Err(err) = crate::http::address(http, env)
            {
                errors.push(general(err.to_string()));
            }
            if let Err(err) = config.store_spec(env) {
                errors.push(general(err));
            }
            if let Some(dir) = &config.supervisor.log_dir
                && let Err(err) = crate::logging::prepare_dir(dir)
            {
                errors.push(general(err.to_string()));
            }
            if let Ok(filter) = std::env::var("RUST_LOG")
                && let Err(err) = tracing_subscriber::EnvFilter::builder().parse(&filter)
            {
                errors.push(general(
                    crate::logging::LogError::Filter(err.to_string()).to_string(),
                ));
            }
        }
        Mode::NoEnv => {
            if config
                .supervisor
                .http
                .as_ref()
                .is_some_and(|http| http.listen.contains("$PORT"))
            {
                not_checked.push("PORT".to_owned());
            }
            not_checked.push(config.supervisor.store_env.clone());
            not_checked.push("RUST_LOG".to_owned());
        }
    }
    Startup {
        bots,
        skipped,
        errors,
        not_checked,
    }
}

/// Settings that are legal but risky given the environment: a token file
/// other users may read, and a process bot's program that runs inside the
/// folder of the `.env` file botvisor reads, which holds the real tokens
/// (python-dotenv's `load_dotenv`, and others, look for a `.env` in every
/// folder above the program).
pub fn environment_warnings(config: &Config, env: &Environment) -> Vec<Problem> {
    let mut warnings: Vec<Problem> = config
        .bots
        .iter()
        .filter(|bot| bot.enabled)
        .filter_map(|bot| {
            use std::os::unix::fs::PermissionsExt;
            let file = bot.token_file.as_ref()?;
            let mode = std::fs::metadata(file).ok()?.permissions().mode() & 0o777;
            (mode & 0o077 != 0).then(|| Problem {
                at: bot.token_env_at,
                file: bot.file.clone(),
                key: format!("bot.{}.token_file", bot.name),
                message: format!(
                    "{} can be read by other users (mode {mode:03o}); `chmod 600` it",
                    bot.token_source()
                ),
            })
        })
        .collect();
    let Some(dotenv) = env.dotenv_path() else {
        return warnings;
    };
    let Some(folder) = dotenv.parent() else {
        return warnings;
    };
    warnings.extend(config
        .bots
        .iter()
        .filter(|bot| bot.enabled)
        .filter_map(|bot| match &bot.kind {
            crate::config::KindSettings::Process(process)
                if process.workdir.starts_with(folder) =>
            {
                Some(Problem {
                    at: bot.token_env_at,
                    file: None,
                    key: format!("bot.{}.workdir", bot.name),
                    message: format!(
                        "the program runs inside the folder of {}, which holds the real tokens: a \
                         library that looks for .env in the folders above it (python-dotenv's \
                         load_dotenv) would read them; keep the tokens in the environment, or \
                         .env out of the program's folders",
                        dotenv.display()
                    ),
                })
            }
            _ => None,
        }));
    warnings
}

/// What `botvisor check` prints: one line per bot, the warnings, and the
/// verdict.
pub struct Report {
    /// One line per bot: name, kind, token variable, and what became of it.
    pub lines: Vec<String>,
    /// `warning: file:line:column: key: message`, one per warning.
    pub warnings: Vec<String>,
    /// The problems that fail the check, rendered; empty when it passes.
    pub problems: String,
    /// The last line when the check passes.
    pub summary: String,
    pub passes: bool,
}

/// Runs the start-up check and words its outcome for `botvisor check`.
pub fn check(config: &Config, env: &Environment, mode: Mode) -> Report {
    let startup = startup(config, env, mode);
    // Columns are padded by hand: a format width over 65,535 panics, and a
    // long name should not push the others off the screen either.
    let width = |values: Vec<usize>| values.into_iter().max().unwrap_or(0).min(32);
    let name_width = width(config.bots.iter().map(|b| b.name.chars().count()).collect());
    let kind_width = width(config.bots.iter().map(|b| b.kind.name().len()).collect());
    let env_width = width(
        config
            .bots
            .iter()
            .map(|b| token_column(b).chars().count())
            .collect(),
    );
    let lines = startup
        .bots
        .bots
        .iter()
        .map(|(bot, outcome)| {
            let state = match outcome {
                Outcome::Runs(_) => "token set".to_owned(),
                Outcome::Disabled => "disabled".to_owned(),
                Outcome::NotChecked => "token not checked (--no-env)".to_owned(),
                Outcome::Skipped(reason) if reason.ends_with("is not set") => {
                    "token NOT SET".to_owned()
                }
                Outcome::Skipped(reason) if reason.contains("same token") => {
                    "SAME TOKEN as another bot".to_owned()
                }
                Outcome::Skipped(reason)
                    if bot.token_file.is_some()
                        && reason.contains("the token file")
                        && !reason.contains("does not hold") =>
                {
                    "token file NOT READABLE".to_owned()
                }
                Outcome::Skipped(_) => "NOT A TOKEN".to_owned(),
            };
            format!(
                "{}  {}  {}  {state}",
                pad(&bot.name, name_width),
                pad(bot.kind.name(), kind_width),
                pad(&token_column(bot), env_width)
            )
        })
        .collect();
    let mut warnings: Vec<String> = config
        .warnings
        .iter()
        .map(|w| format!("warning: {}", w.render(&config.path)))
        .collect();
    if mode == Mode::Full {
        warnings.extend(
            environment_warnings(config, env)
                .into_iter()
                .map(|w| format!("warning: {}", w.render(&config.path))),
        );
        warnings.extend(descriptor_warning(config).map(|w| format!("warning: {w}")));
    }
    let mut problems = startup.skipped.clone();
    problems.extend(startup.errors.iter().cloned());
    let enabled = config.bots.iter().filter(|b| b.enabled).count();
    let mut summary = format!(
        "{}: valid, {} bot(s), {enabled} enabled",
        config.path.display(),
        config.bots.len()
    );
    if !startup.not_checked.is_empty() {
        summary.push_str(&format!(
            "; not checked without the environment: {}",
            startup.not_checked.join(", ")
        ));
    }
    Report {
        lines,
        warnings,
        problems: render_problems(&config.path, &problems),
        summary,
        passes: startup.passes(),
    }
}

/// Whether the enabled bots need more file descriptors than the process
/// may open (checked by `check` and at start).
pub fn descriptor_warning(config: &Config) -> Option<String> {
    let enabled = config.bots.iter().filter(|b| b.enabled);
    let programs = enabled
        .clone()
        .filter(|b| matches!(b.kind, crate::config::KindSettings::Process(_)))
        .count();
    crate::limits::descriptor_warning(
        crate::limits::descriptors_needed(enabled.count(), programs),
        crate::limits::descriptor_hard_limit(),
    )
}

/// What `check`'s token column shows: the variable, or `file:<name>`.
fn token_column(bot: &BotConfig) -> String {
    match &bot.token_file {
        Some(file) => format!(
            "file:{}",
            file.file_name().map_or_else(
                || file.display().to_string(),
                |n| n.to_string_lossy().into_owned()
            )
        ),
        None => bot.token_env.clone(),
    }
}

/// `text` followed by spaces up to `width` characters (no truncation).
fn pad(text: &str, width: usize) -> String {
    let len = text.chars().count();
    let mut out = text.to_owned();
    out.extend(std::iter::repeat_n(' ', width.saturating_sub(len)));
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const TOKEN_A: &str = "101:token-of-bot-a";
    const TWO_BOTS: &str = "[bot.a]\nkind = \"echo\"\ntoken_env = \"A\"\n\
                            [bot.b]\nkind = \"echo\"\ntoken_env = \"B\"\n";

    fn parse(text: &str) -> Config {
        Config::from_str(text, Path::new("s.toml")).expect("a valid config")
    }

    /// One case: config, variables, the rendered problems `check` shows
    /// (empty: it passes), and whether the daemon would refuse to start.
    type Case = (
        String,
        Vec<(&'static str, &'static str)>,
        Vec<&'static str>,
        bool,
    );

    #[test]
    fn the_start_up_verdict_as_a_table() {
        let listen = format!("[supervisor.http]\nlisten = \"0.0.0.0:$PORT\"\n{TWO_BOTS}");
        let cases: Vec<Case> = vec![
            (
                TWO_BOTS.into(),
                vec![("A", TOKEN_A), ("B", "202:token-of-bot-b")],
                vec![],
                false,
            ),
            // One bot without its token: the daemon runs the other.
            (
                TWO_BOTS.into(),
                vec![("A", TOKEN_A)],
                vec!["s.toml:6:13: bot.b.token_env: B is not set"],
                false,
            ),
            (
                TWO_BOTS.into(),
                vec![("A", TOKEN_A), ("B", TOKEN_A)],
                vec!["s.toml:6:13: bot.b.token_env: B holds the same token as bot a"],
                false,
            ),
            (
                TWO_BOTS.into(),
                vec![("A", "hello"), ("B", "bot202:x")],
                vec![
                    "s.toml:3:13: bot.a.token_env: A does not hold a bot token",
                    "s.toml:6:13: bot.b.token_env: B does not hold a bot token",
                    "s.toml: no bot can run: a: A does not hold a bot token",
                ],
                true,
            ),
            (
                "[bot.a]\nkind = \"echo\"\ntoken_env = \"A\"\nenabled = false\n".into(),
                vec![("A", TOKEN_A)],
                vec!["s.toml: no bot can run: the config enables no bot"],
                true,
            ),
            (
                listen.clone(),
                vec![("A", TOKEN_A), ("B", "202:token-of-bot-b")],
                vec![
                    "s.toml: [supervisor.http] listen = \"0.0.0.0:$PORT\" needs the PORT variable, which is not set",
                ],
                true,
            ),
            (
                listen,
                vec![
                    ("A", TOKEN_A),
                    ("B", "202:token-of-bot-b"),
                    ("PORT", "5000"),
                ],
                vec![],
                false,
            ),
            (
                TWO_BOTS.into(),
                vec![
                    ("A", TOKEN_A),
                    ("B", "202:token-of-bot-b"),
                    ("DATABASE_URL", "mysql://x"),
                ],
                vec!["s.toml: DATABASE_URL is set but is not a postgres:// URL"],
                true,
            ),
        ];
        for (text, vars, expected, refuses) in cases {
            let config = parse(&text);
            let env = Environment::isolated(vars.clone());
            let report = check(&config, &env, Mode::Full);
            let got: Vec<&str> = report.problems.lines().collect();
            assert_eq!(got.len(), expected.len(), "{vars:?}: {got:#?}");
            for (got, expected) in got.iter().zip(&expected) {
                assert!(
                    got.starts_with(expected),
                    "{vars:?}: {got:?} vs {expected:?}"
                );
            }
            assert_eq!(report.passes, expected.is_empty(), "{vars:?}");
            let startup = startup(&config, &env, Mode::Full);
            assert_eq!(!startup.errors.is_empty(), refuses, "{vars:?}");
            // No token is ever part of what check prints.
            let all = format!("{}\n{}", report.lines.join("\n"), report.problems);
            assert!(!all.contains("token-of-bot"), "{all}");
        }
    }

    #[test]
    fn without_the_environment_only_the_file_is_checked() {
        let config = parse(&format!(
            "[supervisor.http]\nlisten = \"0.0.0.0:$PORT\"\n{TWO_BOTS}"
        ));
        // A variable set in the environment is not read either.
        let env = Environment::isolated([("A", "hello")]);
        let report = check(&config, &env, Mode::NoEnv);
        assert!(report.passes, "{}", report.problems);
        assert!(
            report.summary.ends_with(
                "not checked without the environment: A, B, PORT, DATABASE_URL, RUST_LOG"
            ),
            "{}",
            report.summary
        );
        assert!(report.lines[0].ends_with("token not checked (--no-env)"));
        let disabled = parse("[bot.a]\nkind = \"echo\"\ntoken_env = \"A\"\nenabled = false\n");
        assert!(!check(&disabled, &env, Mode::NoEnv).passes);
    }

    #[test]
    fn long_names_do_not_break_the_table() {
        assert_eq!(pad("ab", 4), "ab  ");
        assert_eq!(pad("abcdef", 4), "abcdef");
        assert_eq!(pad("ğü", 3), "ğü ");
    }

    #[test]
    fn a_program_beside_the_tokens_dotenv_is_a_warning() {
        let dir = tempfile::tempdir().expect("a folder");
        std::fs::write(dir.path().join(".env"), "Q_TOKEN=1:x\n").expect("write .env");
        std::fs::create_dir(dir.path().join("bots")).expect("a folder");
        let text = "[bot.q]\nkind = \"process\"\ntoken_env = \"Q_TOKEN\"\ncommand = [\"sh\"]\nworkdir = \"bots\"\n";
        let config = Config::from_str(text, &dir.path().join("supervisor.toml")).expect("valid");
        let env = Environment::with_dotenv(dir.path()).expect("the .env");
        let warnings = environment_warnings(&config, &env);
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].key, "bot.q.workdir");
        assert!(
            warnings[0].message.contains("load_dotenv"),
            "{}",
            warnings[0].message
        );
        // Without a .env, nothing to say.
        assert!(
            environment_warnings(
                &config,
                &Environment::isolated(Vec::<(String, String)>::new())
            )
            .is_empty()
        );
    }

    #[test]
    fn a_token_file_is_read_and_its_permissions_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("a folder");
        let file = dir.path().join("q.token");
        let token = format!("{}:{}", 5_550_001, "T".repeat(35));
        std::fs::write(&file, format!("{token}\n")).expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let text = "[bot.q]\nkind = \"echo\"\ntoken_file = \"q.token\"\n";
        let config = Config::from_str(text, &dir.path().join("supervisor.toml")).expect("valid");
        let env = Environment::isolated(Vec::<(String, String)>::new());
        let found = bots(&config, &env);
        assert!(matches!(&found.bots[0].1, Outcome::Runs(t) if t.expose() == token));
        assert!(environment_warnings(&config, &env).is_empty());
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let warnings = environment_warnings(&config, &env);
        assert!(
            warnings[0].message.contains("mode 644"),
            "{}",
            warnings[0].message
        );
        let report = check(&config, &env, Mode::Full);
        assert!(
            report.lines[0].contains("file:q.token"),
            "{:?}",
            report.lines
        );
        // A FIFO is refused at once rather than read (it would block).
        std::fs::remove_file(&file).expect("remove");
        let fifo = std::ffi::CString::new(file.as_os_str().as_encoded_bytes()).expect("a path");
        // SAFETY: mkfifo reads a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let found = bots(&config, &env);
        assert!(
            matches!(&found.bots[0].1, Outcome::Skipped(reason) if reason.contains("not a regular file")),
            "{:?}",
            found.bots[0].1
        );
        std::fs::remove_file(&file).expect("remove");
        let found = bots(&config, &env);
        assert!(
            matches!(&found.bots[0].1, Outcome::Skipped(reason) if reason.ends_with("q.token does not exist")),
            "{:?}",
            found.bots[0].1
        );
    }
}
