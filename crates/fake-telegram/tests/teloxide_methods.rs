//! Every method the fake implements, driven by a real `teloxide::Bot`, so
//! each JSON shape the fake returns is proven to deserialize with
//! teloxide-core 0.13's types; plus what the fake records about it.

mod common;

use common::{TOKEN, WAIT, alice, alice_chat, bob, bounded, fake, teloxide_bot};
use fake_telegram::{Chat, MemberStatus};
use teloxide::prelude::*;
use teloxide::types::{
    BotCommand, CallbackQueryId, ChatAction, ChatMemberStatus, InlineKeyboardButton,
    InlineKeyboardMarkup, MessageEntityKind, MessageId, ParseMode, UpdateKind,
};
use teloxide::{ApiError, RequestError};

fn keyboard() -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([[
        InlineKeyboardButton::callback("Yes", "yes"),
        InlineKeyboardButton::callback("No", "no"),
    ]])
}

#[tokio::test]
async fn get_me_parses_as_teloxide_me() {
    bounded(async {
        let tg = fake().await;
        let me = teloxide_bot(&tg, TOKEN).get_me().await.expect("getMe");
        assert_eq!(me.id, UserId(123_456_789));
        assert!(me.is_bot);
        assert_eq!(me.username(), "test_bot");
        assert!(me.can_join_groups);
    })
    .await;
}

#[tokio::test]
async fn generated_bot_id_when_token_has_no_digits() {
    bounded(async {
        let tg = fake().await;
        let info = tg.add_bot("not-a-real-token", "odd_bot");
        let me = teloxide_bot(&tg, "not-a-real-token")
            .get_me()
            .await
            .expect("getMe");
        assert_eq!(me.id.0, info.id);
        assert_eq!(me.username(), "odd_bot");
    })
    .await;
}

#[tokio::test]
async fn send_message_returns_a_message_and_is_recorded_in_order() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        let chat = alice_chat();
        tg.add_chat(&chat);
        let first = bot
            .send_message(ChatId(chat.id), "<b>hello</b>")
            .parse_mode(ParseMode::Html)
            .reply_markup(keyboard())
            .await
            .expect("sendMessage");
        assert_eq!(first.chat.id, ChatId(chat.id));
        assert!(first.chat.is_private());
        assert_eq!(first.text(), Some("<b>hello</b>"));
        assert_eq!(first.reply_markup(), Some(&keyboard()));
        assert_eq!(first.from.as_ref().map(|u| u.id), Some(UserId(123_456_789)));
        let second = bot
            .send_message(ChatId(chat.id), "two")
            .await
            .expect("sendMessage");
        let third = bot
            .send_message(ChatId(chat.id), "three")
            .await
            .expect("sendMessage");
        assert!(first.id.0 < second.id.0 && second.id.0 < third.id.0);

        let sent = tg.sent_messages(TOKEN);
        let texts: Vec<&str> = sent.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["<b>hello</b>", "two", "three"]);
        assert_eq!(sent[0].chat_id, chat.id);
        assert_eq!(sent[0].message_id, first.id.0);
        assert_eq!(sent[0].parse_mode.as_deref(), Some("HTML"));
        let markup = sent[0].reply_markup.as_ref().expect("markup recorded");
        assert_eq!(markup["inline_keyboard"][0][1]["callback_data"], "no");
        assert_eq!(sent[0].body["chat_id"], chat.id);
        assert!(sent[1].reply_markup.is_none());
    })
    .await;
}

