//! The reference bots of other libraries (python-telegram-bot, aiogram,
//! teloxide; `tests/bots/` and `examples/teloxide_bot.rs`) against the fake
//! Telegram directly: each runs as a child process with nothing but
//! `BOT_TOKEN`, `BOT_API_URL`, `PATH` and `HOME` in its environment, answers
//! `/start` with a button, handles the press, echoes a text, and stops
//! cleanly on SIGTERM. This checks the bots themselves, so that tests which
//! run them behind botvisor's gateway can trust them. Every wait is for an
//! event of the fake, bounded by a timeout.

mod common;

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_telegram::{Chat, FakeTelegram, RecordedRequest, User};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// The first poll: importing aiogram alone takes 7–8 s of CPU here, and
/// several times that on a busy 2-core machine.
const STARTUP: Duration = Duration::from_secs(120);
/// Anything after that.
const STEP: Duration = Duration::from_secs(30);

/// A token of Telegram's shape (`<digits>:<35 characters>`), made here so
/// that no token-shaped literal sits in the source.
fn real_shaped_token(id: u64) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let secret: String = (0..35u64)
        .map(|i| char::from(ALPHABET[usize::try_from((id * 7 + i * 13) % 64).unwrap()]))
        .collect();
    format!("{id}:{secret}")
}

/// A bot of one library, running as a child process, with its output
/// collected line by line.
struct LibraryBot {
    name: &'static str,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl LibraryBot {
    /// Starts `program args…` with only the bot's two variables (and `PATH`,
    /// `HOME`) in its environment.
    fn start(
        name: &'static str,
        program: PathBuf,
        args: &[PathBuf],
        tg: &FakeTelegram,
        token: &str,
    ) -> Self {
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .env("BOT_TOKEN", token)
            .env("BOT_API_URL", tg.url())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for key in ["PATH", "HOME"] {
            if let Ok(value) = std::env::var(key) {
                command.env(key, value);
            }
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start the {name} bot: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, _) = watch::channel(0usize);
        let tx = Arc::new(tx);
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        common::spawn_reader(stdout, "", lines.clone(), tx.clone());
        common::spawn_reader(stderr, "stderr: ", lines.clone(), tx);
        LibraryBot { name, child, lines }
    }

    fn output(&self) -> String {
        self.lines.lock().expect("lines lock").join("\n")
    }

    /// Waits for `event`, failing at once (with the bot's output) if the
    /// bot exits first, and after `timeout` if nothing happens.
    async fn until<T, E: std::fmt::Display>(
        &mut self,
        what: &str,
        event: impl std::future::Future<Output = Result<T, E>>,
    ) -> T {
        tokio::select! {
            result = event => match result {
                Ok(value) => value,
                Err(e) => panic!("{}: {what}: {e}\noutput:\n{}", self.name, self.output()),
            },
            status = self.child.wait() => panic!(
                "{}: exited ({status:?}) while waiting for {what}\noutput:\n{}",
                self.name,
                self.output()
            ),
        }
    }

    /// SIGTERM, then the exit status (bounded by [`STEP`]).
    async fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().expect("the bot is running");
        let pid = i32::try_from(pid).expect("a pid fits in i32");
        // SAFETY: kill(2) with a pid we spawned and a valid signal number.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        match tokio::time::timeout(STEP, self.child.wait()).await {
            Ok(status) => status.expect("wait for the bot"),
            Err(_) => panic!(
                "{}: still running {STEP:?} after SIGTERM\noutput:\n{}",
                self.name,
                self.output()
            ),
        }
    }
}

/// A request as a short line, for the log of what a library did.
fn describe(r: &RecordedRequest) -> String {
    format!("#{} {} {} -> {:?}", r.seq, r.method, r.body, r.outcome)
}

