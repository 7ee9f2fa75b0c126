//! The supervisor: turns a validated config into one worker per runnable
//! bot, reloads on SIGHUP, reports status on SIGUSR1, and stops every worker
//! within the shutdown deadline.
//!
//! Workers share no mutable state. Each has its own cancellation token (a
//! child of the supervisor's root token, so a reload can stop one bot alone)
//! and publishes its status on a `watch` channel the supervisor reads. The
//! main loop `select!`s over one stream of [`Signal`]s. Every event a worker
//! logs carries `bot=<name>` through its span.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, error, info, warn};

use crate::alerts::{self, Route, Target};
use crate::bots::process::{ChildEnv, ProcessHost};
use crate::config::{BotConfig, Config, Environment};
use crate::gateway::{Gateway, GatewayError};
use crate::http::{self, HttpError};
use crate::outbox::Outbox;
use crate::secret::Token;
use crate::signals::Signal;
use crate::status::{StatusBoard, StatusSender, WorkerState};
use crate::store::{InstanceInfo, Leases, Store, StoreError};
use crate::telegram;
use crate::webhook::Webhooks;
use crate::worker::Worker;

/// Time kept back from the shutdown deadline, after the handlers stop, for
/// the outbox's last sends and commit and for confirming offsets.
const CONFIRM_BUDGET: Duration = Duration::from_millis(3500);
/// The supervisor gives up this long before the deadline, so the process
/// is gone before whoever set the deadline kills it.
const EXIT_MARGIN: Duration = Duration::from_millis(250);
/// A second shutdown signal this soon after the first is a repeat, not a
/// request to exit at once.
const REPEAT_GRACE: Duration = Duration::from_secs(1);

/// Why the supervisor could not run or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No bot is both enabled and has its token; a config problem.
    #[error("no bot can run: {0}")]
    NothingToRun(String),
    #[error(transparent)]
    Client(#[from] telegram::ClientError),
    /// The store setting cannot be used (a config problem).
    #[error("{0}")]
    StoreConfig(String),
    /// The store cannot be reached or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The status endpoint cannot start.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The process bots' gateway cannot start.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// A second shutdown signal arrived before the workers stopped.
    #[error("stopped at once by a second shutdown signal")]
    Forced,
}

/// A bot that is enabled and has a token: what a worker needs.
#[derive(Clone)]
struct Runnable {
    config: BotConfig,
    token: Token,
    /// For a webhook bot, where its updates arrive.
    webhook: Option<crate::webhook::Target>,
}

/// The bots the fleet shares: Telegram bot id (a token's first part) → name.
fn fleet_bots(bots: &[Runnable]) -> crate::fleet::FleetBots {
    bots.iter()
        .filter_map(|bot| {
            let id = bot.token.bot_id()?;
            Some((id.to_owned(), bot.config.name.clone()))
        })
        .collect()
}

/// Splits the enabled bots into those that can run and, by name, the
/// reasons the others cannot. The decision is `check`'s (one start-up check
/// for the daemon and `botvisor check`, in the same words).
fn runnable_bots(config: &Config, env: &Environment) -> (Vec<Runnable>, Vec<(String, String)>) {
    let bots = crate::check::bots(config, env);
    let runnable = bots
        .runnable()
        .into_iter()
        .map(|(bot, token)| Runnable {
            webhook: crate::check::webhook_target(config, &bot, env).and_then(Result::ok),
            config: bot,
            token,
        })
        .collect::<Vec<Runnable>>();
    // All at once: one build of the redactor's automaton for every bot.
    crate::secret::Redactor::global().learn_all(runnable.iter().map(|r| &r.token));
    (runnable, bots.skipped())
}

/// What a reload changes, by bot name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub restarted: Vec<String>,
    pub unchanged: Vec<String>,
}

impl ReloadPlan {
    /// A one-line summary for the log.
    pub fn summary(&self) -> String {
        let list = |names: &[String]| {
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        };
        format!(
            "added: {}; removed: {}; restarted: {}; unchanged: {}",
            list(&self.added),
            list(&self.removed),
            list(&self.restarted),
            list(&self.unchanged)
        )
    }
}

