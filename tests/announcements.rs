//! The Duyuru relay (`announcements` kind) against the fake Telegram and a
//! web site served on 127.0.0.1 by the test, running the real binary.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::site::{Site, announcement_page, list_page};
use common::{ConfigDir, Daemon, PROMPT, run_to_end, supervisor_table};
use fake_telegram::{Chat, FakeTelegram, MemberStatus, RateLimits, SentMessage, User};

const TOKEN: &str = "4242:token-of-the-relay-bot";
const ADMIN: u64 = 900;
const EXTRA: i64 = -1_001_000_000_777;
const VARS: &[(&str, &str)] = &[("D_TOKEN", TOKEN), ("RUST_LOG", "botvisor=debug,info")];

fn relay_config(tg: &FakeTelegram, site: &Site, extra: &str) -> ConfigDir {
    ConfigDir::new(&relay_toml(tg, site, extra))
}

fn relay_toml(tg: &FakeTelegram, site: &Site, extra: &str) -> String {
    format!(
        "{}[bot.duyuru]\nkind = \"announcements\"\ntoken_env = \"D_TOKEN\"\nlist_url = \"{}\"\n\
         link_selector = \"div.ann-list ul li a\"\ntext_selector = \"div.page-about\"\ncheck_every = \"200ms\"\n\
         admins = [{ADMIN}]\n{extra}\n[bot.duyuru.commands]\nstart = \"ekle\"\nstop = \"cikar\"\nlist = \"yaz\"\nhelp = \"yardim\"\nweb = \"web\"\n",
        supervisor_table(&tg.url(), ""),
        site.url("/duyuru/birim/193")
    )
}