#[tokio::test]
async fn send_message_to_groups_supergroups_and_channels() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        let group = Chat::group(-4_001, "Friends");
        let supergroup = Chat::supergroup(-1_001_234_567_890, "Big");
        let channel = Chat::channel(-1_009_876_543_210, "News").with_username("news");
        for chat in [&group, &supergroup, &channel] {
            tg.add_chat(chat);
        }
        let m = bot
            .send_message(ChatId(group.id), "g")
            .await
            .expect("group");
        assert!(m.chat.is_group());
        assert_eq!(m.chat.title(), Some("Friends"));
        let m = bot
            .send_message(ChatId(supergroup.id), "s")
            .await
            .expect("supergroup");
        assert!(m.chat.is_supergroup());
        let m = bot
            .send_message("@news".to_owned(), "c")
            .await
            .expect("channel by username");
        assert!(m.chat.is_channel());
        assert_eq!(m.chat.id, ChatId(channel.id));
        let err = bot
            .send_message("@nobody_here".to_owned(), "x")
            .await
            .expect_err("unknown username");
        assert!(matches!(err, RequestError::Api(ApiError::ChatNotFound)));
    })
    .await;
}

#[tokio::test]
async fn send_message_text_limits() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        let err = bot.send_message(ChatId(5), "  ").await.expect_err("empty");
        assert!(matches!(
            err,
            RequestError::Api(ApiError::MessageTextIsEmpty)
        ));
        // 2048 emoji are 4096 UTF-16 units: allowed; one more unit is not.
        let max = "😀".repeat(2048);
        bot.send_message(ChatId(5), max.clone())
            .await
            .expect("4096 UTF-16 units");
        let err = bot
            .send_message(ChatId(5), format!("{max}a"))
            .await
            .expect_err("4097 units");
        assert!(matches!(err, RequestError::Api(ApiError::MessageIsTooLong)));
        // 4096 scalar values that are 8192 UTF-16 units: too long.
        let err = bot
            .send_message(ChatId(5), "😀".repeat(4096))
            .await
            .expect_err("counted in UTF-16");
        assert!(matches!(err, RequestError::Api(ApiError::MessageIsTooLong)));
        assert_eq!(tg.sent_messages(TOKEN).len(), 1);
    })
    .await;
}

#[tokio::test]
async fn edit_message_text_round_trip() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        let sent = bot
            .send_message(ChatId(7), "before")
            .reply_markup(keyboard())
            .await
            .expect("send");
        let edited = bot
            .edit_message_text(ChatId(7), sent.id, "after")
            .await
            .expect("edit");
        assert_eq!(edited.id, sent.id);
        assert_eq!(edited.text(), Some("after"));
        assert!(edited.edit_date().is_some());
        let err = bot
            .edit_message_text(ChatId(7), sent.id, "after")
            .await
            .expect_err("same content");
        assert!(matches!(
            err,
            RequestError::Api(ApiError::MessageNotModified)
        ));
        let err = bot
            .edit_message_text(ChatId(7), MessageId(999), "x")
            .await
            .expect_err("missing message");
        assert!(matches!(
            err,
            RequestError::Api(ApiError::MessageToEditNotFound)
        ));
        let edits = tg.edited_messages(TOKEN);
        assert_eq!(edits.len(), 1);
        assert_eq!(edits[0].text, "after");
        assert_eq!(edits[0].message_id, sent.id.0);
    })
    .await;
}

#[tokio::test]
async fn injected_messages_parse_with_command_entities() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        let group = Chat::group(-77, "Team");
        tg.inject_message(TOKEN, &alice_chat(), &alice(), "/start");
        tg.inject_message(TOKEN, &group, &bob(), "/help@test_bot now");
        tg.inject_message(TOKEN, &group, &bob(), "plain words");
        let updates = bot.get_updates().await.expect("getUpdates");
        assert_eq!(updates.len(), 3);
        let UpdateKind::Message(m) = &updates[0].kind else {
            panic!("expected a message, got {:?}", updates[0].kind);
        };
        assert_eq!(m.text(), Some("/start"));
        assert_eq!(m.from.as_ref().map(|u| u.id), Some(UserId(1001)));
        let e = &m.entities().expect("entities")[0];
        assert_eq!(
            (e.kind.clone(), e.offset, e.length),
            (MessageEntityKind::BotCommand, 0, 6)
        );
        let UpdateKind::Message(m) = &updates[1].kind else {
            panic!("expected a message");
        };
        assert!(m.chat.is_group());
        let e = &m.entities().expect("entities")[0];
        assert_eq!(e.length, "/help@test_bot".len());
        let UpdateKind::Message(m) = &updates[2].kind else {
            panic!("expected a message");
        };
        assert!(m.entities().is_none_or(<[_]>::is_empty));
        assert!(updates[0].id < updates[1].id && updates[1].id < updates[2].id);
    })
    .await;
}