/// Compares the running bots with the bots a new config would run. A bot is
/// restarted when its own settings or its token changed, or when a setting
/// every bot shares (`shared_changed`) did.
fn plan_reload(
    running: &BTreeMap<String, Runnable>,
    wanted: &[Runnable],
    shared_changed: bool,
) -> ReloadPlan {
    let mut plan = ReloadPlan::default();
    for bot in wanted {
        let name = &bot.config.name;
        match running.get(name) {
            None => plan.added.push(name.clone()),
            Some(old)
                if shared_changed
                    || !old.config.runs_like(&bot.config)
                    || old.token != bot.token =>
            {
                plan.restarted.push(name.clone());
            }
            Some(_) => plan.unchanged.push(name.clone()),
        }
    }
    let names: std::collections::HashSet<&str> =
        wanted.iter().map(|b| b.config.name.as_str()).collect();
    for name in running.keys() {
        if !names.contains(name.as_str()) {
            plan.removed.push(name.clone());
        }
    }
    plan
}

/// A running worker, as the supervisor tracks it.
struct Entry {
    bot: Runnable,
    /// The bot's outbox, which the alerts use when this bot sends them.
    outbox: Outbox,
    cancel: CancellationToken,
    /// Cancelled when the worker's task has ended.
    stopped: CancellationToken,
}

struct Supervisor {
    config: Config,
    client: reqwest::Client,
    store: Store,
    leases: Arc<Leases>,
    root: CancellationToken,
    tracker: TaskTracker,
    workers: BTreeMap<String, Entry>,
    /// Workers told to stop that may still be running, by token: a new
    /// worker for the same token waits for them, whatever its bot's name.
    stopping: Vec<(Token, CancellationToken)>,
    board: StatusBoard,
    /// Where alerts go; updated on reload.
    alert_route: watch::Sender<Target>,
    /// Stops the alerts and the status endpoint, after the workers.
    services: CancellationToken,
    /// Webhook requests on their way to their bots' sessions.
    webhooks: Webhooks,
    /// The gateway and the children's environment, once a process bot
    /// needs them.
    host: Option<ProcessHost>,
    /// Where uploads of process bots wait.
    spool: PathBuf,
    /// The bots the fleet shares (PostgreSQL stores), by Telegram bot id.
    fleet_bots: Option<watch::Sender<crate::fleet::FleetBots>>,
    /// Every session's guard, checked by one task.
    guards: crate::worker::Guards,
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
    signals: impl Stream<Item = Signal> + Unpin,
) -> Result<(), RunError> {
    run_with_board(config, env, signals, StatusBoard::default()).await
}