/// The list page with these announcements (ids, newest first), and each
/// announcement's page.
fn publish(site: &Site, ids: &[u32]) {
    let items: Vec<(String, String)> = ids
        .iter()
        .map(|id| {
            (
                format!("/tr/bilgisayar/duyuru/goster/{id}"),
                format!("Duyuru {id}"),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = items
        .iter()
        .map(|(h, t)| (h.as_str(), t.as_str()))
        .collect();
    site.set_html("/duyuru/birim/193", &list_page(&refs));
    for id in ids {
        site.set_html(
            &format!("/tr/bilgisayar/duyuru/goster/{id}"),
            &announcement_page(&[&format!("Duyuru {id} metni."), "İkinci paragraf."]),
        );
    }
}

async fn command(tg: &FakeTelegram, chat: &Chat, user: &User, text: &str) -> String {
    let before = tg.sent_messages(TOKEN).len();
    tg.inject_message(TOKEN, chat, user, text);
    let sent = tg
        .wait_for_sent(TOKEN, before + 1, PROMPT)
        .await
        .expect("a reply");
    sent[before].text.clone()
}

/// Waits until each of `chats` has received an announcement.
async fn wait_until_delivered(tg: &FakeTelegram, chats: &[i64]) {
    loop {
        let sent = tg.sent_messages(TOKEN);
        let by_chat = announcements_by_chat(&sent);
        if chats.iter().all(|chat| by_chat.contains_key(chat)) {
            return;
        }
        tg.wait_for_sent(TOKEN, sent.len() + 1, PROMPT)
            .await
            .unwrap_or_else(|e| panic!("not delivered to every chat: {e:?}; {by_chat:?}"));
    }
}

fn announcements_by_chat(sent: &[SentMessage]) -> HashMap<i64, Vec<String>> {
    let mut by_chat: HashMap<i64, Vec<String>> = HashMap::new();
    for message in sent.iter().filter(|m| m.text.starts_with("DUYURU: ")) {
        by_chat
            .entry(message.chat_id)
            .or_default()
            .push(message.text.clone());
    }
    by_chat
}

#[tokio::test]
async fn chats_switch_the_relay_on_and_off_with_admin_checks() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN, "duyuru_bot");
    let site = Site::start().await;
    publish(&site, &[3, 2, 1]);
    let config = relay_config(&tg, &site, "");
    let mut daemon = Daemon::start(&config.path, VARS);
    daemon.wait_for_line("first check", PROMPT).await;

    let admin = User::new(ADMIN, "Yönetici");
    let member = User::new(901, "Üye");
    let group = Chat::supergroup(-1_001_000_000_001, "Bölüm grubu");
    tg.set_member_status(group.id, admin.id, MemberStatus::Administrator);
    let cases: &[(&Chat, &User, &str, &str)] = &[
        (
            &group,
            &member,
            "/ekle",
            "yalnızca grubun kurucusu ve yöneticileri",
        ),
        (&group, &admin, "/ekle", "Duyurular bu sohbette açıldı"),
        (&group, &admin, "/ekle@duyuru_bot", "zaten açık"),
        (
            &group,
            &member,
            "/cikar",
            "yalnızca grubun kurucusu ve yöneticileri",
        ),
        (
            &Chat::private(&member),
            &member,
            "/ekle",
            "Duyurular bu sohbette açıldı",
        ),
        (
            &Chat::private(&member),
            &member,
            "/yaz",
            "yalnızca botun yöneticileri",
        ),
        (
            &Chat::private(&admin),
            &admin,
            "/yaz",
            "Duyuruların açık olduğu sohbetler (2)",
        ),
        (&group, &admin, "/cikar", "kapatıldı"),
        (&group, &admin, "/cikar", "zaten kapalıydı"),
        (
            &Chat::private(&member),
            &member,
            "/yardim",
            "/ekle - Duyuruları bu sohbette aç",
        ),
        (&Chat::private(&member), &member, "/hakkinda", "duyuruları"),
        (
            &Chat::private(&member),
            &member,
            "/web",
            "https://mdbf.btu.edu.tr/bilgisayar",
        ),
    ];
    for (chat, user, text, expected) in cases {
        let reply = command(&tg, chat, user, text).await;
        assert!(
            reply.contains(expected),
            "{text} by {}: {reply}",
            user.first_name
        );
    }
    // /start is renamed, so it is not a command of this bot any more: the
    // first reply after it is the one to /web, in the same chat.
    let before = tg.sent_messages(TOKEN).len();
    tg.inject_message(TOKEN, &Chat::private(&member), &member, "/start");
    let reply = command(&tg, &Chat::private(&member), &member, "/web").await;
    assert!(
        reply.contains("https://mdbf.btu.edu.tr/bilgisayar"),
        "answered /start: {reply}"
    );
    assert_eq!(
        tg.sent_messages(TOKEN).len(),
        before + 1,
        "no answer to /start"
    );
    // In a group, its administrators learn whether their own group is
    // subscribed, nothing about the other chats (private users' ids).
    let list = command(&tg, &group, &admin, "/yaz").await;
    assert!(list.contains("Duyurular bu sohbette kapalı"), "{list}");
    assert!(!list.contains("sohbetler ("), "{list}");
    // A stranger who creates a group and adds the bot learns nothing of
    // the subscribed chats either.
    let stranger = User::new(903, "Yabancı");
    let own_group = Chat::supergroup(-1_001_000_000_777, "Yabancının grubu");
    tg.set_member_status(own_group.id, stranger.id, MemberStatus::Creator);
    let answer = command(&tg, &own_group, &stranger, "/yaz").await;
    assert!(answer.contains("Duyurular bu sohbette kapalı"), "{answer}");
    assert!(
        !answer.contains("901") && !answer.contains("sohbetler ("),
        "{answer}"
    );
    let refused = command(&tg, &group, &member, "/yaz").await;
    assert!(refused.contains("yalnızca botun yöneticileri"), "{refused}");
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn new_announcements_reach_every_chat_once_oldest_first() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN, "duyuru_bot");
    let site = Site::start().await;
    publish(&site, &[3, 2, 1]);
    let config = relay_config(&tg, &site, &format!("extra_chats = [{EXTRA}]"));
    let mut daemon = Daemon::start(&config.path, VARS);
    daemon
        .wait_for_line(
            "first check: the listed announcements are marked as seen",
            PROMPT,
        )
        .await;

    let alice = User::new(11, "Ayşe");
    let bob = User::new(12, "Bora");
    for user in [&alice, &bob] {
        command(&tg, &Chat::private(user), user, "/ekle").await;
    }
    // Nothing was sent for what the first check found.
    assert!(announcements_by_chat(&tg.sent_messages(TOKEN)).is_empty());

    publish(&site, &[5, 4, 3, 2, 1]);
    let expected = 3 * 2; // two announcements, three chats
    let before = tg.sent_messages(TOKEN).len();
    tg.wait_for_sent(TOKEN, before + expected, PROMPT)
        .await
        .expect("delivered");
    // A few more checks find nothing new to send.
    let fetched = site.requests("/duyuru/birim/193");
    site.wait_for_requests("/duyuru/birim/193", fetched + 3, PROMPT)
        .await
        .expect("checks go on");
    let by_chat = announcements_by_chat(&tg.sent_messages(TOKEN));
    assert_eq!(by_chat.len(), 3, "{by_chat:?}");
    for chat in [11, 12, EXTRA] {
        let texts = &by_chat[&chat];
        assert_eq!(texts.len(), 2, "chat {chat}: {texts:?}");
        assert!(
            texts[0].starts_with("DUYURU: Duyuru 4 metni."),
            "oldest first: {texts:?}"
        );
        assert!(texts[1].starts_with("DUYURU: Duyuru 5 metni."));
        assert!(texts[0].contains("İkinci paragraf."));
        assert!(
            texts[0].ends_with(&format!(
                "İncelemek için: {}",
                site.url("/tr/bilgisayar/duyuru/goster/4")
            )),
            "{}",
            texts[0]
        );
    }
    // The site saw botvisor's user agent.
    assert!(
        site.user_agents()
            .iter()
            .all(|ua| ua.starts_with("botvisor/")),
        "{:?}",
        site.user_agents()
    );
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn skip_marker_per_check_cap_and_long_text() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN, "duyuru_bot");
    let site = Site::start().await;
    publish(&site, &[1]);
    let config = relay_config(&tg, &site, "max_per_check = 2\nskip_marker = \"#gizli\"");
    let mut daemon = Daemon::start(&config.path, VARS);
    daemon.wait_for_line("first check", PROMPT).await;
    let user = User::new(21, "Okur");
    command(&tg, &Chat::private(&user), &user, "/ekle").await;

    publish(&site, &[5, 4, 3, 2, 1]);
    // 2 is secret; 3 is very long; 4 and 5 are ordinary.
    site.set_html(
        "/tr/bilgisayar/duyuru/goster/2",
        &announcement_page(&["Bu duyuru #gizli kalmalı."]),
    );
    let long = "Uzun duyuru metni ".repeat(400);
    site.set_html(
        "/tr/bilgisayar/duyuru/goster/3",
        &announcement_page(&[&long]),
    );
    daemon
        .wait_for_line(
            "more new announcements than max_per_check; the rest wait for the next check",
            PROMPT,
        )
        .await;
    let before = tg.sent_messages(TOKEN).len();
    tg.wait_for_sent(TOKEN, before + 3, PROMPT)
        .await
        .expect("3, 4 and 5 arrive");
    let fetched = site.requests("/duyuru/birim/193");
    site.wait_for_requests("/duyuru/birim/193", fetched + 3, PROMPT)
        .await
        .expect("checks go on");
    let texts = &announcements_by_chat(&tg.sent_messages(TOKEN))[&21];
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert!(texts.iter().all(|t| !t.contains("#gizli")));
    let long_message = &texts[0];
    assert!(long_message.encode_utf16().count() <= 4096, "too long");
    assert!(long_message.contains('…'));
    assert!(long_message.ends_with(&format!(
        "İncelemek için: {}",
        site.url("/tr/bilgisayar/duyuru/goster/3")
    )));
    assert!(texts[1].starts_with("DUYURU: Duyuru 4") && texts[2].starts_with("DUYURU: Duyuru 5"));
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn a_site_that_is_down_or_changed_is_survived() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN, "duyuru_bot");
    let site = Site::start().await;
    site.set_status("/duyuru/birim/193", 503);
    let operators = -1_001_000_000_999;
    let config = relay_config(&tg, &site, &format!("alert_chat = {operators}"));
    let mut daemon = Daemon::start(&config.path, VARS);
    let line = daemon
        .wait_for_line("the announcement check failed; trying again later", PROMPT)
        .await;
    assert!(line.contains("503"), "{line}");
    // A new layout: the selector finds nothing; logged once as an error.
    site.clear_status("/duyuru/birim/193");
    site.set_html(
        "/duyuru/birim/193",
        "<html><body><table class=\"new-layout\"></table></body></html>",
    );
    let fetched = site.requests("/duyuru/birim/193");
    site.wait_for_requests("/duyuru/birim/193", fetched + 3, Duration::from_secs(90))
        .await
        .expect("checked again");
    let errors: Vec<String> = daemon
        .lines()
        .into_iter()
        .filter(|l| l.contains("the link selector found nothing"))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("ERROR") && errors[0].contains("div.ann-list ul li a"),
        "{}",
        errors[0]
    );
    let alerts = tg
        .wait_for_sent(TOKEN, 1, PROMPT)
        .await
        .expect("the operators are told");
    assert_eq!(alerts.len(), 1, "one alert per incident: {alerts:?}");
    assert_eq!(alerts[0].chat_id, operators);
    assert!(
        alerts[0].text.contains("div.ann-list ul li a"),
        "{}",
        alerts[0].text
    );
    // Fixed again: back to normal, and the worker never stopped.
    publish(&site, &[2, 1]);
    daemon
        .wait_for_line(
            "the link selector finds announcements again",
            Duration::from_secs(90),
        )
        .await;
    assert!(daemon.is_running());
    let alerts = tg
        .wait_for_sent(TOKEN, 2, PROMPT)
        .await
        .expect("the recovery is told");
    assert!(
        alerts[1].chat_id == operators && alerts[1].text.contains("yeniden"),
        "{alerts:?}"
    );
    let user = User::new(31, "Sabırlı");
    let reply = command(&tg, &Chat::private(&user), &user, "/ekle").await;
    assert!(reply.contains("açıldı"));
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn a_broadcast_to_300_chats_keeps_telegrams_limits() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN, "duyuru_bot");
    let site = Site::start().await;
    publish(&site, &[1]);
    let config = relay_config(&tg, &site, "");
    let mut daemon = Daemon::start(&config.path, VARS);
    daemon.wait_for_line("first check", PROMPT).await;
    for i in 0..300u64 {
        let user = User::new(10_000 + i, "Abone");
        command(&tg, &Chat::private(&user), &user, "/ekle").await;
    }
    tg.set_rate_limits(RateLimits::telegram());
    let before = tg.sent_messages(TOKEN).len();
    publish(&site, &[2, 1]);
    let sent = tg
        .wait_for_sent(TOKEN, before + 300, Duration::from_secs(60))
        .await
        .expect("all 300 delivered");
    let broadcast: Vec<&SentMessage> = sent[before..].iter().collect();
    assert_eq!(tg.too_many_requests_count(TOKEN), 0, "no 429");
    let by_chat = announcements_by_chat(&sent);
    assert_eq!(by_chat.len(), 300);
    assert!(by_chat.values().all(|texts| texts.len() == 1));
    let span = broadcast[broadcast.len() - 1]
        .at
        .duration_since(broadcast[0].at)
        .as_secs_f64();
    let rate = (broadcast.len() - 1) as f64 / span;
    eprintln!("broadcast to 300 chats: {span:.2} s, {rate:.1} messages/s (Telegram allows 30)");
    assert!(
        rate >= 27.0,
        "{rate:.1} messages/s is under 90 % of the allowed 30"
    );
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn the_preview_prints_what_the_relay_would_see() {
    let site = Site::start().await;
    publish(&site, &[7, 6]);
    let config = ConfigDir::new(&format!(
        "[bot.duyuru]\nkind = \"announcements\"\ntoken_env = \"D_TOKEN\"\nlist_url = \"{}\"\n\
         link_selector = \"div.ann-list ul li a\"\ntext_selector = \"div.page-about\"\n",
        site.url("/duyuru/birim/193")
    ));
    let path = config.path.to_str().expect("utf-8 path");
    let out = run_to_end(
        &["announcements-preview", "--config", path, "--bot", "duyuru"],
        &[],
    )
    .await;
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("2 announcement(s) found"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("── 7 ── Duyuru 7"), "{}", out.stdout);
    assert!(out.stdout.contains("  Duyuru 6 metni."), "{}", out.stdout);
}

