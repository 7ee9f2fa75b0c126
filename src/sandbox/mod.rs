//! `botvisor sandbox`: runs the configured bots against the built-in fake
//! Telegram (`crates/fake-telegram`) and gives a small terminal chat, so an
//! operator can try a config without tokens and without a network.
//!
//! It owns the sandbox's set-up and its chat loop; it must not reach the
//! real Telegram, the operator's store or the web. [`prepare`] rewrites a
//! copy of the config so that every bot talks to the fake with a token
//! invented here, the state lives in a throwaway SQLite file, and the
//! announcement relay never fetches its site. The supervisor itself runs
//! unchanged, in-process, with a signal stream the chat controls. The pure
//! parts of the chat (reading a line, buttons, rendering) are in `chat`.

mod chat;

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use fake_telegram::{FakeTelegram, MemberStatus, SentMessage, User};
use futures::channel::mpsc::UnboundedSender;
use futures::{Stream, StreamExt};
use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::config::{Config, Environment, KindSettings};
use crate::logging::LogError;
use crate::secret::Token;
use crate::signals::Signal;
use crate::status::StatusBoard;
use crate::supervisor::{self, RunError};
use crate::{EXIT_CONFIG, EXIT_FAILURE};

use chat::{ButtonAction, ChatChoice, Input};

/// The log filter when `RUST_LOG` is not set: warnings and errors only, so
/// the chat stays readable. The relay's check fails by design in the
/// sandbox (see [`CHECKS_OFF_URL`]), so its retries are not news.
const LOG_FILTER: &str = "warn,botvisor::bots::announcements::relay=error";

/// The announcement list the relay is given: a URL the HTTP client refuses
/// before opening any connection (its scheme is not http or https), so the
/// relay's check fails at once and never reaches the network.
const CHECKS_OFF_URL: &str = "sandbox:announcement-checks-are-off";

/// How often the relay would check: its first check fails (above) and
/// its retries back off towards this, so it stays quiet.
const CHECKS_OFF_EVERY: Duration = Duration::from_secs(365 * 24 * 3600);

/// How long a bot may take to start polling before the banner says so.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a bot may take to handle one input before the chat says so.
const HANDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a process bot's program must ask nothing of Telegram before
/// its answer to an input counts as complete.
const PROGRAM_QUIET: Duration = Duration::from_millis(400);

/// How long after it took an input a process bot's program may take to
/// start answering before the chat says it did not (a program's first
/// answer can be slow: an interpreter loading its handlers).
const PROGRAM_SILENT: Duration = Duration::from_secs(10);

/// The first user id the chat writes as.
const FIRST_USER: u64 = 1001;

/// Why the sandbox could not run, or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The config enables no bot.
    #[error("no bot can run: the config enables no bot")]
    NothingToRun,
    /// The fake Telegram, the scratch folder or the runtime could not be set up.
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Run(#[from] RunError),
    /// Standard output is gone (e.g. a closed pipe).
    #[error("cannot write the chat to stdout: {0}")]
    Output(#[source] io::Error),
}

impl SandboxError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            SandboxError::NothingToRun
            | SandboxError::Run(RunError::NothingToRun(_) | RunError::StoreConfig(_)) => {
                EXIT_CONFIG
            }
            _ => EXIT_FAILURE,
        }
    }
}

/// One bot as the sandbox runs it.
#[derive(Debug)]
pub struct SandboxBot {
    pub name: String,
    pub kind: &'static str,
    /// Invented here and registered with the fake; never printed.
    pub token: Token,
    /// The username the fake gives it (`getMe`), without `@`.
    pub username: String,
}

/// A config made safe to run against the fake, with what it needs.
pub struct Prepared {
    /// The enabled bots only, pointed at the fake.
    pub config: Config,
    /// Holds the invented tokens, and nothing from the process.
    pub env: Environment,
    pub bots: Vec<SandboxBot>,
    /// The disabled bots, which do not run.
    pub disabled: Vec<String>,
    /// The names of the `announcements` bots, whose checks are off.
    pub relays: Vec<String>,
}