/// [`run`], publishing every worker's status on `board`.
///
/// # Errors
/// As [`run`].
pub async fn run_with_board(
    config: Config,
    env: Environment,
    mut signals: impl Stream<Item = Signal> + Unpin,
    board: StatusBoard,
) -> Result<(), RunError> {
    let (runnable, missing) = runnable_bots(&config, &env);
    for (name, reason) in &missing {
        error!("bot will not run: {name}: {reason}; set the variable or disable the bot");
    }
    if let Some(reason) = crate::check::nothing_to_run(runnable.len(), &missing) {
        return Err(RunError::NothingToRun(reason));
    }
    board.set_not_running(missing.into_iter().collect());
    board.set_operators(&config.supervisor.operators);
    // Bound before any bot starts: a taken port is an error now, not later.
    let listener = match &config.supervisor.http {
        Some(settings) => Some(http::bind(http::address(settings, &env)?).await?),
        None => None,
    };
    let client = telegram::http_client(config.supervisor.poll_timeout)?;
    let spec = config.store_spec(&env).map_err(RunError::StoreConfig)?;
    let store = Store::open(&spec).await?;
    let fleet_settings = &config.supervisor.fleet;
    let host_name = crate::fleet::host_name(env.var("DYNO").as_deref());
    let me = InstanceInfo {
        id: crate::fleet::instance_id(&host_name),
        host: host_name,
        started_at: crate::store::relay::now_millis(),
        weight: fleet_settings.weight,
    };
    let leases = Arc::new(Leases::for_store(&spec, me, fleet_settings.lease_ttl)?);
    info!(store = %spec.describe(), "store open");
    let spool = spool_dir(&config, &spec);
    let services_stop = CancellationToken::new();
    let host = if has_process_bots(&config) {
        Some(start_host(&config, &env, spool.clone(), services_stop.clone()).await?)
    } else {
        None
    };
    let (alert_route, route) = watch::channel(Target::Off);
    let mut supervisor = Supervisor {
        config,
        client,
        store,
        leases,
        root: CancellationToken::new(),
        tracker: TaskTracker::new(),
        workers: BTreeMap::new(),
        stopping: Vec::new(),
        board,
        alert_route,
        services: services_stop,
        webhooks: Webhooks::default(),
        host,
        spool,
        fleet_bots: None,
        guards: crate::worker::Guards::default(),
    };
    let fleet = supervisor.leases.fleet().cloned().map(|leases| {
        let (bots, watching) = watch::channel(fleet_bots(&runnable));
        supervisor.fleet_bots = Some(bots);
        info!(
            instance = %leases.me().id,
            weight = leases.me().weight,
            lease_ttl = %crate::status::short(leases.ttl()),
            "sharing the bots with the other instances on this store"
        );
        (leases, watching)
    });
    for bot in runnable {
        supervisor.start(bot);
    }
    supervisor.route_alerts();
    let services = TaskTracker::new();
    if let Some(listener) = listener {
        services.spawn(http::serve(
            listener,
            supervisor.board.clone(),
            supervisor.webhooks.clone(),
            supervisor.services.clone(),
        ));
    }
    services.spawn(
        alerts::run(supervisor.board.clone(), route, supervisor.services.clone())
            .instrument(tracing::info_span!("alerts")),
    );
    // After the workers: a draining session's lease is still watched.
    services.spawn(supervisor.guards.clone().run(supervisor.services.clone()));
    if let Some((leases, bots)) = fleet {
        // It leaves the fleet when the shutdown starts, and renews the
        // leases of draining bots until the workers have stopped.
        services.spawn(
            crate::fleet::run(
                leases,
                bots,
                supervisor.board.clone(),
                supervisor.root.clone(),
                supervisor.services.clone(),
            )
            .instrument(tracing::info_span!("fleet")),
        );
    }
    services.close();
    info!(bots = supervisor.workers.len(), "botvisor is running");
    notify_systemd(sd_notify::NotifyState::Ready);

    loop {
        match signals.next().await {
            Some(Signal::Shutdown) | None => break,
            Some(Signal::Reload) => supervisor.reload().await,
            Some(Signal::Status) => info!("status: {}", supervisor.board.line()),
        }
    }
    let services_stop = supervisor.services.clone();
    let outcome = supervisor.shutdown(&mut signals).await;
    services_stop.cancel();
    if outcome.is_ok() {
        // Bounded: the status endpoint gives open connections
        // `CLOSE_GRACE`, and the exit must stay inside the deadline.
        let _ = tokio::time::timeout(http::CLOSE_GRACE * 2, services.wait()).await;
    }
    outcome
}

/// Whether any enabled bot of `config` is a process bot.
fn has_process_bots(config: &Config) -> bool {
    config
        .bots
        .iter()
        .any(|bot| bot.enabled && matches!(bot.kind, crate::config::KindSettings::Process(_)))
}

/// Starts the gateway, with the environment process bots' children get.
async fn start_host(
    config: &Config,
    env: &Environment,
    spool: PathBuf,
    stop: CancellationToken,
) -> Result<ProcessHost, GatewayError> {
    let gateway = Gateway::start(&config.supervisor.gateway, spool, stop).await?;
    // Before the first program starts: it must not read botvisor's
    // environment, with the tokens in it, from /proc.
    crate::limits::keep_environment_private();
    Ok(ProcessHost {
        gateway,
        env: ChildEnv::from_process(config, env),
    })
}

/// Where process bots' uploads wait: `[supervisor.gateway] spool_dir`;
/// beside a SQLite store (`botvisor.db` → `botvisor.spool/`), so they
/// outlive a restart as the queue does; or the system's temporary folder.
fn spool_dir(config: &Config, spec: &crate::store::StoreSpec) -> PathBuf {
    if let Some(dir) = &config.supervisor.gateway.spool_dir {
        return dir.clone();
    }
    match spec {
        crate::store::StoreSpec::Sqlite(path) => path.with_extension("spool"),
        crate::store::StoreSpec::Postgres(_) => std::env::temp_dir().join("botvisor-spool"),
    }
}

