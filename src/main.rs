//! The `botvisor` command: parses the command line, loads the config, sets
//! up logging and runs the daemon, and turns the outcome into an exit code.
//!
//! Every fatal error is reported once, on stderr as `botvisor: …`, whether
//! it is found before logging starts (a config the daemon refuses, in the
//! words `check` uses) or after (a store that cannot be reached): Heroku
//! merges stdout and stderr, so a log line as well would show it twice.
//! Output to a closed pipe (`faq-preview | head -1`) ends the command
//! quietly.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use botvisor::check::Mode;
use botvisor::config::{Config, Environment, KindSettings, render_problems};
use botvisor::http::HttpError;
use botvisor::secret::Redactor;
use botvisor::{EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, RunError};

const AFTER_HELP: &str = "\
Environment:
  Each bot's token is read from the variable its `token_env` names (e.g.
  TANITIM_TOKEN). A `.env` file beside the config fills in variables the
  environment does not set. DATABASE_URL (the `store_env`) selects
  PostgreSQL, PORT fills `$PORT` in [supervisor.http] listen, RUST_LOG
  overrides `log_level`.

Signals (the daemon):
  SIGTERM, SIGINT  stop cleanly within `shutdown_timeout`; a second one stops at once
  SIGHUP           reload supervisor.toml and .env
  SIGUSR1          log one status line for every bot

Exit codes:
  0   clean shutdown (or `check` found the config valid)
  1   a fatal error that is not a config error (or a preview found nothing)
  2   the command line is wrong
  78  the config is invalid, or no bot can run (EX_CONFIG)";

/// Runs every Telegram bot of a supervisor.toml as a supervised,
/// restartable task in one process.
#[derive(Parser)]
#[command(name = "botvisor", version, after_help = AFTER_HELP)]
struct Cli {
    /// The config file. Relative paths in it resolve against its folder.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        default_value = "supervisor.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon's start-up check without starting: the config, the
    /// content, and each bot's token variable (never its value). Exits 0
    /// when every enabled bot would run, 78 when not.
    Check {
        /// Check the config and content only, without reading the
        /// environment or `.env` (tokens kept elsewhere, e.g. in Heroku);
        /// lists the variables it did not check.
        #[arg(long)]
        no_env: bool,
    },
    /// Print what a faq bot would answer (text and buttons), without
    /// Telegram and without a token.
    FaqPreview {
        /// The bot's name in the config; may be left out when the config
        /// has one faq bot.
        #[arg(long)]
        bot: Option<String>,
        /// One command, e.g. `erasmus` or `/help`; all of them when left out.
        command: Option<String>,
    },
    /// Fetch an announcements bot's list page once and print the
    /// announcements it would see (id, title, link, first lines of text),
    /// to try selectors after the site changes. Sends nothing. Exits 1 when
    /// the page cannot be read or the link selector finds nothing.
    AnnouncementsPreview {
        /// The bot's name in the config; may be left out when the config
        /// has one announcements bot.
        #[arg(long)]
        bot: Option<String>,
    },
    /// Run the configured bots against a fake Telegram on this machine and
    /// chat with them in the terminal: no tokens, no network, a throwaway
    /// store.
    Sandbox,
    /// Print the fleet on the PostgreSQL store (`DATABASE_URL` or
    /// `store`): each instance with the bots it holds, their lease
    /// generation and age, and the bots moving between instances.
    Fleet,
}

fn main() -> ExitCode {
    // The reaper between botvisor and a process bot's program: no command
    // line parsing, no config, no logging.
    let mut args = std::env::args_os().skip(1);
    if args
        .next()
        .is_some_and(|arg| arg == botvisor::bots::process::reaper::ARG)
    {
        return botvisor::bots::process::reaper::run(args.collect());
    }
    if let Ok(binary) = std::env::current_exe() {
        botvisor::bots::process::use_reaper(binary);
    }
    let cli = Cli::parse();
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(err) => return fail(EXIT_CONFIG, &err.to_string()),
    };
    match cli.command {
        // The sandbox invents its tokens: it reads neither `.env` nor them.
        Some(Command::Sandbox) => sandbox(config),
        Some(Command::Check { no_env: true }) => check(
            &config,
            &Environment::isolated::<_, String, String>([]),
            Mode::NoEnv,
        ),
        // The previews need no token either, but read `.env` like the
        // daemon so that a broken one is noticed here too.
        command => {
            let env = match Environment::with_dotenv(config.dir()) {
                Ok(env) => env,
                Err(err) => return fail(EXIT_CONFIG, &err.to_string()),
            };
            match command {
                Some(Command::Check { .. }) => check(&config, &env, Mode::Full),
                Some(Command::FaqPreview { bot, command }) => {
                    faq_preview(&config, bot.as_deref(), command.as_deref())
                }
                Some(Command::AnnouncementsPreview { bot }) => {
                    announcements_preview(&config, bot.as_deref())
                }
                Some(Command::Fleet) => fleet(&config, &env),
                // Handled above; listed so a new command cannot fall
                // through to the daemon unnoticed.
                Some(Command::Sandbox) => sandbox(config),
                None => daemon(config, env),
            }
        }
    }
}