/// A copy of `config` in which every enabled bot talks to `api_url` with
/// an invented token, the store is the SQLite file `store`, and the
/// announcement relays never fetch their site.
///
/// # Errors
/// When `store` is not a UTF-8 path.
pub fn prepare(config: &Config, api_url: &Url, store: &Path) -> Result<Prepared, SandboxError> {
    let store = store.to_str().ok_or_else(|| {
        SandboxError::Setup(format!(
            "the scratch folder {} is not a UTF-8 path",
            store.display()
        ))
    })?;
    let mut copy = config.clone();
    copy.supervisor.api_url = api_url.clone();
    copy.supervisor.store = format!("sqlite:{store}");
    copy.supervisor.log_dir = None;
    // No port taken, and no alert sent anywhere, from the sandbox.
    copy.supervisor.http = None;
    copy.supervisor.alerts = None;
    // One person at a terminal: replies show at once, not a second apart.
    copy.supervisor.outbox.pacing = false;
    let disabled = copy
        .bots
        .iter()
        .filter(|b| !b.enabled)
        .map(|b| b.name.clone())
        .collect();
    copy.bots.retain(|b| b.enabled);
    let checks_off = Url::parse(CHECKS_OFF_URL).expect("the constant URL parses");
    let mut bots = Vec::new();
    let mut vars = Vec::new();
    let mut relays = Vec::new();
    for (index, bot) in copy.bots.iter_mut().enumerate() {
        bot.api_url = api_url.clone();
        // By position: `a-b` and `a_b` are two bots.
        bot.token_env = format!("BOTVISOR_SANDBOX_TOKEN_{index}");
        bot.token_file = None;
        if let KindSettings::Announcements(settings) = &mut bot.kind {
            settings.list_url = checks_off.clone();
            settings.check_every = CHECKS_OFF_EVERY;
            settings.alert_chat = None;
            relays.push(bot.name.clone());
        }
        let token = invent_token(index);
        vars.push((bot.token_env.clone(), token.expose().to_owned()));
        let mut username = format!("{}_bot", bot.name.replace('-', "_"));
        if bots.iter().any(|b: &SandboxBot| b.username == username) {
            username = format!("{}_{index}_bot", bot.name.replace('-', "_"));
        }
        bots.push(SandboxBot {
            name: bot.name.clone(),
            kind: bot.kind.name(),
            token,
            username,
        });
    }
    Ok(Prepared {
        config: copy,
        // Only the invented tokens: the operator's real TANITIM_TOKEN or
        // DATABASE_URL never leak in.
        env: Environment::isolated(vars),
        bots,
        disabled,
        relays,
    })
}

/// A token of Telegram's shape, so the redactor knows it on sight: a bot
/// id of its own for each bot, and a fresh random secret.
fn invent_token(index: usize) -> Token {
    let id = 700_000_001u64.saturating_add(u64::try_from(index).unwrap_or(u64::MAX));
    let secret: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(35)
        .map(char::from)
        .collect();
    Token::new(format!("{id}:{secret}"))
}

/// Installs the sandbox's logger: stderr (stdout is the chat), warnings
/// and errors unless `RUST_LOG` says otherwise, every line redacted.
///
/// # Errors
/// When `RUST_LOG` is not a valid filter, or a logger is installed already.
pub fn init_logging() -> Result<(), LogError> {
    crate::logging::init_stderr(LOG_FILTER)
}

/// The lines the user types.
pub struct Terminal {
    lines: mpsc::Receiver<String>,
    /// True when a person types (a prompt is shown); false for a pipe,
    /// where each line is echoed after its prompt instead.
    interactive: bool,
}