/// Tells systemd (`Type=notify`) about a state change; without
/// `NOTIFY_SOCKET` this does nothing.
fn notify_systemd(state: sd_notify::NotifyState<'_>) {
    if let Err(err) = sd_notify::notify(&[state]) {
        warn!(error = %err, "could not notify systemd");
    }
}

impl Supervisor {
    /// Starts a worker for `bot`, once every worker still stopping with the
    /// same token has stopped, so botvisor never polls one token twice.
    fn start(&mut self, bot: Runnable) {
        self.stopping.retain(|(_, stopped)| !stopped.is_cancelled());
        let after: Vec<CancellationToken> = self
            .stopping
            .iter()
            .filter(|(token, _)| *token == bot.token)
            .map(|(_, stopped)| stopped.clone())
            .collect();
        let name = bot.config.name.clone();
        let (status, rx) = StatusSender::new(&name, bot.config.kind.name());
        let mut open = self.board.incidents_of(&name);
        if !matches!(
            bot.config.kind,
            crate::config::KindSettings::Announcements(_)
        ) {
            // Only a relay can close it.
            open.remove(&crate::status::Incident::SelectorEmpty);
        }
        if bot.webhook.is_none() {
            // Only a webhook bot's session can close it.
            open.remove(&crate::status::Incident::WebhookFailing);
        }
        status.carry_over(open);
        self.board.insert(&name, rx);
        let cancel = self.root.child_token();
        let stopped = CancellationToken::new();
        let shutdown_timeout = self.config.supervisor.shutdown_timeout;
        let outbox = Outbox::new(self.config.supervisor.outbox.clone(), status.outbox_stats());
        let worker = Worker {
            config: bot.config.clone(),
            token: bot.token.clone(),
            client: self.client.clone(),
            poll_timeout: self.config.supervisor.poll_timeout,
            stop_grace: shutdown_timeout.saturating_sub(CONFIRM_BUDGET + EXIT_MARGIN),
            status,
            cancel: cancel.clone(),
            store: self.store.clone(),
            leases: self.leases.clone(),
            watchdog_after: self.config.supervisor.watchdog_limit(),
            board: self.board.clone(),
            outbox: outbox.clone(),
            webhooks: self.webhooks.clone(),
            webhook: bot.webhook.clone(),
            host: self.host.clone(),
            guards: self.guards.clone(),
        };
        let done = stopped.clone().drop_guard();
        let span = tracing::info_span!("bot", bot = %name);
        self.tracker.spawn(
            async move {
                let _done = done;
                for previous in after {
                    previous.cancelled().await;
                }
                worker.run().await;
            }
            .instrument(span),
        );
        self.workers.insert(
            name,
            Entry {
                bot,
                outbox,
                cancel,
                stopped,
            },
        );
    }

    /// Stops the worker of bot `name`; it is remembered until it has
    /// stopped, so no worker with its token starts before.
    fn stop(&mut self, name: &str) {
        if let Some(entry) = self.workers.remove(name) {
            entry.cancel.cancel();
            self.stopping.push((entry.bot.token, entry.stopped));
        }
    }