#[tokio::test]
async fn channel_posts_and_raw_updates_parse() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        let channel = Chat::channel(-1_000_000_000_777, "News");
        tg.inject_message(TOKEN, &channel, &alice(), "post");
        let id = tg.inject_update(
            TOKEN,
            serde_json::json!({
                "update_id": 999_999,
                "edited_message": {
                    "message_id": 1, "date": 1_700_000_000, "edit_date": 1_700_000_100,
                    "chat": {"id": 5, "type": "private", "first_name": "E"},
                    "from": {"id": 5, "is_bot": false, "first_name": "E"},
                    "text": "fixed"
                }
            }),
        );
        let updates = bot.get_updates().await.expect("getUpdates");
        assert!(matches!(updates[0].kind, UpdateKind::ChannelPost(_)));
        assert_eq!(updates[1].id.0, id);
        assert!(matches!(updates[1].kind, UpdateKind::EditedMessage(_)));
    })
    .await;
}

#[tokio::test]
async fn callback_query_flow() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        let chat = alice_chat();
        let sent = bot
            .send_message(ChatId(chat.id), "choose")
            .reply_markup(keyboard())
            .await
            .expect("send");
        tg.inject_callback_query(TOKEN, &chat, &alice(), sent.id.0, "yes");
        tg.inject_callback_query(TOKEN, &chat, &alice(), 4242, "orphan");
        let updates = bot.get_updates().await.expect("getUpdates");
        let UpdateKind::CallbackQuery(q) = &updates[0].kind else {
            panic!("expected a callback query, got {:?}", updates[0].kind);
        };
        assert_eq!(q.data.as_deref(), Some("yes"));
        assert_eq!(q.from.id, UserId(1001));
        assert!(!q.chat_instance.is_empty());
        let msg = q.regular_message().expect("accessible message");
        assert_eq!(msg.id, sent.id);
        assert_eq!(msg.text(), Some("choose"));
        assert_eq!(msg.reply_markup(), Some(&keyboard()));
        let UpdateKind::CallbackQuery(q2) = &updates[1].kind else {
            panic!("expected a callback query");
        };
        assert_ne!(q.id, q2.id);
        assert_eq!(q2.regular_message().map(|m| m.id), Some(MessageId(4242)));

        bot.answer_callback_query(q.id.clone())
            .text("done")
            .await
            .expect("answerCallbackQuery");
        let answers = tg.callback_answers(TOKEN);
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].callback_query_id, q.id.0);
        assert_eq!(answers[0].text.as_deref(), Some("done"));
        let err = bot
            .answer_callback_query(CallbackQueryId("nope".into()))
            .await
            .expect_err("unknown query id");
        assert!(matches!(err, RequestError::Api(_)));
    })
    .await;
}

#[tokio::test]
async fn my_chat_member_update_parses_and_sets_status() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        let group = Chat::supergroup(-1_000_000_000_123, "Ops");
        tg.inject_my_chat_member(
            TOKEN,
            &group,
            &alice(),
            MemberStatus::Left,
            MemberStatus::Administrator,
        );
        let updates = bot
            .get_updates()
            .allowed_updates([teloxide::types::AllowedUpdate::MyChatMember])
            .await
            .expect("getUpdates");
        let UpdateKind::MyChatMember(m) = &updates[0].kind else {
            panic!("expected my_chat_member, got {:?}", updates[0].kind);
        };
        assert_eq!(m.old_chat_member.kind.status(), ChatMemberStatus::Left);
        assert_eq!(
            m.new_chat_member.kind.status(),
            ChatMemberStatus::Administrator
        );
        assert_eq!(m.new_chat_member.user.id, UserId(123_456_789));
        assert_eq!(
            tg.member_status(group.id, 123_456_789),
            MemberStatus::Administrator
        );
    })
    .await;
}

