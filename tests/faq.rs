//! The Tanıtım bot (`faq` kind) against the fake, running the real binary
//! with the shipped content: every command, /help, the Yes / No buttons,
//! addressing in groups, silence where it should be silent, the command
//! menu, a reload with changed content, malformed content files, and the
//! preview command.

mod common;

use std::path::PathBuf;

use botvisor::config::faq::FaqContent;
use botvisor::config::{Config, KindSettings};
use common::{ConfigDir, Daemon, PROMPT, run_to_end, supervisor_table};
use fake_telegram::{Chat, FakeTelegram, SentMessage, User};
use serde_json::json;

const TOKEN: &str = "707:token-of-the-faq-bot";
const ECHO_TOKEN: &str = "808:token-of-the-echo-bot";
const USERNAME: &str = "tanitim_bot";
const VARS: &[(&str, &str)] = &[("TANITIM_TOKEN", TOKEN), ("ECHO_TOKEN", ECHO_TOKEN)];

fn shipped_content_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("content/tanitim.toml")
}

/// The shipped content, as botvisor reads it.
fn shipped_content() -> FaqContent {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("supervisor.toml");
    let config = Config::load(&path).expect("the shipped config is valid");
    match &config.bot("tanitim").expect("the shipped tanitim bot").kind {
        KindSettings::Faq(settings) => settings.content.clone(),
        other => panic!("tanitim is {}", other.name()),
    }
}

fn faq_config(api_url: &str, content_file: &str) -> String {
    format!(
        "{}[bot.tanitim]\nkind = \"faq\"\ntoken_env = \"TANITIM_TOKEN\"\ncontent_file = \"{content_file}\"\n\
         [bot.echo]\nkind = \"echo\"\ntoken_env = \"ECHO_TOKEN\"\n",
        supervisor_table(api_url, "")
    )
}

