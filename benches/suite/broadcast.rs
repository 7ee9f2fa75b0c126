//! A broadcast of the Duyuru relay: one new announcement to 1,000
//! subscribed chats with Telegram-like rate limits on in the fake. Checks
//! that every chat got it exactly once, with the right text.

use std::collections::HashSet;

use fake_telegram::{Chat, FakeTelegram, RateLimits, User};

use crate::daemon::{Daemon, LIMIT};
use crate::fleet;
use crate::site::{Site, announcement_page, list_page};

const TOKEN: &str = "901:token-of-the-broadcasting-bot";
const CHATS: u64 = 1_000;

/// One broadcast: [seconds, messages per second, 429s].
pub async fn run() -> Vec<f64> {
    let tg = FakeTelegram::start().await.expect("start the fake");
    tg.add_bot(TOKEN, "duyuru_bot");
    let site = Site::start().await;
    site.set_html("/list", &list_page(&[("/goster/1", "Duyuru 1")]));
    site.set_html("/goster/1", &announcement_page(&["Eski duyuru."]));
    site.set_html("/goster/2", &announcement_page(&["Yeni duyuru."]));
    let config = format!(
        "{}[bot.duyuru]\nkind = \"announcements\"\ntoken_env = \"BENCH_TOKEN\"\nlist_url = \"{}\"\n\
         link_selector = \"div.ann-list ul li a\"\ntext_selector = \"div.page-about\"\ncheck_every = \"200ms\"\n",
        fleet::supervisor(&tg, "10s", "warn"),
        site.url("/list")
    );
    let mut daemon = Daemon::start(&config, &[("BENCH_TOKEN".to_owned(), TOKEN.to_owned())]);
    tg.wait_for_request(TOKEN, "getUpdates", 1, LIMIT)
        .await
        .expect("botvisor polls");
    // The second check means the first (which only marks what is listed) is done.
    site.wait_for_requests("/list", 2, LIMIT)
        .await
        .expect("checks");
    for i in 0..CHATS {
        let user = User::new(300_000 + i, "Abone");
        tg.inject_message(TOKEN, &Chat::private(&user), &user, "/start");
    }
    tg.wait_for_sent(TOKEN, CHATS as usize, LIMIT)
        .await
        .expect("every chat subscribed");
    tg.set_rate_limits(RateLimits::telegram());
    site.set_html(
        "/list",
        &list_page(&[("/goster/2", "Duyuru 2"), ("/goster/1", "Duyuru 1")]),
    );
    let sent = tg
        .wait_for_sent(TOKEN, 2 * CHATS as usize, LIMIT)
        .await
        .expect("every chat reached");
    daemon.terminate().await;
    daemon.assert_no_errors();
    let broadcast: Vec<_> = sent[CHATS as usize..].iter().collect();
    let chats: HashSet<i64> = broadcast.iter().map(|m| m.chat_id).collect();
    assert_eq!(chats.len(), CHATS as usize, "every chat once");
    assert_eq!(
        tg.sent_messages(TOKEN).len(),
        2 * CHATS as usize,
        "nothing sent twice"
    );
    assert!(
        broadcast
            .iter()
            .all(|m| m.text.starts_with("DUYURU: Yeni duyuru."))
    );
    let seconds = broadcast[broadcast.len() - 1]
        .at
        .duration_since(broadcast[0].at)
        .as_secs_f64();
    let rate = (broadcast.len() - 1) as f64 / seconds;
    vec![seconds, rate, tg.too_many_requests_count(TOKEN) as f64]
}
