//! `botvisor sandbox` as an operator meets it: the real binary on the
//! shipped config, driven through its stdin and read from its stdout, with
//! no token and no store in its environment (or with real-looking ones it
//! must ignore). Every wait is for an output line, bounded by a timeout.

mod common;

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use botvisor::bots::announcements::Announcements;
use botvisor::config::faq::FaqContent;
use botvisor::config::{AnnouncementsSettings, Config, KindSettings};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin};
use tokio::sync::watch;

/// A generous ceiling for one reply on a busy 2-core machine; it only
/// catches hangs.
const REPLY: Duration = Duration::from_secs(60);

fn shipped_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("supervisor.toml")
}

/// The shipped bots' settings, as botvisor reads them.
fn shipped() -> (FaqContent, Box<AnnouncementsSettings>) {
    let config = Config::load(&shipped_config()).expect("the shipped config is valid");
    let faq = match &config.bot("tanitim").expect("the tanitim bot").kind {
        KindSettings::Faq(settings) => settings.content.clone(),
        other => panic!("tanitim is {}", other.name()),
    };
    let relay = match &config.bot("duyuru").expect("the duyuru bot").kind {
        KindSettings::Announcements(settings) => settings.clone(),
        other => panic!("duyuru is {}", other.name()),
    };
    (faq, relay)
}

fn first_line(text: &str) -> &str {
    text.lines().next().expect("a text with a line")
}

/// A running `botvisor sandbox` with its output collected line by line.
struct Sandbox {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
    count: watch::Receiver<usize>,
    /// Lines before this index have been matched already.
    cursor: usize,
}

impl Sandbox {
    fn start(vars: &[(&str, &str)]) -> Sandbox {
        Sandbox::start_with(&shipped_config(), vars)
    }

    fn start_with(config: &std::path::Path, vars: &[(&str, &str)]) -> Sandbox {
        let config = config.to_str().expect("a UTF-8 path");
        let mut command = common::command(&["sandbox", "--config", config], vars);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start botvisor sandbox");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, count) = watch::channel(0usize);
        let tx = Arc::new(tx);
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        common::spawn_reader(stdout, "", lines.clone(), tx.clone());
        common::spawn_reader(stderr, "stderr: ", lines.clone(), tx);
        Sandbox {
            stdin: child.stdin.take(),
            child,
            lines,
            count,
            cursor: 0,
        }
    }

    fn output(&self) -> String {
        self.lines.lock().expect("lines lock").join("\n")
    }