fn check(config: &Config, env: &Environment, mode: Mode) -> ExitCode {
    let report = botvisor::check::check(config, env, mode);
    let mut text = report.lines.join("\n");
    for warning in &report.warnings {
        text.push('\n');
        text.push_str(warning);
    }
    if report.passes {
        text.push('\n');
        text.push_str(&report.summary);
        print_out(&text, EXIT_OK)
    } else {
        // The table first, then the verdict on stderr.
        if !text.is_empty() {
            let code = print_out(&text, EXIT_OK);
            if code != ExitCode::from(EXIT_OK) {
                return code;
            }
        }
        fail(EXIT_CONFIG, &report.problems)
    }
}

/// The bot called `name`, or with no name the config's only bot of `kind`;
/// the exit code for a usage error otherwise.
fn named_bot<'a>(
    config: &'a Config,
    name: Option<&str>,
    kind: &str,
) -> Result<&'a botvisor::config::BotConfig, ExitCode> {
    let names = |bots: Vec<&botvisor::config::BotConfig>| {
        bots.iter()
            .map(|b| b.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(name) = name else {
        let of_kind: Vec<_> = config
            .bots
            .iter()
            .filter(|b| b.kind.name() == kind)
            .collect();
        return match of_kind.as_slice() {
            [bot] => Ok(*bot),
            [] => Err(fail(
                EXIT_USAGE,
                &format!("{}: there is no {kind} bot", config.path.display()),
            )),
            _ => Err(fail(
                EXIT_USAGE,
                &format!(
                    "{}: there are several {kind} bots ({}); choose one with --bot NAME",
                    config.path.display(),
                    names(of_kind)
                ),
            )),
        };
    };
    let bot = config.bot(name).ok_or_else(|| {
        fail(
            EXIT_USAGE,
            &format!(
                "{}: no bot `{name}`; the bots are: {}",
                config.path.display(),
                names(config.bots.iter().collect())
            ),
        )
    })?;
    if bot.kind.name() != kind {
        return Err(fail(
            EXIT_USAGE,
            &format!(
                "bot `{name}` is of kind `{}`, not `{kind}`",
                bot.kind.name()
            ),
        ));
    }
    Ok(bot)
}

/// What `Announcements::preview` writes when the link selector finds
/// nothing (the relay owns that text; the exit code depends on it).
const NOTHING_FOUND: &str = "(the link selector found nothing";

fn announcements_preview(config: &Config, name: Option<&str>) -> ExitCode {
    let bot = match named_bot(config, name, "announcements") {
        Ok(bot) => bot,
        Err(code) => return code,
    };
    let KindSettings::Announcements(settings) = &bot.kind else {
        return fail(EXIT_USAGE, "not an announcements bot");
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            return fail(
                EXIT_FAILURE,
                &format!("cannot start the async runtime: {err}"),
            );
        }
    };
    let relay = botvisor::bots::announcements::Announcements::new(settings);
    match runtime.block_on(relay.preview()) {
        // A selector that finds nothing is what this command is run to
        // catch: say so in the exit code too, for scripts.
        Ok(text) if text.contains(NOTHING_FOUND) => print_out(&text, EXIT_FAILURE),
        Ok(text) => print_out(&text, EXIT_OK),
        Err(err) => fail(EXIT_FAILURE, &err.to_string()),
    }
}

fn fleet(config: &Config, env: &Environment) -> ExitCode {
    let url = match config.store_spec(env) {
        Ok(botvisor::store::StoreSpec::Postgres(url)) => url,
        Ok(botvisor::store::StoreSpec::Sqlite(_)) => {
            return fail(
                EXIT_USAGE,
                "the store is SQLite: one instance holds every bot; a fleet needs PostgreSQL \
                 (DATABASE_URL or `store`)",
            );
        }
        Err(err) => return fail(EXIT_CONFIG, &err),
    };
    // This config's names for the bots whose token is set here.
    let bots: botvisor::fleet::FleetBots = config
        .bots
        .iter()
        .filter(|bot| bot.enabled)
        .filter_map(|bot| {
            let token = env.token_of(bot).ok()?;
            Some((token.bot_id()?.to_owned(), bot.name.clone()))
        })
        .collect();
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let report = runtime.block_on(botvisor::fleet::report(
        &url,
        config.supervisor.fleet.lease_ttl,
        &bots,
    ));
    match report {
        Ok(text) => print_out(text.trim_end(), EXIT_OK),
        Err(err) => fail(EXIT_FAILURE, &Redactor::global().redact(&err.to_string())),
    }
}