/// Subscribes private chats of users `ids` and returns them.
async fn subscribe_private(tg: &FakeTelegram, ids: impl IntoIterator<Item = u64>) -> Vec<User> {
    let mut users = Vec::new();
    for id in ids {
        let user = User::new(id, "Abone");
        let reply = command(tg, &Chat::private(&user), &user, "/ekle").await;
        assert!(reply.contains("açıldı"), "{reply}");
        users.push(user);
    }
    users
}

#[tokio::test]
async fn blocked_chats_are_unsubscribed_and_migrated_groups_followed() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN, "duyuru_bot");
    let site = Site::start().await;
    publish(&site, &[1]);
    let config = relay_config(&tg, &site, "");
    let mut daemon = Daemon::start(&config.path, VARS);
    daemon.wait_for_line("first check", PROMPT).await;
    // The group subscribes first, so the broadcast sends to it first.
    let admin = User::new(ADMIN, "Yönetici");
    let group = Chat::group(-5001, "Eski grup");
    tg.set_member_status(group.id, admin.id, MemberStatus::Administrator);
    assert!(
        command(&tg, &group, &admin, "/ekle")
            .await
            .contains("açıldı")
    );
    let users = subscribe_private(&tg, [41, 42]).await;

    // 41 blocks the bot; the group becomes a supergroup.
    tg.set_member_status(41, 4242, MemberStatus::Kicked);
    let supergroup = -1_001_000_005_001;
    tg.add_fault(
        TOKEN,
        "sendMessage",
        fake_telegram::Fault::migrate(supergroup).times(1),
    );
    publish(&site, &[2, 1]);
    daemon
        .wait_for_line(
            "a chat blocked or removed the bot; it is unsubscribed",
            PROMPT,
        )
        .await;
    daemon
        .wait_for_line(
            "a group became a supergroup; its messages follow it",
            PROMPT,
        )
        .await;
    wait_until_delivered(&tg, &[42, supergroup]).await;
    let by_chat = announcements_by_chat(&tg.sent_messages(TOKEN));
    assert_eq!(by_chat.get(&42).map(Vec::len), Some(1), "{by_chat:?}");
    assert_eq!(
        by_chat.get(&supergroup).map(Vec::len),
        Some(1),
        "{by_chat:?}"
    );
    assert!(!by_chat.contains_key(&41) && !by_chat.contains_key(&group.id));

    // The next announcement goes straight to the new id, and not to 41.
    publish(&site, &[3, 2, 1]);
    let before = tg.sent_messages(TOKEN).len();
    tg.wait_for_sent(TOKEN, before + 2, PROMPT)
        .await
        .expect("delivered");
    daemon.wait_for_line("announcement=3", PROMPT).await;
    let by_chat = announcements_by_chat(&tg.sent_messages(TOKEN));
    assert_eq!(by_chat[&supergroup].len(), 2);
    assert!(!by_chat.contains_key(&41));
    let list = command(&tg, &Chat::private(&admin), &admin, "/yaz").await;
    assert!(
        list.contains("(2)") && list.contains(&supergroup.to_string()) && !list.contains("\n41"),
        "{list}"
    );
    drop(users);
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn a_429_during_a_broadcast_is_waited_out() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN, "duyuru_bot");
    let site = Site::start().await;
    publish(&site, &[1]);
    let config = relay_config(&tg, &site, "");
    let mut daemon = Daemon::start(&config.path, VARS);
    daemon.wait_for_line("first check", PROMPT).await;
    subscribe_private(&tg, [51]).await;
    tg.add_fault(
        TOKEN,
        "sendMessage",
        fake_telegram::Fault::retry_after(2).times(1),
    );
    publish(&site, &[2, 1]);
    let before = tg.sent_messages(TOKEN).len();
    tg.wait_for_sent(TOKEN, before + 1, PROMPT)
        .await
        .expect("delivered after the wait");
    let sends = tg.requests_of(TOKEN, "sendMessage");
    let limited = sends
        .iter()
        .find(|r| r.status() == Some(429))
        .expect("the 429");
    let retried = sends.iter().find(|r| r.at > limited.at).expect("the retry");
    assert!(
        retried.at.duration_since(limited.at) >= Duration::from_secs(2),
        "retried before retry_after"
    );
    let fetched = site.requests("/duyuru/birim/193");
    site.wait_for_requests("/duyuru/birim/193", fetched + 3, PROMPT)
        .await
        .expect("checks go on");
    assert_eq!(
        announcements_by_chat(&tg.sent_messages(TOKEN))[&51].len(),
        1,
        "exactly once"
    );
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn kill_9_during_a_broadcast_resumes_without_resending() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN, "duyuru_bot");
    let site = Site::start().await;
    publish(&site, &[1]);
    let config = relay_config(&tg, &site, "");
    let mut daemon = Daemon::start(&config.path, VARS);
    daemon.wait_for_line("first check", PROMPT).await;
    subscribe_private(&tg, 600..650).await;
    publish(&site, &[2, 1]);
    // Killed once 20 chats have it.
    let before = tg.sent_messages(TOKEN).len();
    tg.wait_for_sent(TOKEN, before + 20, PROMPT)
        .await
        .expect("20 delivered");
    daemon.signal(libc::SIGKILL);
    assert_eq!(daemon.wait_exit(PROMPT).await.code(), None);
    let mut daemon = Daemon::start(&config.path, VARS);
    let chats: Vec<i64> = (600..650).collect();
    wait_until_delivered(&tg, &chats).await;
    let fetched = site.requests("/duyuru/birim/193");
    site.wait_for_requests("/duyuru/birim/193", fetched + 3, PROMPT)
        .await
        .expect("checks go on");
    let by_chat = announcements_by_chat(&tg.sent_messages(TOKEN));
    assert_eq!(by_chat.len(), 50);
    // The one message that can go twice is one in flight at the kill
    // (accepted by Telegram, its row not yet deleted): paced at under 30 a
    // second, that is one at most.
    let twice: Vec<&i64> = by_chat
        .iter()
        .filter(|(_, texts)| texts.len() != 1)
        .map(|(chat, _)| chat)
        .collect();
    assert!(
        twice.len() <= 1 && by_chat.values().all(|texts| texts.len() <= 2),
        "chats that got it other than once: {twice:?}"
    );
    daemon.stop_cleanly().await;
}