/// The two buttons of an answer, as (label, data).
fn buttons(message: &SentMessage) -> Vec<(String, String)> {
    let rows = message
        .reply_markup
        .as_ref()
        .and_then(|m| m["inline_keyboard"].as_array().cloned());
    rows.unwrap_or_default()
        .iter()
        .flat_map(|row| row.as_array().cloned().unwrap_or_default())
        .map(|b| {
            (
                b["text"].as_str().unwrap_or_default().to_owned(),
                b["callback_data"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

struct Running {
    tg: FakeTelegram,
    daemon: Daemon,
    _config: ConfigDir,
}

async fn start_shipped() -> Running {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN, USERNAME);
    tg.add_bot(ECHO_TOKEN, "echo_bot");
    let path = shipped_content_path();
    let config = ConfigDir::new(&faq_config(&tg.url(), path.to_str().expect("utf-8 path")));
    let daemon = Daemon::start(&config.path, VARS);
    tg.wait_for_request(TOKEN, "getUpdates", 1, PROMPT)
        .await
        .expect("the faq bot polls");
    Running {
        tg,
        daemon,
        _config: config,
    }
}

/// Sends `text` in `chat` and returns the replies it produced, using a
/// trailing `/start` in the same chat as the marker that everything before
/// it has been handled (a chat's updates are handled in order).
async fn replies_to(tg: &FakeTelegram, chat: &Chat, user: &User, text: &str) -> Vec<SentMessage> {
    let greeting = shipped_content().greeting;
    let in_chat = |sent: &[SentMessage]| -> Vec<SentMessage> {
        sent.iter()
            .filter(|m| m.chat_id == chat.id)
            .cloned()
            .collect()
    };
    let before = tg.sent_messages(TOKEN).len();
    tg.inject_message(TOKEN, chat, user, text);
    tg.inject_message(TOKEN, chat, user, "/start");
    // The marker's greeting, plus one more if `text` itself was /start.
    let markers = 1 + usize::from(text.trim() == "/start");
    let mut seen = before;
    loop {
        let sent = tg
            .wait_for_sent(TOKEN, seen + 1, PROMPT)
            .await
            .expect("a reply");
        seen = sent.len();
        let replies = in_chat(&sent[before..]);
        if replies.iter().filter(|m| m.text == greeting).count() >= markers {
            let mut replies = replies;
            replies.pop();
            return replies;
        }
    }
}

#[tokio::test]
async fn every_command_gets_exactly_its_answer_and_the_two_buttons() {
    let mut run = start_shipped().await;
    let content = shipped_content();
    assert!(
        content.commands.len() >= 28,
        "the reference table has 28 commands"
    );
    let user = User::new(1001, "Aday");
    let chat = Chat::private(&user);
    for command in &content.commands {
        let replies = replies_to(&run.tg, &chat, &user, &format!("/{}", command.name)).await;
        assert_eq!(replies.len(), 1, "/{}: {replies:?}", command.name);
        assert!(
            replies[0].text.starts_with(&command.answer),
            "/{}: {}",
            command.name,
            replies[0].text
        );
        assert!(replies[0].text.ends_with(&content.closing_question));
        assert_eq!(
            buttons(&replies[0]),
            [
                ("Evet".to_owned(), "faq:yes".to_owned()),
                ("Hayır".to_owned(), "faq:no".to_owned())
            ]
        );
    }
    // /help lists every command with its description.
    let help = replies_to(&run.tg, &chat, &user, "/help").await;
    assert_eq!(help.len(), 1);
    assert!(help[0].text.starts_with(&content.help_header));
    for command in &content.commands {
        let line = format!("/{} - {}", command.name, command.description);
        assert!(help[0].text.contains(&line), "/help lacks {line:?}");
    }
    // The credits carry the configured contact.
    assert!(
        content
            .command("hakkinda")
            .expect("hakkinda")
            .answer
            .contains("@btu_bm")
    );
    run.daemon.signal(libc::SIGTERM);
    assert_eq!(run.daemon.wait_exit(PROMPT).await.code(), Some(0));
}

#[tokio::test]
async fn the_buttons_show_help_or_say_goodbye_and_are_always_answered() {
    let mut run = start_shipped().await;
    let content = shipped_content();
    let user = User::new(1002, "Aday");
    let chat = Chat::private(&user);
    let answer = replies_to(&run.tg, &chat, &user, "/erasmus").await;
    let message_id = answer[0].message_id;

    let cases: &[(&str, Option<&str>)] = &[
        ("faq:yes", Some(content.help_header.as_str())),
        ("faq:no", Some(content.goodbye.as_str())),
        ("faq:stale-data-from-an-old-version", None),
        ("", None),
    ];
    for (i, (data, expected)) in cases.iter().enumerate() {
        let before = run.tg.sent_messages(TOKEN).len();
        run.tg
            .inject_callback_query(TOKEN, &chat, &user, message_id, data);
        let answered = run
            .tg
            .wait_for_request(TOKEN, "answerCallbackQuery", i + 1, PROMPT)
            .await
            .expect("every press is answered");
        assert!(
            answered.body["callback_query_id"].is_string(),
            "{}",
            answered.body
        );
        let replies = replies_to(&run.tg, &chat, &user, "/start").await;
        let sent = &run.tg.sent_messages(TOKEN)[before..];
        match expected {
            Some(text) => assert!(sent[0].text.starts_with(text), "{data}: {}", sent[0].text),
            None => assert_eq!(replies.len(), 1, "{data}: nothing but the marker: {sent:?}"),
        }
    }
    run.daemon.signal(libc::SIGTERM);
    assert_eq!(run.daemon.wait_exit(PROMPT).await.code(), Some(0));
}

#[tokio::test]
async fn groups_get_addressed_commands_and_no_spam() {
    let mut run = start_shipped().await;
    let content = shipped_content();
    let user = User::new(1003, "Üye");
    let group = Chat::supergroup(-1001000001003, "BTÜ BM Adaylar");
    let private = Chat::private(&user);
    let cases: &[(&Chat, &str, Option<&str>)] = &[
        (&group, "/help@OtherBot", None),
        (
            &group,
            "/help@tanitim_bot",
            Some(content.help_header.as_str()),
        ),
        (
            &group,
            "/HELP@Tanitim_Bot",
            Some(content.help_header.as_str()),
        ),
        (
            &group,
            "/erasmus",
            Some(content.command("erasmus").expect("erasmus").answer.as_str()),
        ),
        (&group, "/no_such_command", None),
        (
            &private,
            "/no_such_command",
            Some(content.unknown_command.as_str()),
        ),
        (&group, "merhaba, kimse var mı?", None),
        (&private, "sadece düz bir mesaj", None),
    ];
    for (chat, text, expected) in cases {
        let replies = replies_to(&run.tg, chat, &user, text).await;
        match expected {
            Some(start) => {
                assert_eq!(replies.len(), 1, "{text}: {replies:?}");
                assert!(
                    replies[0].text.starts_with(start),
                    "{text}: {}",
                    replies[0].text
                );
            }
            None => assert!(replies.is_empty(), "{text} must get no reply: {replies:?}"),
        }
    }
    // A sticker, a join and an unrelated update: quietly ignored.
    for update in [
        json!({"message": {"message_id": 900, "date": 0, "chat": {"id": group.id, "type": "supergroup", "title": "g"},
            "from": {"id": 1003, "is_bot": false, "first_name": "Üye"},
            "sticker": {"file_id": "s", "file_unique_id": "u", "type": "regular", "width": 1, "height": 1, "is_animated": false, "is_video": false}}}),
        json!({"message": {"message_id": 901, "date": 0, "chat": {"id": group.id, "type": "supergroup", "title": "g"},
            "from": {"id": 1003, "is_bot": false, "first_name": "Üye"},
            "new_chat_members": [{"id": 1004, "is_bot": false, "first_name": "Yeni"}]}}),
        json!({"edited_message": {"message_id": 902, "date": 0, "edit_date": 1, "chat": {"id": group.id, "type": "supergroup", "title": "g"},
            "from": {"id": 1003, "is_bot": false, "first_name": "Üye"}, "text": "/help"}}),
    ] {
        run.tg.inject_update(TOKEN, update);
    }
    let replies = replies_to(&run.tg, &group, &user, "/start").await;
    assert_eq!(
        replies.len(),
        1,
        "only the /start before the marker: {replies:?}"
    );
    run.daemon.signal(libc::SIGTERM);
    assert_eq!(run.daemon.wait_exit(PROMPT).await.code(), Some(0));
}

#[tokio::test]
async fn the_menu_is_registered_and_a_reload_changes_one_answer_only() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN, USERNAME);
    tg.add_bot(ECHO_TOKEN, "echo_bot");
    let shipped =
        std::fs::read_to_string(shipped_content_path()).expect("read the shipped content");
    let config = ConfigDir::new(&faq_config(&tg.url(), "content.toml"));
    config.write("content.toml", &shipped);
    let mut daemon = Daemon::start(&config.path, VARS);
    tg.wait_for_request(TOKEN, "setMyCommands", 1, PROMPT)
        .await
        .expect("the menu is registered");
    tg.wait_for_request(ECHO_TOKEN, "getUpdates", 1, PROMPT)
        .await
        .expect("the echo bot polls");

    let content = shipped_content();
    let registered: Vec<String> = tg
        .commands(TOKEN)
        .iter()
        .map(|c| c.command.clone())
        .collect();
    let mut expected = vec!["help".to_owned()];
    expected.extend(content.commands.iter().map(|c| c.name.clone()));
    assert_eq!(registered, expected);

    let old = content.command("staj").expect("staj").answer.clone();
    let new = "Mezun olabilmek için 2 zorunlu staj yapmanız gerekir (güncellendi).";
    config.write("content.toml", &shipped.replace(&old, new));
    daemon.signal(libc::SIGHUP);
    daemon
        .wait_for_line(
            "reload: added: none; removed: none; restarted: tanitim; unchanged: echo",
            PROMPT,
        )
        .await;
    tg.wait_for_request(TOKEN, "setMyCommands", 2, PROMPT)
        .await
        .expect("the menu is registered again");

    let user = User::new(1005, "Aday");
    let chat = Chat::private(&user);
    let replies = replies_to(&tg, &chat, &user, "/staj").await;
    assert!(replies[0].text.starts_with(new), "{}", replies[0].text);
    // The other bot was not restarted.
    assert_eq!(tg.requests_of(ECHO_TOKEN, "getMe").len(), 1);
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn malformed_content_files_name_the_line_and_column() {
    let good = "greeting = \"g\"\nhelp_header = \"h\"\nclosing_question = \"q\"\nyes_label = \"Y\"\nno_label = \"N\"\n\
                goodbye = \"b\"\nunknown_command = \"u\"\n";
    let command = |name: &str, description: &str, answer: &str| {
        format!(
            "[[command]]\nname = \"{name}\"\ndescription = \"{description}\"\nanswer = \"{answer}\"\n"
        )
    };
    let many: String = (0..100)
        .map(|i| command(&format!("c{i}"), "d", "a"))
        .collect();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "bad TOML",
            format!("{good}[[command]\n"),
            "8:11: unclosed array table, expected `]`",
        ),
        (
            "unknown key",
            format!("{good}colour = \"red\"\n"),
            "8:1: unknown key `colour`",
        ),
        (
            "missing greeting",
            good.replace("greeting = \"g\"\n", ""),
            "1:1: missing key `greeting`",
        ),
        (
            "bad command name",
            format!("{good}{}", command("Erasmus!", "d", "a")),
            "9:8: command[0].name: `Erasmus!` is not a command name",
        ),
        (
            "name too long",
            format!("{good}{}", command(&"a".repeat(33), "d", "a")),
            "9:8: command[0].name: `aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa` is not a command name",
        ),
        (
            "duplicate command",
            format!(
                "{good}{}{}",
                command("staj", "d", "a"),
                command("staj", "d", "a")
            ),
            "13:8: command[1].name: /staj is defined twice",
        ),
        (
            "built-in name",
            format!("{good}{}", command("help", "d", "a")),
            "9:8: command[0].name: /help is built in",
        ),
        (
            "empty description",
            format!("{good}{}", command("staj", "", "a")),
            "10:15: command[0].description: must not be empty",
        ),
        (
            "long description",
            format!("{good}{}", command("staj", &"d".repeat(257), "a")),
            "10:15: command[0].description: is 257 characters long; the limit is 256",
        ),
        (
            "answer too long",
            format!("{good}{}", command("staj", "d", &"ş".repeat(4094))),
            "11:10: command[0].answer: is 4097 characters long with the closing question appended",
        ),
        (
            "too many commands",
            format!("{good}{many}"),
            "405:8: command: 100 commands; at most 99",
        ),
        (
            "wrong type",
            good.replace("yes_label = \"Y\"", "yes_label = 1"),
            "4:13: yes_label: must be text in double quotes, not the number 1",
        ),
        (
            "contact missing",
            good.replace("goodbye = \"b\"", "goodbye = \"yaz: {contact}\""),
            "6:11: goodbye: uses {contact} but the content sets no `contact`",
        ),
    ];
    for (what, text, expected) in cases {
        let dir = ConfigDir::new(
            "[bot.tanitim]\nkind = \"faq\"\ntoken_env = \"T\"\ncontent_file = \"content.toml\"\n",
        );
        let content = dir.write("content.toml", &text);
        let config = dir.path.to_str().expect("utf-8 path").to_owned();
        let out = run_to_end(&["check", "--config", &config], &[("T", "1:x")]).await;
        assert_eq!(out.code(), Some(78), "{what}: {}", out.stderr);
        let expected = format!("{}:{expected}", content.display());
        assert!(
            out.stderr.contains(&expected),
            "{what}: expected {expected:?} in:\n{}",
            out.stderr
        );
    }
}

#[tokio::test]
async fn the_preview_shows_answers_and_buttons_without_telegram() {
    let config = format!("{}/supervisor.toml", env!("CARGO_MANIFEST_DIR"));
    let content = shipped_content();
    let one = run_to_end(
        &[
            "faq-preview",
            "--config",
            &config,
            "--bot",
            "tanitim",
            "/erasmus",
        ],
        &[],
    )
    .await;
    assert_eq!(one.code(), Some(0), "{}", one.stderr);
    assert!(
        one.stdout
            .contains(&content.command("erasmus").expect("erasmus").answer)
    );
    assert!(one.stdout.contains("[ Evet ] [ Hayır ]"), "{}", one.stdout);

    let all = run_to_end(
        &["faq-preview", "--config", &config, "--bot", "tanitim"],
        &[],
    )
    .await;
    assert_eq!(all.code(), Some(0));
    for command in &content.commands {
        assert!(
            all.stdout.contains(&format!("── /{} ──", command.name)),
            "{} missing",
            command.name
        );
    }
    assert!(all.stdout.contains(&content.goodbye));

    let wrong = run_to_end(
        &["faq-preview", "--config", &config, "--bot", "duyuru"],
        &[],
    )
    .await;
    assert_eq!(wrong.code(), Some(2));
    assert!(wrong.stderr.contains("not `faq`"), "{}", wrong.stderr);
}