impl Terminal {
    /// Standard input, read on a thread of its own (a blocking read cannot
    /// be cancelled; the thread ends with the process). Bytes that are not
    /// UTF-8 are replaced, never fatal.
    pub fn stdin() -> Terminal {
        let (tx, lines) = mpsc::channel(16);
        let interactive = io::stdin().is_terminal();
        std::thread::spawn(move || {
            let mut stdin = io::stdin().lock();
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match stdin.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf).into_owned();
                        if tx.blocking_send(line).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Terminal { lines, interactive }
    }
}

/// Removes its folder when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    /// A new private folder in the system's temporary folder.
    fn new() -> io::Result<ScratchDir> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::temp_dir();
        let mut last = None;
        for _ in 0..16 {
            let path = base.join(format!(
                "botvisor-sandbox-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(ScratchDir(path)),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => last = Some(err),
                Err(err) => return Err(err),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free name")))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the sandbox until the user quits (`:quit`, end of input) or
/// `os_signals` asks for a shutdown, then stops the bots cleanly.
///
/// Only shutdown signals are passed on to the supervisor: a reload would
/// read the real config and tokens again.
///
/// # Errors
/// [`SandboxError`]: nothing to run, a set-up failure, a supervisor error,
/// or stdout gone.
pub async fn run(
    config: Config,
    terminal: Terminal,
    out: &mut impl Write,
    os_signals: impl Stream<Item = Signal> + Unpin + Send + 'static,
) -> Result<(), SandboxError> {
    if !config.bots.iter().any(|b| b.enabled) {
        return Err(SandboxError::NothingToRun);
    }
    let scratch = ScratchDir::new().map_err(|err| {
        SandboxError::Setup(format!(
            "cannot create a scratch folder for the store: {err}"
        ))
    })?;
    let fake = FakeTelegram::start()
        .await
        .map_err(|err| SandboxError::Setup(format!("cannot start the fake Telegram: {err}")))?;
    let api_url = Url::parse(&fake.url()).map_err(|err| {
        SandboxError::Setup(format!("the fake Telegram's URL does not parse: {err}"))
    })?;
    let prepared = prepare(&config, &api_url, &scratch.0.join("sandbox.db"))?;
    for bot in &prepared.bots {
        fake.add_bot(bot.token.expose(), &bot.username);
    }

    let (signals, supervisor_signals) = futures::channel::mpsc::unbounded();
    let interrupted = CancellationToken::new();
    let forwarder = tokio::spawn(forward_shutdowns(
        os_signals,
        signals.clone(),
        interrupted.clone(),
    ));
    let board = StatusBoard::default();
    let supervisor_done = CancellationToken::new();
    let supervisor = {
        let done = supervisor_done.clone();
        let run = supervisor::run_with_board(
            prepared.config.clone(),
            prepared.env.clone(),
            supervisor_signals,
            board.clone(),
        );
        async move {
            let outcome = run.await;
            done.cancel();
            outcome
        }
    };
    let mut session = Session {
        fake: fake.clone(),
        config_path: config.path.clone(),
        bots: prepared.bots,
        disabled: prepared.disabled,
        relays: prepared.relays,
        board,
        current: 0,
        user: user(FIRST_USER),
        chat: ChatChoice::Private,
        shown: Vec::new(),
        answers_shown: Vec::new(),
        interactive: terminal.interactive,
        interrupted: interrupted.clone(),
        supervisor_done: supervisor_done.clone(),
    };
    session.shown = vec![0; session.bots.len()];
    session.answers_shown = vec![0; session.bots.len()];
    let chat = async {
        let outcome = session.chat(terminal.lines, out).await;
        // Ctrl-C has told the supervisor already; a second shutdown signal
        // would cut its shutdown short.
        if !interrupted.is_cancelled() {
            let _ = signals.unbounded_send(Signal::Shutdown);
        }
        outcome
    };
    let (stopped, chatted) = tokio::join!(supervisor, chat);
    forwarder.abort();
    fake.shutdown();
    drop(scratch);
    stopped?;
    chatted?;
    writeln!(out, "Stopped.").map_err(SandboxError::Output)?;
    out.flush().map_err(SandboxError::Output)
}

/// Passes each shutdown signal on to the supervisor and ends the chat; a
/// second one cuts the shutdown short, as in the daemon.
async fn forward_shutdowns(
    mut os_signals: impl Stream<Item = Signal> + Unpin,
    to_supervisor: UnboundedSender<Signal>,
    interrupted: CancellationToken,
) {
    while let Some(signal) = os_signals.next().await {
        if signal == Signal::Shutdown {
            interrupted.cancel();
            let _ = to_supervisor.unbounded_send(Signal::Shutdown);
        }
    }
}

fn user(id: u64) -> User {
    User::new(id, format!("User {id}"))
}

/// The chat's state: who writes to which bot where, and what was shown.
struct Session {
    fake: FakeTelegram,
    config_path: PathBuf,
    bots: Vec<SandboxBot>,
    disabled: Vec<String>,
    relays: Vec<String>,
    board: StatusBoard,
    /// The index of the bot the user talks to.
    current: usize,
    user: User,
    chat: ChatChoice,
    /// Per bot, how many of its sent messages have been shown.
    shown: Vec<usize>,
    /// Per bot, how many of its callback answers have been looked at.
    answers_shown: Vec<usize>,
    interactive: bool,
    interrupted: CancellationToken,
    supervisor_done: CancellationToken,
}

/// How a wait for the bots ended, other than as hoped.
enum Stop {
    /// The user pressed Ctrl-C (or the process got SIGTERM).
    Interrupted,
    /// The supervisor ended by itself (its error is reported by `run`).
    SupervisorEnded,
}

impl Session {
    /// The chat loop: the banner, then one input at a time until the end.
    async fn chat(
        &mut self,
        mut lines: mpsc::Receiver<String>,
        out: &mut impl Write,
    ) -> Result<(), SandboxError> {
        if self.wait_ready(out).await?.is_some() {
            return Ok(());
        }
        self.banner(out).map_err(SandboxError::Output)?;
        loop {
            if self.interactive {
                write!(out, "{}", self.prompt()).map_err(SandboxError::Output)?;
                out.flush().map_err(SandboxError::Output)?;
            }
            let line = tokio::select! {
                line = lines.recv() => line,
                () = self.interrupted.cancelled() => None,
                () = self.supervisor_done.cancelled() => None,
            };
            let Some(line) = line else {
                if self.interactive {
                    writeln!(out).map_err(SandboxError::Output)?;
                }
                break;
            };
            if !self.interactive {
                writeln!(out, "{}{}", self.prompt(), line.trim_end())
                    .map_err(SandboxError::Output)?;
            }
            let input = match chat::parse(&line) {
                Ok(input) => input,
                Err(message) => {
                    writeln!(out, "{message}").map_err(SandboxError::Output)?;
                    out.flush().map_err(SandboxError::Output)?;
                    continue;
                }
            };
            if input == Input::Quit {
                break;
            }
            let stop = self.act(input, out).await?;
            out.flush().map_err(SandboxError::Output)?;
            if stop.is_some() {
                break;
            }
        }
        writeln!(out, "Stopping the bots…").map_err(SandboxError::Output)?;
        out.flush().map_err(SandboxError::Output)
    }

    /// Does what one input asks.
    async fn act(
        &mut self,
        input: Input,
        out: &mut impl Write,
    ) -> Result<Option<Stop>, SandboxError> {
        let output = SandboxError::Output;
        match input {
            Input::Nothing | Input::Quit => {}
            Input::Help => writeln!(out, "{}", chat::HELP).map_err(output)?,
            Input::Bots => self.list_bots(out).map_err(output)?,
            Input::Bot(name) => match self.bots.iter().position(|b| b.name == name) {
                Some(index) => {
                    self.current = index;
                    writeln!(out, "Now talking to {name}.").map_err(output)?;
                }
                None if self.disabled.contains(&name) => {
                    writeln!(
                        out,
                        "{name} is disabled in the config, so it does not run here"
                    )
                    .map_err(output)?;
                }
                None => writeln!(out, "no bot `{name}`; the bots are: {}", self.names())
                    .map_err(output)?,
            },
            Input::Chat(choice) => {
                self.chat = choice;
                match choice {
                    ChatChoice::Private => {
                        writeln!(
                            out,
                            "Now in user {}'s private chat with the bot.",
                            self.user.id
                        )
                    }
                    ChatChoice::Group(id) => writeln!(out, "Now in group {id}."),
                }
                .map_err(output)?;
            }
            Input::User(id) => {
                self.user = user(id);
                self.fake.add_user(&self.user);
                writeln!(out, "Now writing as user {id}.").map_err(output)?;
            }
            Input::Status(status) => {
                let chat = self.chat.chat(&self.user);
                self.fake.set_member_status(chat.id, self.user.id, status);
                let note = if self.chat == ChatChoice::Private {
                    " (statuses matter in groups: :chat group)"
                } else {
                    ""
                };
                writeln!(
                    out,
                    "User {} is now {} in chat {}.{note}",
                    self.user.id,
                    status.as_str(),
                    chat.id
                )
                .map_err(output)?;
            }
            Input::Text(text) => {
                let bot = &self.bots[self.current];
                let chat = self.chat.chat(&self.user);
                let before = self.handled_so_far();
                self.fake.clear_requests();
                let update_id =
                    self.fake
                        .inject_message(bot.token.expose(), &chat, &self.user, &text);
                return self.reply(update_id, before, chat.id, out).await;
            }
            Input::Press(which) => {
                let bot = &self.bots[self.current];
                let chat = self.chat.chat(&self.user);
                let sent = self.fake.sent_messages(bot.token.expose());
                let Some((message_id, buttons)) = sent
                    .iter()
                    .rev()
                    .filter(|m| m.chat_id == chat.id)
                    .map(|m| (m.message_id, chat::buttons(m.reply_markup.as_ref())))
                    .find(|(_, buttons)| !buttons.is_empty())
                else {
                    writeln!(
                        out,
                        "{} has sent no message with buttons in this chat",
                        bot.name
                    )
                    .map_err(output)?;
                    return Ok(None);
                };
                let button = match chat::pick(&buttons, &which) {
                    Ok(button) => button,
                    Err(message) => {
                        writeln!(out, "{message}").map_err(output)?;
                        return Ok(None);
                    }
                };
                match &button.action {
                    ButtonAction::Callback(data) => {
                        let before = self.handled_so_far();
                        self.fake.clear_requests();
                        let update_id = self.fake.inject_callback_query(
                            bot.token.expose(),
                            &chat,
                            &self.user,
                            message_id,
                            data,
                        );
                        return self.reply(update_id, before, chat.id, out).await;
                    }
                    ButtonAction::Url(url) => {
                        writeln!(out, "That button opens {url}; nothing reaches the bot.")
                            .map_err(output)?;
                    }
                    ButtonAction::Other => {
                        writeln!(out, "The sandbox cannot press that kind of button.")
                            .map_err(output)?;
                    }
                }
            }
        }
        Ok(None)
    }

    /// Waits until the current bot has handled update `update_id`, then
    /// shows what it sent.
    async fn reply(
        &mut self,
        update_id: u32,
        handled_before: u64,
        chat_id: i64,
        out: &mut impl Write,
    ) -> Result<Option<Stop>, SandboxError> {
        let handled = tokio::select! {
            handled = self.handled(update_id, handled_before) => handled,
            () = self.interrupted.cancelled() => return Ok(Some(Stop::Interrupted)),
            () = self.supervisor_done.cancelled() => return Ok(Some(Stop::SupervisorEnded)),
        };
        if !handled {
            let bot = &self.bots[self.current];
            writeln!(
                out,
                "{} has not handled it within {}s ({}); its replies will show after a later input.",
                bot.name,
                HANDLE_TIMEOUT.as_secs(),
                self.state_of(&bot.name)
            )
            .map_err(SandboxError::Output)?;
        }
        self.show_new(chat_id, handled, out)
            .map_err(SandboxError::Output)?;
        Ok(None)
    }

    /// The current bot's updates handled (decided and committed) so far.
    fn handled_so_far(&self) -> u64 {
        let name = &self.bots[self.current].name;
        self.board
            .snapshot()
            .into_iter()
            .find(|s| &s.name == name)
            .map_or(0, |s| s.outbox.handled)
    }

    /// True once the current bot has received `update_id`, handled it (one
    /// more update handled than `before`), and its outbox has sent what
    /// that decided. False after [`HANDLE_TIMEOUT`].
    async fn handled(&self, update_id: u32, before: u64) -> bool {
        let deadline = Instant::now() + HANDLE_TIMEOUT;
        if !self.offset_past(update_id).await {
            return false;
        }
        // Replies are committed with their update's handled mark, then sent
        // at once (no pacing in the sandbox). A process bot's program
        // confirms an update when it asks for the next ones, often before
        // it has answered: its answer is what it asks of Telegram (other
        // than updates) until it has been quiet for a moment, or nothing
        // if it has asked nothing for a longer while.
        let bot = &self.bots[self.current];
        let program = bot.kind == "process";
        let token = bot.token.expose();
        let mut confirmed_at = None;
        let mut last_change = Instant::now();
        let mut last_asked = 0;
        while Instant::now() < deadline {
            let status = self
                .board
                .snapshot()
                .into_iter()
                .find(|s| s.name == bot.name);
            let outbox = status.as_ref().map(|s| s.outbox).unwrap_or_default();
            let done = outbox.handled > before && outbox.pending == 0;
            if done && !program {
                return true;
            }
            if done {
                // The request log was cleared just before the input.
                let asked = self
                    .fake
                    .requests()
                    .iter()
                    .filter(|r| r.token == token && r.method != "getupdates")
                    .count();
                let now = Instant::now();
                let since = *confirmed_at.get_or_insert(now);
                if asked != last_asked {
                    last_asked = asked;
                    last_change = now;
                }
                let answered = asked > 0 && now - last_change >= PROGRAM_QUIET;
                if answered || (asked == 0 && now - since >= PROGRAM_SILENT) {
                    return true;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        false
    }

    /// True once the current bot's offset has moved past `update_id`:
    /// botvisor moves it once the update is stored in its inbox, and each
    /// getUpdates carries it. False after
    /// [`HANDLE_TIMEOUT`].
    async fn offset_past(&self, update_id: u32) -> bool {
        let token = self.bots[self.current].token.expose();
        let past = |offset: i64| offset > i64::from(update_id);
        let deadline = Instant::now() + HANDLE_TIMEOUT;
        // The request log was cleared just before the update was injected.
        let mut nth = 1;
        loop {
            if past(self.fake.confirmed_offset(token)) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .fake
                .wait_for_request(token, "getUpdates", nth, left)
                .await
            {
                // The fake records a request before it applies its offset,
                // so the offset is read from the request itself.
                Ok(request)
                    if request
                        .body
                        .get("offset")
                        .and_then(offset)
                        .is_some_and(past) =>
                {
                    return true;
                }
                Ok(_) => nth += 1,
                Err(_) => return past(self.fake.confirmed_offset(token)),
            }
        }
    }

    /// Prints what the current bot sent since the last time, and the text
    /// of any button answer.
    fn show_new(&mut self, chat_id: i64, handled: bool, out: &mut impl Write) -> io::Result<()> {
        let index = self.current;
        let bot = &self.bots[index];
        let sent: Vec<SentMessage> = self.fake.sent_messages(bot.token.expose());
        let new = sent.get(self.shown[index]..).unwrap_or_default();
        let mut here = 0;
        for message in new {
            let other = (message.chat_id != chat_id).then_some(message.chat_id);
            if other.is_none() {
                here += 1;
            }
            let buttons = chat::buttons(message.reply_markup.as_ref());
            writeln!(
                out,
                "{}",
                chat::render_message(&bot.name, &message.text, &buttons, other)
            )?;
        }
        self.shown[index] = sent.len();
        let answers = self.fake.callback_answers(bot.token.expose());
        for answer in answers.get(self.answers_shown[index]..).unwrap_or_default() {
            if let Some(text) = answer.text.as_deref().filter(|t| !t.is_empty()) {
                let kind = if answer.show_alert { "alert" } else { "notice" };
                writeln!(out, "{} ({kind}): {text}", bot.name)?;
                here += 1;
            }
        }
        self.answers_shown[index] = answers.len();
        if here == 0 && handled {
            writeln!(out, "{}: (no answer)", bot.name)?;
        }
        Ok(())
    }

    /// Waits until every bot polls, or says which do not. `Some` when the
    /// wait was cut short.
    async fn wait_ready(&self, out: &mut impl Write) -> Result<Option<Stop>, SandboxError> {
        let waits = self.bots.iter().map(|bot| {
            let fake = self.fake.clone();
            let board = &self.board;
            async move {
                let deadline = Instant::now() + READY_TIMEOUT;
                if fake
                    .wait_until_polling(bot.token.expose(), READY_TIMEOUT)
                    .await
                    .is_err()
                {
                    return false;
                }
                // A process bot is ready once its program asks the gateway
                // for updates: before that, an input would wait for the
                // program to start rather than for it to answer.
                if bot.kind != "process" {
                    return true;
                }
                while Instant::now() < deadline {
                    let polled = board.snapshot().into_iter().any(|s| {
                        s.name == bot.name
                            && s.process.as_ref().is_some_and(|p| p.last_poll.is_some())
                    });
                    if polled {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                false
            }
        });
        let ready = tokio::select! {
            ready = futures::future::join_all(waits) => ready,
            () = self.interrupted.cancelled() => return Ok(Some(Stop::Interrupted)),
            () = self.supervisor_done.cancelled() => return Ok(Some(Stop::SupervisorEnded)),
        };
        for (bot, ready) in self.bots.iter().zip(ready) {
            if !ready {
                writeln!(
                    out,
                    "warning: {} is not polling after {}s ({})",
                    bot.name,
                    READY_TIMEOUT.as_secs(),
                    self.state_of(&bot.name)
                )
                .map_err(SandboxError::Output)?;
            }
        }
        Ok(None)
    }

    fn banner(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(
            out,
            "botvisor sandbox: the bots of {} against a fake Telegram on this machine \
             (no tokens, no network).",
            self.config_path.display()
        )?;
        // Padded by hand and capped: a format width over 65,535 panics.
        let width =
            |len: fn(&SandboxBot) -> usize| self.bots.iter().map(len).max().unwrap_or(0).min(32);
        let name_width = width(|b| b.name.chars().count());
        let kind_width = width(|b| b.kind.chars().count());
        let pad = |text: &str, width: usize| {
            let fill = width.saturating_sub(text.chars().count());
            format!("{text}{}", " ".repeat(fill))
        };
        for bot in &self.bots {
            writeln!(
                out,
                "  {}  {}  @{}",
                pad(&bot.name, name_width),
                pad(bot.kind, kind_width),
                bot.username
            )?;
        }
        if !self.disabled.is_empty() {
            writeln!(
                out,
                "  not run (disabled in the config): {}",
                self.disabled.join(", ")
            )?;
        }
        if !self.relays.is_empty() {
            writeln!(
                out,
                "Announcement checks are off in the sandbox ({}): no web site is read, nothing is relayed.",
                self.relays.join(", ")
            )?;
        }
        writeln!(
            out,
            "State lives in a throwaway store, deleted at exit; warnings and errors go to stderr."
        )?;
        writeln!(out, "\nType a message for the current bot, or a command:")?;
        writeln!(out, "{}", chat::HELP)?;
        writeln!(
            out,
            "\nTalking to {} in a private chat, as user {}.",
            self.bots[self.current].name, self.user.id
        )?;
        out.flush()
    }

    fn list_bots(&self, out: &mut impl Write) -> io::Result<()> {
        for (index, bot) in self.bots.iter().enumerate() {
            let mark = if index == self.current { "*" } else { " " };
            writeln!(
                out,
                "{mark} {} ({}, @{}): {}",
                bot.name,
                bot.kind,
                bot.username,
                self.state_of(&bot.name)
            )?;
        }
        for name in &self.disabled {
            writeln!(out, "  {name}: disabled in the config")?;
        }
        Ok(())
    }

    fn names(&self) -> String {
        let names: Vec<&str> = self.bots.iter().map(|b| b.name.as_str()).collect();
        names.join(", ")
    }

    /// A bot's state and its reason, for messages.
    fn state_of(&self, name: &str) -> String {
        match self.board.snapshot().into_iter().find(|s| s.name == name) {
            Some(status) if status.reason.is_empty() => status.state.to_string(),
            Some(status) => format!("{}: {}", status.state, status.reason),
            None => "not started".to_owned(),
        }
    }

    fn prompt(&self) -> String {
        let chat = self.chat.chat(&self.user);
        let status = match self.chat {
            ChatChoice::Private => MemberStatus::Member,
            ChatChoice::Group(_) => self.fake.member_status(chat.id, self.user.id),
        };
        chat::prompt(
            &self.bots[self.current].name,
            self.chat,
            self.user.id,
            status,
        )
    }
}

/// A getUpdates `offset` as JSON gives it (a number, or a form field's text).
fn offset(value: &serde_json::Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreSpec;

    const CONFIG: &str = r#"
[supervisor]
api_url = "https://api.telegram.org"
store = "sqlite:real.db"
log_dir = "logs"

[bot.tanitim]
kind = "echo"
token_env = "TANITIM_TOKEN"

[bot.duyuru-2]
kind = "announcements"
token_env = "DUYURU_TOKEN"
list_url = "https://example.org/duyurular"
link_selector = "a"
text_selector = "p"
alert_chat = -100

[bot.off]
kind = "echo"
token_env = "OFF_TOKEN"
enabled = false
"#;

    #[test]
    fn points_every_bot_at_the_fake_and_away_from_real_state() {
        let config = Config::from_str(CONFIG, Path::new("/srv/supervisor.toml")).expect("valid");
        let fake = Url::parse("http://127.0.0.1:4321").expect("a URL");
        let store = Path::new("/tmp/scratch/sandbox.db");
        let prepared = prepare(&config, &fake, store).expect("prepared");

        let names: Vec<&str> = prepared.bots.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["tanitim", "duyuru-2"]);
        assert_eq!(prepared.disabled, ["off"]);
        assert_eq!(prepared.relays, ["duyuru-2"]);
        assert_eq!(prepared.bots[1].username, "duyuru_2_bot");
        assert_eq!(prepared.config.supervisor.api_url, fake);
        assert_eq!(prepared.config.supervisor.log_dir, None);
        assert_eq!(
            prepared.config.store_spec(&prepared.env),
            Ok(StoreSpec::Sqlite(store.to_path_buf()))
        );
        // The process environment is not read: PATH is always set there.
        assert_eq!(prepared.env.var("PATH"), None);
        assert_eq!(prepared.config.supervisor.http, None);
        assert_eq!(prepared.config.supervisor.alerts, None);

        for (bot, sandboxed) in prepared.config.bots.iter().zip(&prepared.bots) {
            assert_eq!(bot.api_url, fake, "{}", bot.name);
            assert_eq!(
                prepared.env.token(&bot.token_env).as_ref(),
                Some(&sandboxed.token)
            );
            assert_eq!(
                crate::secret::Redactor::global().redact(sandboxed.token.expose()),
                "<redacted>",
                "an invented token is token-shaped"
            );
        }
        assert_ne!(prepared.bots[0].token, prepared.bots[1].token);
        assert_ne!(
            prepared.bots[0].token.bot_id(),
            prepared.bots[1].token.bot_id()
        );

        let KindSettings::Announcements(relay) = &prepared.config.bots[1].kind else {
            panic!("the relay keeps its kind");
        };
        assert!(!matches!(relay.list_url.scheme(), "http" | "https"));
        assert_eq!(relay.alert_chat, None);
        assert_eq!(relay.check_every, CHECKS_OFF_EVERY);
    }

    #[test]
    fn bots_whose_names_differ_only_by_dash_stay_apart() {
        let text = "[bot.a-b]\nkind = \"echo\"\ntoken_env = \"X\"\n[bot.a_b]\nkind = \"echo\"\ntoken_env = \"Y\"\n";
        let config = Config::from_str(text, Path::new("/srv/supervisor.toml")).expect("valid");
        let fake = Url::parse("http://127.0.0.1:4321").expect("a URL");
        let prepared = prepare(&config, &fake, Path::new("/tmp/s.db")).expect("prepared");
        let vars: Vec<&str> = prepared
            .config
            .bots
            .iter()
            .map(|b| b.token_env.as_str())
            .collect();
        assert_ne!(vars[0], vars[1]);
        assert_ne!(prepared.bots[0].username, prepared.bots[1].username);
        for (bot, sandboxed) in prepared.config.bots.iter().zip(&prepared.bots) {
            assert_eq!(
                prepared.env.token(&bot.token_env).as_ref(),
                Some(&sandboxed.token)
            );
        }
    }

    #[test]
    fn reads_offsets_as_json_or_form_fields() {
        use serde_json::json;
        let cases = [
            (json!(7), Some(7)),
            (json!("8"), Some(8)),
            (json!(null), None),
            (json!("x"), None),
        ];
        for (value, expected) in cases {
            assert_eq!(offset(&value), expected, "{value}");
        }
    }
}