/// The relay's messages to `chat`, in order.
fn relayed_to(tg: &FakeTelegram, chat: i64) -> Vec<String> {
    announcements_by_chat(&tg.sent_messages(TOKEN))
        .remove(&chat)
        .unwrap_or_default()
}

#[tokio::test]
async fn a_list_of_1100_links_never_relays_an_old_one_again() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN, "duyuru_bot");
    let site = Site::start().await;
    let ids: Vec<u32> = (1..=1100).rev().collect();
    publish(&site, &ids);
    let config = relay_config(&tg, &site, &format!("extra_chats = [{EXTRA}]"));
    let mut daemon = Daemon::start(&config.path, VARS);
    daemon
        .wait_for_line(
            "first check: the listed announcements are marked as seen",
            PROMPT,
        )
        .await;
    // Several checks of the same 1,100 links: none is new.
    let fetched = site.requests("/duyuru/birim/193");
    site.wait_for_requests("/duyuru/birim/193", fetched + 5, PROMPT)
        .await
        .expect("checks go on");
    assert_eq!(
        relayed_to(&tg, EXTRA),
        Vec::<String>::new(),
        "old announcements relayed again"
    );
    // A really new one still arrives, once.
    let mut ids = ids;
    ids.insert(0, 1101);
    publish(&site, &ids);
    tg.wait_for_sent(TOKEN, 1, PROMPT)
        .await
        .expect("the new one is relayed");
    let fetched = site.requests("/duyuru/birim/193");
    site.wait_for_requests("/duyuru/birim/193", fetched + 3, PROMPT)
        .await
        .expect("checks go on");
    let relayed = relayed_to(&tg, EXTRA);
    assert_eq!(relayed.len(), 1, "{relayed:?}");
    assert!(
        relayed[0].starts_with("DUYURU: Duyuru 1101 metni."),
        "{relayed:?}"
    );
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn a_page_that_always_fails_is_relayed_by_title_and_holds_nothing_back() {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN, "duyuru_bot");
    let site = Site::start().await;
    publish(&site, &[1]);
    let config = relay_config(&tg, &site, &format!("extra_chats = [{EXTRA}]"));
    let mut daemon = Daemon::start(&config.path, VARS);
    daemon.wait_for_line("first check", PROMPT).await;

    // 2 always answers 500; 3 and 4, newer, are fine.
    const BROKEN: &str = "/tr/bilgisayar/duyuru/goster/2";
    publish(&site, &[4, 3, 2, 1]);
    site.set_status(BROKEN, 500);
    tg.wait_for_sent(TOKEN, 3, PROMPT)
        .await
        .expect("3 and 4, then 2 by its title");
    let relayed = relayed_to(&tg, EXTRA);
    assert_eq!(relayed.len(), 3, "{relayed:?}");
    assert!(
        relayed[0].starts_with("DUYURU: Duyuru 3 metni."),
        "{relayed:?}"
    );
    assert!(
        relayed[1].starts_with("DUYURU: Duyuru 4 metni."),
        "{relayed:?}"
    );
    assert!(
        relayed[2].starts_with("DUYURU: Duyuru 2\n") && relayed[2].contains(&site.url(BROKEN)),
        "title only: {relayed:?}"
    );
    // The newer ones waited one check at most: between 2's first failure
    // and the fetch of 3, the list was read once (the next check).
    let paths = site.paths();
    let first_failure = paths.iter().position(|p| p == BROKEN).expect("2 was tried");
    let first_of_3 = paths
        .iter()
        .position(|p| p == "/tr/bilgisayar/duyuru/goster/3")
        .expect("3 was fetched");
    let checks_between = paths[first_failure..first_of_3]
        .iter()
        .filter(|p| *p == "/duyuru/birim/193")
        .count();
    assert_eq!(checks_between, 1, "{paths:?}");
    // Bounded: three tries, then never again; one warning.
    let fetched = site.requests("/duyuru/birim/193");
    site.wait_for_requests("/duyuru/birim/193", fetched + 3, PROMPT)
        .await
        .expect("checks go on");
    assert_eq!(site.requests(BROKEN), 3);
    let warnings = daemon
        .lines()
        .iter()
        .filter(|l| l.contains("failed at every try; relaying its title"))
        .count();
    assert_eq!(warnings, 1);
    assert_eq!(relayed_to(&tg, EXTRA).len(), 3, "nothing sent twice");
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn a_million_levels_deep_page_never_slows_another_bot() {
    const ECHO: &str = "5151:token-of-the-echo-bot";
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN, "duyuru_bot");
    tg.add_bot(ECHO, "echo_bot");
    let site = Site::start().await;
    publish(&site, &[1]);
    let deep = format!("<html><body>{}</body></html>", "<div>".repeat(1_000_000));
    assert!(deep.len() <= 5 * 1024 * 1024, "under the 5 MB cap");
    site.set_html("/duyuru/birim/193", &deep);
    let config = ConfigDir::new(&format!(
        "{}\n[bot.echo]\nkind = \"echo\"\ntoken_env = \"E_TOKEN\"\n",
        relay_toml(&tg, &site, "")
    ));
    // One async worker thread, as on a one-core dyno: a parse on it would
    // stall every bot of the process.
    let mut daemon = Daemon::start(
        &config.path,
        &[VARS, &[("E_TOKEN", ECHO), ("TOKIO_WORKER_THREADS", "1")]].concat(),
    );
    let line = daemon
        .wait_for_line("the announcement check failed", PROMPT)
        .await;
    assert!(line.contains("deeper than 512"), "{line}");

    // 20 commands a second for 5 s from 100 users (one user would meet
    // Telegram's one message a second per chat), while the relay keeps
    // checking.
    let checks_before = site.requests("/duyuru/birim/193");
    let start = tokio::time::Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..100u32 {
        tokio::time::sleep_until(start + Duration::from_millis(50) * i).await;
        let user = User::new(7_700 + u64::from(i), "Sabırsız");
        let sent_before = tg.sent_messages(ECHO).len();
        let asked = tokio::time::Instant::now();
        tg.inject_message(ECHO, &Chat::private(&user), &user, &format!("ping {i}"));
        tg.wait_for_sent(ECHO, sent_before + 1, PROMPT)
            .await
            .expect("an echo");
        slowest = slowest.max(asked.elapsed());
    }
    let checks = site.requests("/duyuru/birim/193") - checks_before;
    eprintln!(
        "slowest echo while the deep page was served: {slowest:?}; {checks} checks meanwhile"
    );
    assert!(
        checks >= 2,
        "the relay kept reading the deep page: {checks}"
    );
    assert!(
        slowest < Duration::from_millis(500),
        "an echo took {slowest:?}"
    );
    daemon.stop_cleanly().await;
}

