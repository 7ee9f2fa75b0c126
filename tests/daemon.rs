//! The daemon against the fake Telegram: it runs the bots that have tokens,
//! reports the others, reads `.env`, and stops cleanly on SIGTERM.

mod common;

use common::{ConfigDir, Daemon, PROMPT, supervisor_table};
use fake_telegram::{Chat, FakeTelegram, User};

const TOKEN_A: &str = "111111:token-for-bot-a";
const TOKEN_B: &str = "222222:token-for-bot-b";

#[tokio::test]
async fn runs_the_bots_that_have_tokens_and_reports_the_others() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let bot = tg.add_bot(TOKEN_A, "echo_a_bot");
    let config = ConfigDir::new(&format!(
        "{}[bot.echo]\nkind = \"echo\"\ntoken_env = \"ECHO_TOKEN\"\n\n[bot.other]\nkind = \"echo\"\ntoken_env = \"OTHER_TOKEN\"\n",
        supervisor_table(&tg.url(), "")
    ));
    let mut daemon = Daemon::start(&config.path, &[("ECHO_TOKEN", TOKEN_A)]);

    daemon
        .wait_for_line("bot will not run: other: OTHER_TOKEN is not set", PROMPT)
        .await;
    tg.wait_for_request(&bot.token, "getUpdates", 1, PROMPT)
        .await
        .expect("the echo bot polls");

    let alice = User::new(42, "Alice");
    tg.inject_message(&bot.token, &Chat::private(&alice), &alice, "merhaba");
    let sent = tg
        .wait_for_sent(&bot.token, 1, PROMPT)
        .await
        .expect("the echo bot replies");
    assert_eq!(sent[0].text, "merhaba");
    assert_eq!(sent[0].chat_id, 42);

    // Every line from inside the bot carries its name.
    let running = daemon
        .wait_for_line("running: polling as @echo_a_bot", PROMPT)
        .await;
    assert!(running.contains("bot=echo"), "{running}");

    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_exit(PROMPT).await;
    assert_eq!(status.code(), Some(0), "output:\n{}", daemon.output());
    // The handled message was confirmed before exit.
    assert!(
        tg.confirmed_offset(&bot.token) >= 2,
        "offset {}",
        tg.confirmed_offset(&bot.token)
    );
}

#[tokio::test]
async fn dotenv_beside_the_config_fills_in_what_the_environment_lacks() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let a = tg.add_bot(TOKEN_A, "a_bot");
    let b = tg.add_bot(TOKEN_B, "b_bot");
    let config = ConfigDir::new(&format!(
        "{}[bot.a]\nkind = \"echo\"\ntoken_env = \"A_TOKEN\"\n[bot.b]\nkind = \"echo\"\ntoken_env = \"B_TOKEN\"\n",
        supervisor_table(&tg.url(), "")
    ));
    // A comes only from .env; B's .env value is wrong, and the environment wins.
    config.write(
        ".env",
        &format!("A_TOKEN={TOKEN_A}\nB_TOKEN=333:wrong-token\n"),
    );
    let mut daemon = Daemon::start(&config.path, &[("B_TOKEN", TOKEN_B)]);

    tg.wait_for_request(&a.token, "getUpdates", 1, PROMPT)
        .await
        .expect("a polls with the .env token");
    tg.wait_for_request(&b.token, "getUpdates", 1, PROMPT)
        .await
        .expect("b polls with the environment's token");
    assert!(
        tg.requests_of("333:wrong-token", "getMe").is_empty(),
        "the .env value must not win"
    );

    daemon.signal(libc::SIGINT);
    assert_eq!(
        daemon.wait_exit(PROMPT).await.code(),
        Some(0),
        "output:\n{}",
        daemon.output()
    );
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_bot_name() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    let bot = tg.add_bot(TOKEN_A, "json_bot");
    let config = ConfigDir::new(&format!(
        "{}[bot.j]\nkind = \"echo\"\ntoken_env = \"J_TOKEN\"\n",
        supervisor_table(&tg.url(), "log_format = \"json\"")
    ));
    let mut daemon = Daemon::start(&config.path, &[("J_TOKEN", TOKEN_A)]);
    tg.wait_for_request(&bot.token, "getUpdates", 1, PROMPT)
        .await
        .expect("the bot polls");
    daemon.wait_for_line("polling as @json_bot", PROMPT).await;
    daemon.stop_cleanly().await;

    let mut saw_bot_field = false;
    for line in daemon.lines() {
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            value.get("level").is_some() && value.get("fields").is_some(),
            "{line}"
        );
        if value["span"]["bot"] == "j" {
            saw_bot_field = true;
        }
    }
    assert!(
        saw_bot_field,
        "no line carried the bot's name:\n{}",
        daemon.output()
    );
}
