//! The supervisor: turns a validated config into one worker task per
//! runnable bot, and stops them all within the shutdown deadline.
//!
//! Workers share no mutable state; each has its own cancellation token (a
//! child of the supervisor's), so one bot can later be stopped alone. Every
//! event a worker logs carries `bot=<name>` through its span.

use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use teloxide::requests::Requester;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, error, info, warn};

use crate::bots::Kind;
use crate::config::{BotConfig, Config, Environment};
use crate::restart::Backoff;
use crate::secret::Token;
use crate::signals::Signal;
use crate::telegram::polling::Poller;
use crate::telegram::{self, BotHandle, ErrorClass};

/// How long the final offset confirmation may take at shutdown.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(2);
/// The first wait after a 409 Conflict; Telegram sends at most one per 3 s.
const CONFLICT_WAIT: Duration = Duration::from_secs(3);

/// Why the supervisor could not run or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No bot is both enabled and has its token; a config problem.
    #[error("no bot can run: {0}")]
    NothingToRun(String),
    #[error(transparent)]
    Client(#[from] telegram::ClientError),
    /// A second shutdown signal arrived before the workers stopped.
    #[error("stopped at once by a second shutdown signal")]
    Forced,
}

/// A bot that is enabled and has a token: what a worker needs.
struct Runnable {
    config: BotConfig,
    token: Token,
}

/// Splits the enabled bots into those that can run and the reasons the
/// others cannot.
fn runnable_bots(config: &Config, env: &Environment) -> (Vec<Runnable>, Vec<String>) {
    let mut runnable = Vec::new();
    let mut missing = Vec::new();
    for bot in config.bots.iter().filter(|b| b.enabled) {
        match env.token(&bot.token_env) {
            Some(token) => runnable.push(Runnable {
                config: bot.clone(),
                token,
            }),
            None => missing.push(format!("{}: {} is not set", bot.name, bot.token_env)),
        }
    }
    (runnable, missing)
}

/// Runs every runnable bot until `signals` asks for a shutdown, then stops
/// them within the configured deadline.
///
/// # Errors
/// [`RunError::NothingToRun`] when no bot can start; [`RunError::Forced`]
/// when a second shutdown signal cut the shutdown short.
pub async fn run(
    config: Config,
    env: Environment,
    mut signals: impl Stream<Item = Signal> + Unpin,
) -> Result<(), RunError> {
    let (runnable, missing) = runnable_bots(&config, &env);
    for reason in &missing {
        error!("bot will not run: {reason}; set the variable or disable the bot");
    }
    if runnable.is_empty() {
        let reason = if missing.is_empty() {
            "the config enables no bot".to_owned()
        } else {
            missing.join("; ")
        };
        return Err(RunError::NothingToRun(reason));
    }
    let client = telegram::http_client(config.supervisor.poll_timeout)?;

    let root = CancellationToken::new();
    let tracker = TaskTracker::new();
    for bot in runnable {
        let handle = BotHandle::new(
            &bot.config.name,
            &bot.token,
            &bot.config.api_url,
            client.clone(),
        );
        let worker = Worker {
            kind: Kind::new(&bot.config.kind),
            bot: handle,
            config: bot.config,
            poll_timeout: config.supervisor.poll_timeout,
            cancel: root.child_token(),
        };
        let span = tracing::info_span!("bot", bot = %worker.config.name);
        tracker.spawn(worker.run().instrument(span));
    }
    tracker.close();
    info!(bots = tracker.len(), "botvisor is running");

    loop {
        match signals.next().await {
            Some(Signal::Shutdown) | None => break,
            Some(Signal::Reload) => {
                warn!("SIGHUP: reloading is not implemented yet; nothing changed")
            }
            Some(Signal::Status) => info!(bots = tracker.len(), "status: workers running"),
        }
    }

    let deadline = config.supervisor.shutdown_timeout;
    info!(deadline = ?deadline, "shutting down");
    let started = Instant::now();
    root.cancel();
    let outcome = tokio::select! {
        () = tracker.wait() => Ok(()),
        () = tokio::time::sleep(deadline) => {
            error!(still_running = tracker.len(), "shutdown deadline reached; abandoning the workers still running");
            Ok(())
        }
        () = second_shutdown(&mut signals) => Err(RunError::Forced),
    };
    info!(took_ms = started.elapsed().as_millis() as u64, "stopped");
    outcome
}