    /// Types one line.
    async fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to the sandbox");
        stdin.flush().await.expect("flush the sandbox's stdin");
    }

    /// Waits for a line containing `needle` after the last one matched,
    /// and returns it.
    async fn expect(&mut self, needle: &str) -> String {
        let waited = tokio::time::timeout(REPLY, async {
            loop {
                let found = {
                    let lines = self.lines.lock().expect("lines lock");
                    lines
                        .iter()
                        .enumerate()
                        .skip(self.cursor)
                        .find(|(_, line)| line.contains(needle))
                        .map(|(i, line)| (i, line.clone()))
                };
                if let Some((i, line)) = found {
                    self.cursor = i + 1;
                    return line;
                }
                if self.count.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await;
        waited.unwrap_or_else(|_| {
            panic!(
                "no line containing {needle:?} within {REPLY:?}; output:\n{}",
                self.output()
            )
        })
    }

    /// Waits for the process to end and its output to be read.
    async fn exit(&mut self) -> ExitStatus {
        let status = match tokio::time::timeout(REPLY, self.child.wait()).await {
            Ok(status) => status.expect("wait for the sandbox"),
            Err(_) => panic!(
                "the sandbox did not exit within {REPLY:?}; output:\n{}",
                self.output()
            ),
        };
        let _ = tokio::time::timeout(common::PROMPT, async {
            while self.count.changed().await.is_ok() {}
        })
        .await;
        status
    }

    /// Asserts no line holds anything shaped like a token.
    fn assert_no_token(&self) {
        let shape = regex::Regex::new(r"[0-9]{3,16}:[A-Za-z0-9_-]{20,}").expect("a regex");
        let output = self.output();
        assert!(!shape.is_match(&output), "a token was printed:\n{output}");
        assert!(!output.contains(common::REAL_SHAPED_TOKEN));
    }
}

#[tokio::test]
async fn chats_with_the_shipped_bots_without_tokens() {
    let (faq, relay) = shipped();
    let help = first_line(&faq.help_header);
    let command = faq.commands.first().expect("a content command");
    let mut sandbox = Sandbox::start(&[]);

    sandbox
        .expect("Announcement checks are off in the sandbox")
        .await;
    sandbox.expect(":press N|LABEL").await;

    sandbox.say("/help").await;
    let line = sandbox.expect(help).await;
    assert!(line.starts_with("tanitim: "), "{line}");

    // Bad input gets a message, and the chat goes on.
    sandbox.say(":press 1").await;
    sandbox
        .expect("tanitim has sent no message with buttons in this chat")
        .await;
    sandbox.say(":dance").await;
    sandbox.expect("unknown command :dance").await;

    sandbox.say(&format!("/{}", command.name)).await;
    sandbox
        .expect(&format!("tanitim: {}", first_line(&command.answer)))
        .await;
    sandbox.expect(&faq.closing_question).await;
    sandbox
        .expect(&format!("[1] {}  [2] {}", faq.yes_label, faq.no_label))
        .await;

    sandbox.say(&format!(":press {}", faq.yes_label)).await;
    sandbox.expect(&format!("tanitim: {help}")).await;
    sandbox.say(":press 2").await;
    sandbox
        .expect(&format!("tanitim: {}", first_line(&faq.goodbye)))
        .await;

    // A plain text is handled and not answered.
    sandbox.say("merhaba").await;
    sandbox.expect("tanitim: (no answer)").await;

    sandbox.say(":bot duyuru").await;
    sandbox.expect("Now talking to duyuru.").await;
    sandbox.say(&format!("/{}", relay.commands.help)).await;
    let start_line = format!("/{} - ", relay.commands.start);
    let help_text = Announcements::new(&relay).help_text();
    let listed = help_text
        .lines()
        .find(|l| l.starts_with(&start_line))
        .expect("the relay's help lists its start command");
    sandbox.expect(listed).await;

    // In a group only administrators may switch the relay on.
    sandbox.say(":chat group").await;
    sandbox.say(&format!("/{}", relay.commands.start)).await;
    sandbox
        .expect("yalnızca grubun kurucusu ve yöneticileri")
        .await;
    sandbox.say(":status administrator").await;
    sandbox.expect("is now administrator").await;
    sandbox.say(&format!("/{}", relay.commands.start)).await;
    sandbox.expect("duyuru: Duyurular bu sohbette açıldı").await;

    sandbox.say(":quit").await;
    let status = sandbox.exit().await;
    assert_eq!(status.code(), Some(0), "output:\n{}", sandbox.output());
    sandbox.assert_no_token();
}

#[tokio::test]
async fn ignores_the_operators_tokens_and_store_and_ends_at_end_of_input() {
    let (faq, _) = shipped();
    // A real-shaped token the fake does not know, and a store that cannot
    // be reached: using either would break the sandbox.
    let mut sandbox = Sandbox::start(&[
        ("TANITIM_TOKEN", common::REAL_SHAPED_TOKEN),
        ("DUYURU_TOKEN", common::SECOND_TOKEN),
        ("DATABASE_URL", "postgres://nobody@127.0.0.1:1/nothing"),
    ]);
    sandbox.say("/start").await;
    sandbox
        .expect(&format!("tanitim: {}", first_line(&faq.greeting)))
        .await;
    // End of input, as Ctrl-D gives it.
    drop(sandbox.stdin.take());
    let status = sandbox.exit().await;
    assert_eq!(status.code(), Some(0), "output:\n{}", sandbox.output());
    sandbox.assert_no_token();
    assert!(!sandbox.output().contains(common::SECOND_TOKEN));
}

#[tokio::test]
async fn a_missing_config_is_a_config_error() {
    let out = common::run_to_end(
        &["sandbox", "--config", "/nonexistent/supervisor.toml"],
        &[],
    )
    .await;
    assert_eq!(out.code(), Some(78), "stderr:\n{}", out.stderr);
    assert!(
        out.stderr
            .contains("/nonexistent/supervisor.toml: cannot read the config file"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

#[tokio::test]
async fn runs_a_python_telegram_bot_script_through_the_gateway() {
    let python = tokio::task::spawn_blocking(common::python::python)
        .await
        .expect("the venv");
    let script = common::python::bot_script("ptb_bot.py");
    let config = common::ConfigDir::new(&format!(
        "[bot.quiz]\nkind = \"process\"\ntoken_env = \"QUIZ_TOKEN\"\ncommand = [{:?}, {:?}]\n",
        python.display().to_string(),
        script.display().to_string()
    ));
    let mut sandbox = Sandbox::start_with(&config.path, &[]);
    sandbox.expect(":press N|LABEL").await;
    sandbox.say("/start").await;
    sandbox.expect("quiz: started").await;
    sandbox.expect("[1] Press").await;
    sandbox.say(":press 1").await;
    sandbox.expect("quiz (notice): ok").await;
    sandbox.say("merhaba dünya").await;
    sandbox.expect("quiz: merhaba dünya").await;
    sandbox.say(":quit").await;
    let status = sandbox.exit().await;
    assert_eq!(status.code(), Some(0), "output:\n{}", sandbox.output());
    sandbox.assert_no_token();
}