    /// Re-reads the config file and applies the difference. An invalid
    /// config changes nothing.
    async fn reload(&mut self) {
        let path = self.config.path.clone();
        info!(config = %path.display(), "SIGHUP: reloading the config");
        let config = match Config::load(&path) {
            Ok(config) => config,
            Err(err) => {
                // One event per problem, so each line carries its own
                // timestamp and level.
                error!("reload: the config is invalid; keeping the running config");
                for problem in err.to_string().lines() {
                    error!("reload: {problem}");
                }
                return;
            }
        };
        let env = match Environment::with_dotenv(config.dir()) {
            Ok(env) => env,
            Err(err) => {
                error!("reload: {err}; keeping the running config");
                return;
            }
        };
        let (mut wanted, mut missing) = runnable_bots(&config, &env);
        // A bot whose token went missing keeps its running worker: the
        // environment, not the config, is wrong.
        for (name, reason) in &missing {
            error!("reload: {name}: {reason}; the bot keeps its running worker if it has one");
        }
        for bot in config.bots.iter().filter(|b| b.enabled) {
            if env.token_of(bot).is_err()
                && let Some(entry) = self.workers.get(&bot.name)
            {
                wanted.push(entry.bot.clone());
                missing.retain(|(name, _)| *name != bot.name);
            }
        }
        let shared_changed = config.supervisor.poll_timeout != self.config.supervisor.poll_timeout
            || config.supervisor.shutdown_timeout != self.config.supervisor.shutdown_timeout
            || config.supervisor.watchdog_limit() != self.config.supervisor.watchdog_limit()
            || config.supervisor.outbox != self.config.supervisor.outbox;
        let running: BTreeMap<String, Runnable> = self
            .workers
            .iter()
            .map(|(name, entry)| (name.clone(), entry.bot.clone()))
            .collect();
        let plan = plan_reload(&running, &wanted, shared_changed);
        if config.supervisor.store != self.config.supervisor.store
            || config.supervisor.store_env != self.config.supervisor.store_env
        {
            warn!("reload: store settings take effect at the next start");
        }
        if config.supervisor.log_level != self.config.supervisor.log_level
            || config.supervisor.log_format != self.config.supervisor.log_format
            || config.supervisor.log_dir != self.config.supervisor.log_dir
        {
            warn!("reload: log settings take effect at the next start");
        }
        if config.supervisor.http != self.config.supervisor.http {
            warn!("reload: [supervisor.http] takes effect at the next start");
        }
        if config.supervisor.poll_timeout != self.config.supervisor.poll_timeout {
            // The client's timeout must stay above the long poll's.
            match telegram::http_client(config.supervisor.poll_timeout) {
                Ok(client) => self.client = client,
                Err(err) => {
                    error!("reload: {err}; keeping the running config");
                    return;
                }
            }
        }
        if has_process_bots(&config) {
            match &mut self.host {
                // The children to come get the new environment.
                Some(host) => host.env = ChildEnv::from_process(&config, &env),
                None => {
                    match start_host(&config, &env, self.spool.clone(), self.services.clone()).await
                    {
                        Ok(host) => self.host = Some(host),
                        Err(err) => error!("reload: {err}; process bots cannot run"),
                    }
                }
            }
        }
        if config.supervisor.gateway != self.config.supervisor.gateway && self.host.is_some() {
            warn!("reload: [supervisor.gateway] takes effect at the next start");
        }
        self.config = config;
        for name in plan.removed.iter().chain(&plan.restarted) {
            self.stop(name);
        }
        for name in &plan.removed {
            self.board.remove(name);
        }
        for bot in wanted {
            let name = bot.config.name.clone();
            if plan.added.contains(&name) || plan.restarted.contains(&name) {
                self.start(bot);
            }
        }
        self.board.set_not_running(missing.into_iter().collect());
        self.board.set_operators(&self.config.supervisor.operators);
        if let Some(bots) = &self.fleet_bots {
            let running: Vec<Runnable> = self.workers.values().map(|e| e.bot.clone()).collect();
            bots.send_replace(fleet_bots(&running));
        }
        self.route_alerts();
        info!("reload: {}", plan.summary());
    }

    /// Points the alerts at `[supervisor.alerts]`'s chat through its
    /// `via_bot`, or nowhere when alerts are off or that bot cannot run.
    fn route_alerts(&self) {
        let target = match &self.config.supervisor.alerts {
            None => Target::Off,
            Some(alerts) => match self.workers.get(&alerts.via_bot) {
                None => {
                    error!(
                        via_bot = %alerts.via_bot,
                        "alerts: via_bot is not running; alerts are only logged"
                    );
                    Target::Unavailable {
                        via_bot: alerts.via_bot.clone(),
                    }
                }
                Some(entry) => Target::Send(Route {
                    outbox: entry.outbox.clone(),
                    chat: alerts.chat_id,
                    max_per_hour: alerts.max_per_hour,
                }),
            },
        };
        self.alert_route.send_replace(target);
    }