/// Resolves when another shutdown signal arrives.
async fn second_shutdown(signals: &mut (impl Stream<Item = Signal> + Unpin)) {
    loop {
        match signals.next().await {
            Some(Signal::Shutdown) => return,
            Some(_) => {}
            None => std::future::pending::<()>().await,
        }
    }
}

/// One bot's task.
struct Worker {
    config: BotConfig,
    bot: BotHandle,
    kind: Kind,
    poll_timeout: Duration,
    cancel: CancellationToken,
}

impl Worker {
    async fn run(self) {
        let mut backoff = Backoff::new(self.config.restart.clone());
        loop {
            let me = tokio::select! {
                () = self.cancel.cancelled() => return,
                me = self.bot.api().get_me() => me,
            };
            match me {
                Ok(me) => {
                    info!(username = %me.username(), kind = self.kind_name(), "connected to Telegram");
                    break;
                }
                Err(err) => {
                    if !self.wait_after(&err, &mut backoff).await {
                        return;
                    }
                }
            }
        }
        backoff.reset();

        let mut poller = Poller::new(
            self.bot.clone(),
            self.poll_timeout,
            self.kind.allowed_updates(),
        );
        let mut confirmed = poller.offset();
        loop {
            // Cancel-safe: an abandoned poll loses nothing; the offset only
            // moves after an update has been handled.
            let result = tokio::select! {
                () = self.cancel.cancelled() => break,
                result = poller.poll() => result,
            };
            match result {
                Ok(updates) => {
                    backoff.reset();
                    confirmed = poller.offset();
                    for update in &updates {
                        if self.cancel.is_cancelled() {
                            break;
                        }
                        self.kind.handle(&self.bot, update).await;
                        poller.handled(update);
                    }
                }
                Err(err) => {
                    if !self.wait_after(&err, &mut backoff).await {
                        break;
                    }
                }
            }
        }
        if poller.offset() != confirmed {
            self.confirm(&poller).await;
        }
        info!("stopped");
    }

    /// Tells Telegram which updates were handled, so a restart does not see
    /// them again.
    async fn confirm(&self, poller: &Poller) {
        let Some(offset) = poller.offset() else {
            return;
        };
        use teloxide::payloads::GetUpdatesSetters;
        let request = self
            .bot
            .api()
            .get_updates()
            .offset(offset)
            .limit(1)
            .timeout(0);
        match tokio::time::timeout(CONFIRM_TIMEOUT, request).await {
            Ok(Ok(_)) => info!(offset, "confirmed handled updates"),
            Ok(Err(err)) => {
                warn!(offset, error = %telegram::errors::describe(&err), "could not confirm handled updates")
            }
            Err(_) => warn!(offset, "could not confirm handled updates in time"),
        }
    }

    fn kind_name(&self) -> &'static str {
        self.config.kind.name()
    }

    /// Logs a failed request and waits as its class requires. False when the
    /// worker was cancelled while waiting.
    async fn wait_after(&self, err: &teloxide::RequestError, backoff: &mut Backoff) -> bool {
        let class = telegram::classify(err);
        let text = telegram::errors::describe(err);
        let wait = match &class {
            ErrorClass::ConflictOtherPoller => {
                warn!(error_class = %class, "another process is polling with this bot's token ({}); retrying", self.config.token_env);
                CONFLICT_WAIT.max(backoff.next_delay())
            }
            ErrorClass::RateLimited(retry_after) => {
                warn!(error_class = %class, retry_after = ?retry_after, "Telegram asked to slow down");
                *retry_after
            }
            ErrorClass::Unauthorized => {
                let park = self.config.restart.park_for;
                error!(
                    error_class = %class,
                    park_for = ?park,
                    "Telegram rejected the token in {}: it is wrong or revoked; trying again after the park period",
                    self.config.token_env
                );
                park
            }
            _ => {
                let wait = backoff.next_delay();
                warn!(error_class = %class, error = %text, retry_in = ?wait, "request failed");
                wait
            }
        };
        tokio::select! {
            () = self.cancel.cancelled() => false,
            () = tokio::time::sleep(wait) => true,
        }
    }
}