#[tokio::test]
async fn get_chat_member_reports_every_status() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        let group = Chat::supergroup(-1_000_000_000_555, "Club");
        tg.add_chat(&group);
        tg.add_user(&alice());
        let m = bot
            .get_chat_member(ChatId(group.id), UserId(1001))
            .await
            .expect("default");
        assert_eq!(m.kind.status(), ChatMemberStatus::Member);
        assert_eq!(m.user.first_name, "Alice");
        let cases = [
            (MemberStatus::Creator, ChatMemberStatus::Owner),
            (MemberStatus::Administrator, ChatMemberStatus::Administrator),
            (MemberStatus::Member, ChatMemberStatus::Member),
            (MemberStatus::Restricted, ChatMemberStatus::Restricted),
            (MemberStatus::Left, ChatMemberStatus::Left),
            (MemberStatus::Kicked, ChatMemberStatus::Banned),
        ];
        for (ours, theirs) in cases {
            tg.set_member_status(group.id, 1001, ours);
            let m = bot
                .get_chat_member(ChatId(group.id), UserId(1001))
                .await
                .unwrap_or_else(|e| panic!("getChatMember for {ours:?}: {e}"));
            assert_eq!(m.kind.status(), theirs);
        }
        // In a private chat the user is a member.
        let m = bot
            .get_chat_member(ChatId(1001), UserId(1001))
            .await
            .expect("private");
        assert_eq!(m.kind.status(), ChatMemberStatus::Member);
    })
    .await;
}

#[tokio::test]
async fn my_commands_are_stored_and_validated() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        let cmds = vec![
            BotCommand::new("start", "Start the bot"),
            BotCommand::new("help_me2", "Get help"),
        ];
        bot.set_my_commands(cmds.clone()).await.expect("set");
        assert_eq!(bot.get_my_commands().await.expect("get"), cmds);
        assert_eq!(tg.commands(TOKEN).len(), 2);
        assert_eq!(tg.commands(TOKEN)[1].command, "help_me2");

        let long_desc = "d".repeat(257);
        let bad = [
            vec![BotCommand::new("Start", "upper case")],
            vec![BotCommand::new("with-dash", "dash")],
            vec![BotCommand::new("a".repeat(33), "too long")],
            vec![BotCommand::new("", "empty")],
            vec![BotCommand::new("ok", "")],
            vec![BotCommand::new("ok", long_desc.as_str())],
            (0..101)
                .map(|i| BotCommand::new(format!("c{i}"), "x"))
                .collect(),
        ];
        for list in bad {
            let err = bot
                .set_my_commands(list.clone())
                .await
                .expect_err("invalid commands");
            assert!(matches!(err, RequestError::Api(_)), "{list:?}: {err:?}");
        }
        // Limits are inclusive.
        let edge = vec![BotCommand::new("a".repeat(32), "d".repeat(256))];
        bot.set_my_commands(edge.clone()).await.expect("edge");
        let hundred: Vec<_> = (0..100)
            .map(|i| BotCommand::new(format!("c{i}"), "x"))
            .collect();
        bot.set_my_commands(hundred).await.expect("100 commands");

        bot.delete_my_commands().await.expect("delete");
        assert!(bot.get_my_commands().await.expect("get").is_empty());
    })
    .await;
}

