//! The `botvisor` command: parses the command line, loads the config, sets
//! up logging and runs the daemon, and turns the outcome into an exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use botvisor::config::{Config, Environment, KindSettings};
use botvisor::http::HttpError;
use botvisor::secret::Redactor;
use botvisor::{EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, RunError};

const EXIT_CODES: &str = "\
Exit codes:
  0   clean shutdown (or `check` found the config valid)
  1   a fatal error that is not a config error
  2   the command line is wrong
  78  the config is invalid, or no bot can run (EX_CONFIG)";

/// Runs every Telegram bot of a supervisor.toml as a supervised,
/// restartable task in one process.
#[derive(Parser)]
#[command(name = "botvisor", version, after_help = EXIT_CODES)]
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
    /// Validate the config and report each bot's token variable (never its
    /// value), then exit: 0 when valid, 78 when not.
    Check,
    /// Print what a faq bot would answer (text and buttons), without
    /// Telegram and without a token.
    FaqPreview {
        /// The bot's name in the config.
        #[arg(long)]
        bot: String,
        /// One command, e.g. `erasmus` or `/help`; all of them when left out.
        command: Option<String>,
    },
    /// Fetch an announcements bot's list page once and print the
    /// announcements it would see (id, title, link, first lines of text),
    /// to try selectors after the site changes. Sends nothing.
    AnnouncementsPreview {
        /// The bot's name in the config.
        #[arg(long)]
        bot: String,
    },
    /// Run the configured bots against a fake Telegram on this machine and
    /// chat with them in the terminal: no tokens, no network, a throwaway
    /// store.
    Sandbox,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(err) => return fail(EXIT_CONFIG, &err.to_string()),
    };
    // The sandbox invents its tokens: it reads neither `.env` nor them.
    if let Some(Command::Sandbox) = cli.command {
        return sandbox(config);
    }
    let env = match Environment::with_dotenv(config.dir()) {
        Ok(env) => env,
        Err(err) => return fail(EXIT_CONFIG, &err.to_string()),
    };
    match cli.command {
        Some(Command::Check) => check(&config, &env),
        Some(Command::FaqPreview { bot, command }) => {
            faq_preview(&config, &bot, command.as_deref())
        }
        Some(Command::AnnouncementsPreview { bot }) => announcements_preview(&config, &bot),
        Some(Command::Sandbox) => sandbox(config),
        None => daemon(config, env),
    }
}

fn check(config: &Config, env: &Environment) -> ExitCode {
    let report = botvisor::check::check(config, env);
    for line in &report.lines {
        println!("{line}");
    }
    if report.problems.is_empty() {
        println!(
            "{}: valid, {} bot(s)",
            config.path.display(),
            config.bots.len()
        );
        ExitCode::from(EXIT_OK)
    } else {
        fail(EXIT_CONFIG, &report.render_problems(config))
    }
}

/// The bot called `name`, or the exit code for a usage error.
fn named_bot<'a>(
    config: &'a Config,
    name: &str,
) -> Result<&'a botvisor::config::BotConfig, ExitCode> {
    config.bot(name).ok_or_else(|| {
        let names: Vec<&str> = config.bots.iter().map(|b| b.name.as_str()).collect();
        fail(
            EXIT_USAGE,
            &format!(
                "{}: no bot `{name}`; the bots are: {}",
                config.path.display(),
                names.join(", ")
            ),
        )
    })
}

fn announcements_preview(config: &Config, name: &str) -> ExitCode {
    let bot = match named_bot(config, name) {
        Ok(bot) => bot,
        Err(code) => return code,
    };
    let KindSettings::Announcements(settings) = &bot.kind else {
        return fail(
            EXIT_USAGE,
            &format!(
                "bot `{name}` is of kind `{}`, not `announcements`",
                bot.kind.name()
            ),
        );
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
        Ok(text) => {
            println!("{text}");
            ExitCode::from(EXIT_OK)
        }
        Err(err) => fail(EXIT_FAILURE, &err.to_string()),
    }
}

fn faq_preview(config: &Config, name: &str, command: Option<&str>) -> ExitCode {
    let bot = match named_bot(config, name) {
        Ok(bot) => bot,
        Err(code) => return code,
    };
    let KindSettings::Faq(settings) = &bot.kind else {
        return fail(
            EXIT_USAGE,
            &format!("bot `{name}` is of kind `{}`, not `faq`", bot.kind.name()),
        );
    };
    println!(
        "{}",
        botvisor::bots::faq::Faq::new(settings).preview(command)
    );
    ExitCode::from(EXIT_OK)
}

fn daemon(config: Config, env: Environment) -> ExitCode {
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
        dotenv = ?env.dotenv_path(),
        "botvisor starting"
    );
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
        Err((code, text)) => {
            tracing::error!("{text}");
            fail(code, &text)
        }
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