    /// Stops every worker within the deadline.
    async fn shutdown(
        mut self,
        signals: &mut (impl Stream<Item = Signal> + Unpin),
    ) -> Result<(), RunError> {
        let deadline = self
            .config
            .supervisor
            .shutdown_timeout
            .saturating_sub(EXIT_MARGIN);
        info!(
            bots = self.workers.len(),
            deadline = %crate::status::short(self.config.supervisor.shutdown_timeout),
            "shutting down"
        );
        let started = Instant::now();
        notify_systemd(sd_notify::NotifyState::Stopping);
        self.board.set_stopping();
        self.webhooks.stop();
        self.root.cancel();
        self.tracker.close();
        let outcome = tokio::select! {
            () = self.tracker.wait() => Ok(()),
            () = tokio::time::sleep(deadline) => {
                let stuck: Vec<String> = self
                    .board
                    .snapshot()
                    .into_iter()
                    .filter(|s| s.state != WorkerState::Stopped)
                    .map(|s| s.name)
                    .collect();
                error!(bots = %stuck.join(", "), "shutdown deadline reached; abandoning the workers still running");
                Ok(())
            }
            () = second_shutdown(signals) => {
                warn!("second shutdown signal: exiting at once");
                Err(RunError::Forced)
            }
        };
        self.workers.clear();
        info!(
            took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "stopped"
        );
        outcome
    }
}

/// Resolves when another shutdown signal arrives, except within
/// [`REPEAT_GRACE`] of the first: Heroku may send SIGTERM more than once to
/// the same process, and that must not cut a clean shutdown short.
async fn second_shutdown(signals: &mut (impl Stream<Item = Signal> + Unpin)) {
    let first = Instant::now();
    loop {
        match signals.next().await {
            Some(Signal::Shutdown) if first.elapsed() >= REPEAT_GRACE => return,
            Some(Signal::Shutdown) => {
                info!("a repeated shutdown signal right after the first; ignored")
            }
            Some(_) => {}
            None => std::future::pending::<()>().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn bots(text: &str) -> Vec<Runnable> {
        let config = Config::from_str(text, Path::new("x.toml")).expect("valid config");
        config
            .bots
            .into_iter()
            .map(|config| Runnable {
                token: Token::new(format!("1:{}", config.token_env)),
                config,
                webhook: None,
            })
            .collect()
    }

    #[test]
    fn reload_plans_only_what_changed() {
        let base = "[bot.a]\nkind = \"echo\"\ntoken_env = \"A\"\n[bot.b]\nkind = \"echo\"\ntoken_env = \"B\"\n";
        let running: BTreeMap<String, Runnable> = bots(base)
            .into_iter()
            .map(|b| (b.config.name.clone(), b))
            .collect();
        let cases: &[(&str, bool, [&[&str]; 4])] = &[
            // (new config, shared settings changed, [added, removed, restarted, unchanged])
            (base, false, [&[], &[], &[], &["a", "b"]]),
            // The same bots, moved around in the file with comments: nothing changes.
            (
                "# moved\n[bot.b]\nkind = \"echo\"\ntoken_env = \"B\"\n\n[bot.a]\nkind = \"echo\"\ntoken_env = \"A\"\n",
                false,
                [&[], &[], &[], &["b", "a"]],
            ),
            (
                "[bot.a]\nkind = \"echo\"\ntoken_env = \"A\"\n[bot.b]\nkind = \"echo\"\ntoken_env = \"B\"\nslow_on = \"x\"\n",
                false,
                [&[], &[], &["b"], &["a"]],
            ),
            (
                "[bot.a]\nkind = \"echo\"\ntoken_env = \"A\"\n[bot.c]\nkind = \"echo\"\ntoken_env = \"C\"\n",
                false,
                [&["c"], &["b"], &[], &["a"]],
            ),
            (
                "[bot.a]\nkind = \"echo\"\ntoken_env = \"A2\"\n[bot.b]\nkind = \"echo\"\ntoken_env = \"B\"\n[bot.b.restart]\npark_for = \"1s\"\n",
                false,
                [&[], &[], &["a", "b"], &[]],
            ),
            (base, true, [&[], &[], &["a", "b"], &[]]),
        ];
        for (text, shared, [added, removed, restarted, unchanged]) in cases {
            let plan = plan_reload(&running, &bots(text), *shared);
            let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
            assert_eq!(
                plan,
                ReloadPlan {
                    added: names(added),
                    removed: names(removed),
                    restarted: names(restarted),
                    unchanged: names(unchanged),
                },
                "config:\n{text}"
            );
        }
    }
}