/// The whole exercise: `/start`, the button, an echo, SIGTERM.
async fn exercise(tg: &FakeTelegram, token: &str, mut bot: LibraryBot) {
    let started = Instant::now();
    let alice = User::new(4242, "Alice");
    let chat = Chat::private(&alice);

    bot.until(
        "the first getUpdates",
        tg.wait_for_request(token, "getUpdates", 1, STARTUP),
    )
    .await;
    let polling_after = started.elapsed();

    // /start → "started" with one button.
    tg.inject_message(token, &chat, &alice, "/start");
    let sent = bot
        .until("the answer to /start", tg.wait_for_sent(token, 1, STEP))
        .await;
    let started_msg = &sent[0];
    assert_eq!(started_msg.chat_id, chat.id);
    assert_eq!(started_msg.text, "started");
    let markup = started_msg.reply_markup.clone().expect("a reply_markup");
    let rows = markup["inline_keyboard"]
        .as_array()
        .expect("an inline keyboard");
    assert_eq!(rows.len(), 1, "{markup}");
    let row = rows[0].as_array().expect("a row of buttons");
    assert_eq!(row.len(), 1, "{markup}");
    assert_eq!(row[0]["text"], "Press", "{markup}");
    assert_eq!(row[0]["callback_data"], "pressed", "{markup}");

    // The press → answerCallbackQuery "ok", then the text edited to "pressed".
    tg.inject_callback_query(token, &chat, &alice, started_msg.message_id, "pressed");
    let token_owned = token.to_owned();
    let edit = bot
        .until(
            "an answered editMessageText",
            tg.wait_for_request_matching("an answered editMessageText", STEP, move |r| {
                r.token == token_owned && r.method == "editmessagetext" && r.status().is_some()
            }),
        )
        .await;
    assert_eq!(edit.status(), Some(200), "{}", describe(&edit));
    let edits = tg.edited_messages(token);
    assert_eq!(edits.len(), 1, "{edits:?}");
    assert_eq!(edits[0].text, "pressed");
    assert_eq!(edits[0].chat_id, chat.id);
    assert_eq!(edits[0].message_id, started_msg.message_id);
    let answers = tg.callback_answers(token);
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0].text.as_deref(), Some("ok"));
    let answer = tg.requests_of(token, "answerCallbackQuery");
    assert!(answer[0].seq < edit.seq, "answered after the edit");

    // A text → the same text back.
    let text = "Hello, gateway: ünïcödé & ✓ 100%";
    tg.inject_message(token, &chat, &alice, text);
    let sent = bot
        .until("the echo", tg.wait_for_sent(token, 2, STEP))
        .await;
    assert_eq!(sent[1].text, text);
    assert_eq!(sent[1].chat_id, chat.id);
    assert_eq!(sent.len(), 2, "{sent:?}");
    let working_after = started.elapsed();

    let before_stop = tg.requests().last().map_or(0, |r| r.seq);
    let status = bot.terminate().await;
    assert!(
        status.success(),
        "{}: {status}\noutput:\n{}",
        bot.name,
        bot.output()
    );

    // What the library did, for a human reading `--nocapture`.
    eprintln!(
        "{}: polling after {polling_after:?}, done after {working_after:?}; requests:",
        bot.name
    );
    for r in tg.requests() {
        let mark = if r.seq > before_stop {
            " (after SIGTERM)"
        } else {
            ""
        };
        eprintln!("  {}{mark}", describe(&r));
    }
    eprintln!("output:\n{}", bot.output());
}

#[tokio::test]
async fn python_telegram_bot() {
    let python = tokio::task::spawn_blocking(common::python::python)
        .await
        .expect("the venv");
    let tg = FakeTelegram::start().await.expect("start the fake");
    let token = real_shaped_token(7_100_000_001);
    tg.add_bot(&token, "ptb_reference_bot");
    let script = common::python::bot_script("ptb_bot.py");
    let bot = LibraryBot::start("python-telegram-bot", python, &[script], &tg, &token);
    exercise(&tg, &token, bot).await;
}

#[tokio::test]
async fn aiogram() {
    let python = tokio::task::spawn_blocking(common::python::python)
        .await
        .expect("the venv");
    let tg = FakeTelegram::start().await.expect("start the fake");
    let token = real_shaped_token(7_100_000_002);
    tg.add_bot(&token, "aiogram_reference_bot");
    let script = common::python::bot_script("aiogram_bot.py");
    let bot = LibraryBot::start("aiogram", python, &[script], &tg, &token);
    exercise(&tg, &token, bot).await;
}

#[tokio::test]
async fn teloxide() {
    let example = tokio::task::spawn_blocking(common::python::teloxide_example)
        .await
        .expect("the teloxide example");
    let tg = FakeTelegram::start().await.expect("start the fake");
    let token = real_shaped_token(7_100_000_003);
    tg.add_bot(&token, "teloxide_reference_bot");
    let bot = LibraryBot::start("teloxide", example, &[], &tg, &token);
    exercise(&tg, &token, bot).await;
}