fn faq_preview(config: &Config, name: Option<&str>, command: Option<&str>) -> ExitCode {
    let bot = match named_bot(config, name, "faq") {
        Ok(bot) => bot,
        Err(code) => return code,
    };
    let KindSettings::Faq(settings) = &bot.kind else {
        return fail(EXIT_USAGE, "not a faq bot");
    };
    print_out(
        &botvisor::bots::faq::Faq::new(settings).preview(command),
        EXIT_OK,
    )
}

/// Writes `text` and a newline to stdout and returns `code`. A reader that
/// went away (`| head -1`) ends the command quietly with `code`, rather
/// than with `println!`'s panic.
fn print_out(text: &str, code: u8) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::from(code),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(code),
        Err(err) => fail(EXIT_FAILURE, &format!("cannot write to stdout: {err}")),
    }
}

fn daemon(config: Config, env: Environment) -> ExitCode {
    // The same start-up check as `botvisor check`: what it refuses, the
    // daemon refuses, in the same words, before anything starts.
    let startup = botvisor::check::startup(&config, &env, Mode::Full);
    if !startup.errors.is_empty() {
        return fail(EXIT_CONFIG, &render_problems(&config.path, &startup.errors));
    }
    let _guard = match botvisor::logging::init(&config.supervisor) {
        Ok(guard) => guard,
        Err(err) => return fail(EXIT_CONFIG, &err.to_string()),
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %config.path.display(),
        dotenv = %env
            .dotenv_path()
            .map_or_else(|| "none".to_owned(), |p| p.display().to_string()),
        "botvisor starting"
    );
    for warning in config
        .warnings
        .iter()
        .chain(&botvisor::check::environment_warnings(&config, &env))
    {
        tracing::warn!("{}", warning.render(&config.path));
    }
    // Idle connections to the status endpoint must never take the
    // descriptors the bots need to reach Telegram and the store.
    if let Some(limit) = botvisor::limits::raise_fd_limit() {
        tracing::debug!(limit, "file descriptor limit");
    }
    if let Some(warning) = botvisor::check::descriptor_warning(&config) {
        tracing::warn!("{warning}");
    }
    let outcome = runtime.block_on(async {
        let signals = botvisor::signals::listen()
            .map_err(|err| (EXIT_FAILURE, format!("cannot listen for signals: {err}")))?;
        botvisor::run(config, env, signals).await.map_err(|err| {
            let code = match err {
                RunError::NothingToRun(_)
                | RunError::StoreConfig(_)
                | RunError::Http(HttpError::NoPort(_) | HttpError::Address { .. }) => EXIT_CONFIG,
                _ => EXIT_FAILURE,
            };
            (code, err.to_string())
        })
    });
    // Do not wait for tasks abandoned at the deadline.
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::from(EXIT_OK),
        // Every fatal error goes to stderr once, as `botvisor: …`, like
        // those found before logging started; not also as a log line.
        Err((code, text)) => fail(code, &text),
    }
}

fn sandbox(config: Config) -> ExitCode {
    if let Err(err) = botvisor::sandbox::init_logging() {
        return fail(EXIT_CONFIG, &err.to_string());
    }
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let outcome = runtime.block_on(async {
        let signals = botvisor::signals::listen().map_err(|err| {
            botvisor::sandbox::SandboxError::Setup(format!("cannot listen for signals: {err}"))
        })?;
        let terminal = botvisor::sandbox::Terminal::stdin();
        botvisor::sandbox::run(config, terminal, &mut std::io::stdout(), signals).await
    });
    // Do not wait for the thread blocked on reading stdin.
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(err) => fail(err.exit_code(), &err.to_string()),
    }
}

/// The tokio runtime, with panics logged like any other error (so they
/// pass the redactor and land in the log stream), not printed raw to
/// stderr. Call it once logging is set up.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| {
            fail(
                EXIT_FAILURE,
                &format!("cannot start the async runtime: {err}"),
            )
        })?;
    std::panic::set_hook(Box::new(|info| tracing::error!(panic = %info, "panic")));
    Ok(runtime)
}

/// Prints `message` to stderr (tokens redacted) and returns `code`.
fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("botvisor: {}", Redactor::global().redact(message));
    ExitCode::from(code)
}