#[tokio::test]
async fn webhook_methods() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        let info = bot.get_webhook_info().await.expect("info");
        assert!(info.url.is_none());
        tg.inject_message(TOKEN, &alice_chat(), &alice(), "queued");
        let hook = reqwest::Url::parse("https://127.0.0.1:8443/hook").expect("url");
        bot.set_webhook(hook.clone()).await.expect("setWebhook");
        let info = bot.get_webhook_info().await.expect("info");
        assert_eq!(info.url.as_ref(), Some(&hook));
        assert_eq!(info.pending_update_count, 1);
        assert!(!info.has_custom_certificate);
        assert_eq!(tg.webhook_url(TOKEN).as_deref(), Some(hook.as_str()));

        // Plain http is refused, except on loopback (the fake's test hook).
        let plain = reqwest::Url::parse("http://example.com/hook").expect("url");
        assert!(bot.set_webhook(plain).await.is_err());
        let odd_port = reqwest::Url::parse("https://127.0.0.1:9000/hook").expect("url");
        let err = bot.set_webhook(odd_port).await.expect_err("port");
        assert!(matches!(err, RequestError::Api(ApiError::BadWebhookPort)));

        bot.delete_webhook()
            .drop_pending_updates(true)
            .await
            .expect("deleteWebhook");
        let info = bot.get_webhook_info().await.expect("info");
        assert!(info.url.is_none());
        assert_eq!(info.pending_update_count, 0);
        assert!(tg.webhook_url(TOKEN).is_none());
    })
    .await;
}

#[tokio::test]
async fn get_chat_send_chat_action_and_leave_chat() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        let group = Chat::group(-42, "Book club");
        let supergroup = Chat::supergroup(-1_000_000_000_042, "Big club").with_username("big");
        let channel = Chat::channel(-1_000_000_000_043, "Feed");
        for c in [&group, &supergroup, &channel] {
            tg.add_chat(c);
        }
        let c = bot.get_chat(ChatId(1001)).await.expect("private");
        assert!(c.is_private());
        let c = bot.get_chat(ChatId(group.id)).await.expect("group");
        assert!(c.is_group());
        assert_eq!(c.title(), Some("Book club"));
        let c = bot
            .get_chat(ChatId(supergroup.id))
            .await
            .expect("supergroup");
        assert!(c.is_supergroup());
        assert_eq!(c.username(), Some("big"));
        let c = bot.get_chat(ChatId(channel.id)).await.expect("channel");
        assert!(c.is_channel());

        bot.send_chat_action(ChatId(group.id), ChatAction::Typing)
            .await
            .expect("sendChatAction");
        bot.leave_chat(ChatId(group.id)).await.expect("leaveChat");
        assert_eq!(tg.member_status(group.id, 123_456_789), MemberStatus::Left);
        let err = bot
            .send_message(ChatId(group.id), "still here?")
            .await
            .expect_err("left the group");
        assert!(
            matches!(&err, RequestError::Api(ApiError::Unknown(d))
                if d == "Forbidden: bot is not a member of the group chat"),
            "{err:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn blocked_and_kicked_bots_get_403() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        tg.set_member_status(1001, 123_456_789, MemberStatus::Kicked);
        let err = bot
            .send_message(ChatId(1001), "hi")
            .await
            .expect_err("blocked");
        assert!(matches!(err, RequestError::Api(ApiError::BotBlocked)));
        let sg = Chat::supergroup(-1_000_000_000_900, "Gone");
        tg.add_chat(&sg);
        tg.set_member_status(sg.id, 123_456_789, MemberStatus::Kicked);
        let err = bot
            .send_message(ChatId(sg.id), "hi")
            .await
            .expect_err("kicked");
        assert!(matches!(
            err,
            RequestError::Api(ApiError::BotKickedFromSupergroup)
        ));
        assert!(tg.sent_messages(TOKEN).is_empty());
        // The waits see what was sent, event-driven.
        bot.send_message(ChatId(5), "ok").await.expect("send");
        let sent = tg.wait_for_sent(TOKEN, 1, WAIT).await.expect("sent");
        assert_eq!(sent[0].text, "ok");
    })
    .await;
}