#[tokio::test]
async fn the_preview_reads_at_most_10_pages_and_says_so() {
    let site = Site::start().await;
    let ids: Vec<u32> = (1..=30).rev().collect();
    publish(&site, &ids);
    // A page that tries to clear the operator's terminal.
    site.set_html(
        "/tr/bilgisayar/duyuru/goster/30",
        &announcement_page(&["Duyuru 30 \u{1b}[2J\u{202e}metni."]),
    );
    let config = ConfigDir::new(&format!(
        "[bot.duyuru]\nkind = \"announcements\"\ntoken_env = \"D_TOKEN\"\nlist_url = \"{}\"\n\
         link_selector = \"div.ann-list ul li a\"\ntext_selector = \"div.page-about\"\n",
        site.url("/duyuru/birim/193")
    ));
    let path = config.path.to_str().expect("utf-8 path");
    let out = run_to_end(
        &["announcements-preview", "--config", path, "--bot", "duyuru"],
        &[],
    )
    .await;
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("30 announcement(s) found")
            && out
                .stdout
                .contains("only the first 10 announcement pages are read; 20 more are listed"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("  Duyuru 21 metni."), "{}", out.stdout);
    assert!(
        out.stdout.contains(r"Duyuru 30 \u{1b}[2J\u{202e}metni.") && !out.stdout.contains('\u{1b}'),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("Duyuru 20"), "{}", out.stdout);
    let pages = site
        .paths()
        .iter()
        .filter(|p| p.contains("/goster/"))
        .count();
    assert_eq!(pages, 10);
}
