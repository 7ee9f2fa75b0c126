//! [`FakeTelegram`], the cheap-to-clone handle a test holds: starting and
//! stopping the server, registering bots, chats and users, injecting updates,
//! scripting faults and rate limits, and reading (or waiting for) what the
//! bots did. Every method locks the shared state only briefly; the waits are
//! woken by events, never by polling on a timer.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use crate::faults::{Fault, MethodFilter};
use crate::files::{MediaKind, NewFile, StoredFile};
use crate::methods::default_commands_key;
use crate::model::{
    BotCommand, BotInfo, CallbackAnswer, Chat, MemberStatus, RecordedRequest, RequestEvent,
    SentMessage, User, WaitTimeout, WebhookDelivery, WebhookInfoView,
};
use crate::ratelimit::RateLimits;
use crate::server;
use crate::state::{Shared, State};
use crate::webhook::{self, DEFAULT_MAX_CONNECTIONS, Spec};

/// A fake Telegram Bot API server on `127.0.0.1`. Clones share one server;
/// it stops when the last clone is dropped or on [`shutdown`](Self::shutdown).
#[derive(Clone)]
pub struct FakeTelegram {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    url: String,
    shutdown: watch::Sender<bool>,
    closed: watch::Receiver<bool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

impl fmt::Debug for FakeTelegram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeTelegram")
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

impl FakeTelegram {
    /// Binds `127.0.0.1:0` and starts serving on the current tokio runtime.
    pub async fn start() -> io::Result<FakeTelegram> {
        FakeTelegram::start_on(SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Binds `addr` (a loopback address; port 0 picks one) and starts
    /// serving: a test can make a Bot API that was unreachable come back on
    /// the address a bot already uses.
    pub async fn start_on(addr: SocketAddr) -> io::Result<FakeTelegram> {
        let (tx, rx) = watch::channel(false);
        let shared = Arc::new(Shared::new(rx.clone()));
        let (addr, closed) = server::start(Arc::clone(&shared), rx, addr).await?;
        Ok(FakeTelegram {
            inner: Arc::new(Inner {
                shared,
                addr,
                url: format!("http://{addr}"),
                shutdown: tx,
                closed,
            }),
        })
    }

    /// The base URL, `http://127.0.0.1:PORT`, without a trailing slash: what
    /// `teloxide::Bot::set_api_url` and botvisor's `api_url` take.
    pub fn url(&self) -> String {
        self.inner.url.clone()
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Stops the server now: no new connections are accepted and open ones
    /// (including held long polls) are closed. Idempotent.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// A future that completes once the server has stopped listening (after
    /// [`shutdown`](Self::shutdown) or the drop of the last handle). It does
    /// not keep the server alive.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut closed = self.inner.closed.clone();
        async move {
            // Err: the listener task is gone, which also means closed.
            let _ = closed.wait_for(|c| *c).await;
        }
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.shared().lock())
    }

    // ----- bots, chats, users -------------------------------------------

    /// Registers a bot token (or renames an existing one). Only registered
    /// tokens work; others get 401 `Unauthorized`. The bot's user id is the
    /// digits before `:` when they parse, else a generated id.
    pub fn add_bot(&self, token: &str, username: &str) -> BotInfo {
        self.with_state(|st| st.add_bot(token, username))
    }

    /// The bot registered with this token.
    pub fn bot(&self, token: &str) -> Option<BotInfo> {
        self.with_state(|st| st.bots.get(token).map(|b| b.info.clone()))
    }

    /// Makes a chat known (title, username) without sending anything in it;
    /// used for `getChat`, `@username` chat ids and message shapes.
    pub fn add_chat(&self, chat: &Chat) {
        self.with_state(|st| st.remember_chat(chat));
    }

    /// Makes a user known (used by `getChatMember`).
    pub fn add_user(&self, user: &User) {
        self.with_state(|st| st.remember_user(user));
    }

    // ----- updates --------------------------------------------------------

    /// Sets the id the next injected update of this bot gets (ids then go up
    /// by one). Telegram picks a random new start after a week without
    /// updates; use this to simulate that.
    ///
    /// # Panics
    /// If the token is not registered.
    pub fn set_next_update_id(&self, token: &str, id: u32) {
        self.with_state(|st| st.bot_mut(token).next_update_id = id.max(1));
    }

    /// Queues a text message from `from` in `chat` and returns its update id.
    /// A text starting with `/` gets a `bot_command` entity at offset 0
    /// covering the command and any `@botname`. In a channel it becomes a
    /// `channel_post` (with `sender_chat`, without `from`).
    ///
    /// # Panics
    /// If the token is not registered.
    pub fn inject_message(&self, token: &str, chat: &Chat, from: &User, text: &str) -> u32 {
        self.with_state(|st| st.inject_message(token, chat, from, text))
    }

    /// Queues a photo `from` sent in `chat`, with an optional caption, and
    /// returns the update id and the new file's `file_id`. The message
    /// carries `photo`: one PhotoSize with the file's id, size and
    /// dimensions (read from a PNG, GIF or JPEG header, else 320×320). The
    /// bot can getFile and download it, send it again by id, forward or
    /// copy the message.
    ///
    /// # Panics
    /// If the token is not registered.
    pub fn inject_photo(
        &self,
        token: &str,
        chat: &Chat,
        from: &User,
        bytes: impl Into<Bytes>,
        caption: Option<&str>,
    ) -> (u32, String) {
        let new = NewFile {
            kind: MediaKind::Photo,
            bytes: bytes.into(),
            file_name: None,
            content_type: None,
            url: None,
        };
        let (update_id, file) =
            self.with_state(|st| st.inject_media(token, chat, from, new, caption));
        (update_id, file.file_id)
    }

    /// Queues a document `from` sent in `chat` (its MIME type guessed from
    /// `file_name`), with an optional caption, and returns the update id and
    /// the new file's `file_id`. The message carries `document` (`file_id`,
    /// `file_unique_id`, `file_name`, `mime_type`, `file_size`).
    ///
    /// # Panics
    /// If the token is not registered.
    pub fn inject_document(
        &self,
        token: &str,
        chat: &Chat,
        from: &User,
        bytes: impl Into<Bytes>,
        file_name: &str,
        caption: Option<&str>,
    ) -> (u32, String) {
        let new = NewFile {
            kind: MediaKind::Document,
            bytes: bytes.into(),
            file_name: Some(file_name),
            content_type: None,
            url: None,
        };
        let (update_id, file) =
            self.with_state(|st| st.inject_media(token, chat, from, new, caption));
        (update_id, file.file_id)
    }

    /// Queues a callback query: `from` pressed a button with `data` on
    /// message `message_id` in `chat`. The query carries that message (as the
    /// bot sent it, when the fake has it), a `chat_instance` and a unique
    /// `id`, which `answerCallbackQuery` then accepts. Returns the update id.
    ///
    /// # Panics
    /// If the token is not registered.
    pub fn inject_callback_query(
        &self,
        token: &str,
        chat: &Chat,
        from: &User,
        message_id: i32,
        data: &str,
    ) -> u32 {
        self.with_state(|st| st.inject_callback_query(token, chat, from, message_id, data))
    }

    /// Queues a `my_chat_member` update (the bot's own status in `chat`
    /// changed from `old` to `new`, done by `from`) and records `new` as the
    /// bot's status there. Returns the update id.
    ///
    /// # Panics
    /// If the token is not registered.
    pub fn inject_my_chat_member(
        &self,
        token: &str,
        chat: &Chat,
        from: &User,
        old: MemberStatus,
        new: MemberStatus,
    ) -> u32 {
        self.with_state(|st| st.inject_my_chat_member(token, chat, from, old, new))
    }

    /// Queues a raw update: a JSON object such as `{"edited_message": {...}}`.
    /// The fake sets `update_id` (overwriting one given) and returns it. Its
    /// type for `allowed_updates` is its first field other than `update_id`.
    ///
    /// # Panics
    /// If the token is not registered or `update` is not a JSON object.
    pub fn inject_update(&self, token: &str, update: Value) -> u32 {
        let Value::Object(map) = update else {
            panic!("fake-telegram: inject_update needs a JSON object, got {update}");
        };
        self.with_state(|st| st.bot_mut(token).enqueue(map))
    }

    /// The offset the bot last confirmed with getUpdates (0 before any).
    pub fn confirmed_offset(&self, token: &str) -> i64 {
        self.with_state(|st| st.bots.get(token).map_or(0, |b| b.confirmed_offset))
    }

    /// The updates not yet confirmed, oldest first.
    pub fn pending_updates(&self, token: &str) -> Vec<Value> {
        self.with_state(|st| {
            st.bots.get(token).map_or_else(Vec::new, |b| {
                b.queue
                    .iter()
                    .filter_map(|u| serde_json::from_str(&u.json).ok())
                    .collect()
            })
        })
    }

    /// How many updates are not yet confirmed.
    pub fn pending_update_count(&self, token: &str) -> usize {
        self.with_state(|st| st.bots.get(token).map_or(0, |b| b.queue.len()))
    }

    /// The `allowed_updates` setting the bot last gave (`None`: the default).
    pub fn allowed_updates(&self, token: &str) -> Option<Vec<String>> {
        self.with_state(|st| st.bots.get(token).and_then(|b| b.allowed_updates.clone()))
    }

    /// Whether a getUpdates of this bot is being held (long polling) now.
    pub fn is_polling(&self, token: &str) -> bool {
        self.with_state(|st| st.bots.get(token).is_some_and(|b| b.held.is_some()))
    }

    /// Waits until a getUpdates of this bot is being held.
    pub async fn wait_until_polling(
        &self,
        token: &str,
        timeout: Duration,
    ) -> Result<(), WaitTimeout> {
        self.wait_until(timeout, |st| {
            let held = st.bots.get(token).is_some_and(|b| b.held.is_some());
            (if held { Some(()) } else { None }, usize::from(held))
        })
        .await
        .map_err(|(seen, timeout)| WaitTimeout {
            waiting_for: format!("a held getUpdates of {}", redact(token)),
            seen,
            wanted: 1,
            timeout,
        })
    }

    // ----- webhook --------------------------------------------------------

    /// Sets (or, with an empty `url`, deletes) the bot's webhook from the
    /// test side, without the checks `setWebhook` makes (no secret token,
    /// `max_connections` 40): "someone else set a webhook for this token".
    /// Setting one ends a held getUpdates with 409 `Conflict: terminated by
    /// setWebhook request`, and the fake starts delivering to it like to one
    /// set with `setWebhook`. An unreachable URL is harmless: each attempt
    /// fails (`Connection refused`, `Failed to resolve host: …`; an `https`
    /// URL fails after connecting, as the fake speaks plain HTTP only) and
    /// the updates stay pending, with the default retry schedule for about a
    /// day. A URL that does not parse is stored but never called.
    ///
    /// # Panics
    /// If the token is not registered.
    pub fn set_webhook(&self, token: &str, url: &str) {
        let shared = Arc::clone(&self.inner.shared);
        self.with_state(|st| {
            if url.is_empty() {
                st.bot_mut(token).webhook = None;
            } else {
                let spec = Spec {
                    url: url.to_owned(),
                    secret_token: None,
                    max_connections: DEFAULT_MAX_CONNECTIONS,
                    has_custom_certificate: false,
                };
                webhook::install(&shared, st, token, spec);
            }
        });
    }

    /// The bot's webhook URL, if one is set.
    pub fn webhook_url(&self, token: &str) -> Option<String> {
        self.with_state(|st| {
            st.bots
                .get(token)
                .and_then(|b| b.webhook.as_ref().map(|w| w.spec.url.clone()))
        })
    }

    /// The bot's webhook as the fake holds it (what getWebhookInfo reports,
    /// plus the secret token), if one is set.
    pub fn webhook_info(&self, token: &str) -> Option<WebhookInfoView> {
        self.with_state(|st| {
            let bot = st.bots.get(token)?;
            let hook = bot.webhook.as_ref()?;
            Some(WebhookInfoView {
                url: hook.spec.url.clone(),
                secret_token: hook.spec.secret_token.clone(),
                max_connections: hook.spec.max_connections,
                allowed_updates: bot.allowed_updates.clone(),
                pending_update_count: bot.queue.len(),
                last_error_date: hook.last_error_date,
                last_error_message: hook.last_error_message.clone(),
            })
        })
    }

    /// Every webhook delivery attempt for this bot so far, in the order the
    /// attempts completed (across webhooks, if it was set more than once).
    pub fn webhook_deliveries(&self, token: &str) -> Vec<WebhookDelivery> {
        self.with_state(|st| {
            st.bots
                .get(token)
                .map_or_else(Vec::new, |b| b.webhook_deliveries.clone())
        })
    }

    /// Waits until the `n`-th (1-based) webhook delivery attempt for this bot
    /// has completed, and returns it.
    pub async fn wait_for_webhook_delivery(
        &self,
        token: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<WebhookDelivery, WaitTimeout> {
        let wanted = n.max(1);
        self.wait_until(timeout, |st| {
            let done = st
                .bots
                .get(token)
                .map_or(&[][..], |b| &b.webhook_deliveries[..]);
            (done.get(wanted - 1).cloned(), done.len())
        })
        .await
        .map_err(|(seen, timeout)| WaitTimeout {
            waiting_for: format!("webhook deliveries to {}", redact(token)),
            seen,
            wanted,
            timeout,
        })
    }

    /// Sets how failed webhook deliveries are retried, for every bot: the
    /// first retry comes `first_delay` after the failure, each later wait
    /// doubles up to a minute (or up to `first_delay`, if longer), and after
    /// `max_attempts` failed attempts (at least 1) the update is dropped. A
    /// `Retry-After: N` header in the webhook's answer sets that wait to N s
    /// instead (at most an hour), as in Telegram. The default is 1 s and 1440
    /// attempts: about a day, the time Telegram keeps an update. (Telegram
    /// itself retries the first failure at once, then after 2, 4, 8 … s,
    /// capped at a random 60–120 s.) Applies to the next waits.
    pub fn set_webhook_retry(&self, first_delay: Duration, max_attempts: u32) {
        self.with_state(|st| {
            st.webhook_settings.first_delay = first_delay;
            st.webhook_settings.max_attempts = max_attempts.max(1);
        });
    }

    /// Sets how long one webhook delivery attempt may take, connecting and
    /// reading the answer included (default 60 s, Telegram's). An attempt
    /// that runs out fails with `Read timeout expired` (`Connection timed
    /// out` while connecting). Applies to attempts started afterwards.
    pub fn set_webhook_timeout(&self, timeout: Duration) {
        self.with_state(|st| st.webhook_settings.timeout = timeout);
    }

    // ----- chat members ---------------------------------------------------

    /// Sets a user's status in a chat, as `getChatMember` will report it
    /// (default `member`). Setting the *bot's* own status to `kicked` makes
    /// its sends to that chat fail with 403 (`bot was blocked by the user` in
    /// a private chat, `bot was kicked from the … chat` elsewhere); `left`
    /// gives `bot is not a member of the … chat`.
    pub fn set_member_status(&self, chat_id: i64, user_id: u64, status: MemberStatus) {
        self.with_state(|st| {
            st.members.insert((chat_id, user_id), status);
        });
    }

    /// A user's status in a chat.
    pub fn member_status(&self, chat_id: i64, user_id: u64) -> MemberStatus {
        self.with_state(|st| st.member_status(chat_id, user_id))
    }

    // ----- what bots sent -------------------------------------------------

    /// The messages the bot sent, in order: with sendMessage, the media
    /// methods (one per item of sendMediaGroup), forwardMessage and
    /// copyMessage ([`SentMessage::method`] tells which).
    pub fn sent_messages(&self, token: &str) -> Vec<SentMessage> {
        self.with_state(|st| st.bots.get(token).map_or_else(Vec::new, |b| b.sent.clone()))
    }

    /// The edits the bot made with editMessageText, editMessageCaption and
    /// editMessageReplyMarkup, in order.
    pub fn edited_messages(&self, token: &str) -> Vec<SentMessage> {
        self.with_state(|st| {
            st.bots
                .get(token)
                .map_or_else(Vec::new, |b| b.edits.clone())
        })
    }

    /// The chats and ids of the messages the bot deleted with deleteMessage
    /// or deleteMessages, in order.
    pub fn deleted_messages(&self, token: &str) -> Vec<(i64, i32)> {
        self.with_state(|st| {
            st.bots
                .get(token)
                .map_or_else(Vec::new, |b| b.deleted.clone())
        })
    }

    // ----- files ----------------------------------------------------------

    /// The stored file with this `file_id` (uploaded by a bot, sent by URL,
    /// injected, or added with [`add_file`](Self::add_file)).
    pub fn file(&self, file_id: &str) -> Option<StoredFile> {
        self.with_state(|st| st.files.get(file_id).cloned())
    }

    /// The stored file with this `file_path` (as getFile gives it).
    pub fn file_by_path(&self, file_path: &str) -> Option<StoredFile> {
        self.with_state(|st| st.files.by_path(file_path).cloned())
    }

    /// Every stored file, oldest first.
    pub fn files(&self) -> Vec<StoredFile> {
        self.with_state(|st| st.files.all().to_vec())
    }

    /// Stores a file as if someone had uploaded it earlier, so a bot can
    /// send it by `file_id`, getFile and download it. The MIME type is
    /// guessed from `file_name`.
    pub fn add_file(
        &self,
        kind: MediaKind,
        bytes: impl Into<Bytes>,
        file_name: Option<&str>,
    ) -> StoredFile {
        let new = NewFile {
            kind,
            bytes: bytes.into(),
            file_name,
            content_type: None,
            url: None,
        };
        self.with_state(|st| st.files.add(new))
    }

    /// The bot's answerCallbackQuery calls, in order.
    pub fn callback_answers(&self, token: &str) -> Vec<CallbackAnswer> {
        self.with_state(|st| {
            st.bots
                .get(token)
                .map_or_else(Vec::new, |b| b.callback_answers.clone())
        })
    }

    /// The bot's commands for the default scope and no language.
    pub fn commands(&self, token: &str) -> Vec<BotCommand> {
        self.with_state(|st| {
            st.bots
                .get(token)
                .and_then(|b| b.commands.get(&default_commands_key()).cloned())
                .unwrap_or_default()
        })
    }

    /// Waits until the bot has sent at least `n` messages, and returns all it
    /// has sent.
    pub async fn wait_for_sent(
        &self,
        token: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<SentMessage>, WaitTimeout> {
        self.wait_until(timeout, |st| {
            let sent = st.bots.get(token).map_or(&[][..], |b| &b.sent[..]);
            ((sent.len() >= n).then(|| sent.to_vec()), sent.len())
        })
        .await
        .map_err(|(seen, timeout)| WaitTimeout {
            waiting_for: format!("messages sent by {}", redact(token)),
            seen,
            wanted: n,
            timeout,
        })
    }

    // ----- requests -------------------------------------------------------

    /// Every recorded request, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.with_state(|st| st.log.iter().cloned().collect())
    }

    /// The recorded requests of one token and method (case-insensitive).
    pub fn requests_of(&self, token: &str, method: &str) -> Vec<RecordedRequest> {
        let method = method.to_ascii_lowercase();
        self.with_state(|st| {
            st.log
                .iter()
                .filter(|r| r.token == token && r.method == method)
                .cloned()
                .collect()
        })
    }

    /// Forgets the recorded requests (sequence numbers keep counting).
    pub fn clear_requests(&self) {
        self.with_state(|st| st.log.clear());
    }

    /// Keeps at most this many recorded requests, forgetting the oldest
    /// (for long benchmarks; unlimited by default).
    pub fn set_request_log_capacity(&self, capacity: usize) {
        self.with_state(|st| st.log.set_capacity(capacity));
    }

    /// Waits until the `n`-th (1-based) request of this token and method
    /// (case-insensitive) has arrived, and returns it. It may still be
    /// pending (a held long poll); its `outcome` is as of the return.
    pub async fn wait_for_request(
        &self,
        token: &str,
        method: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<RecordedRequest, WaitTimeout> {
        let method = method.to_ascii_lowercase();
        let wanted = n.max(1);
        self.wait_until(timeout, |st| {
            let mut seen = 0;
            for r in st.log.iter() {
                if r.token == token && r.method == method {
                    seen += 1;
                    if seen == wanted {
                        return (Some(r.clone()), seen);
                    }
                }
            }
            (None, seen)
        })
        .await
        .map_err(|(seen, timeout)| WaitTimeout {
            waiting_for: format!("{method} requests of {}", redact(token)),
            seen,
            wanted,
            timeout,
        })
    }

    /// Waits until a recorded request satisfies `matches` and returns the
    /// oldest one that does. The check runs again whenever the fake's state
    /// changes, so it may look at a request's `outcome` or `at` too (say,
    /// "the first getUpdates answered 200 after this instant"). `what` names
    /// the awaited request in the timeout error.
    pub async fn wait_for_request_matching(
        &self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&RecordedRequest) -> bool,
    ) -> Result<RecordedRequest, WaitTimeout> {
        self.wait_until(timeout, |st| {
            (st.log.iter().find(|r| matches(r)).cloned(), 0)
        })
        .await
        .map_err(|(seen, timeout)| WaitTimeout {
            waiting_for: what.to_owned(),
            seen,
            wanted: 1,
            timeout,
        })
    }

    /// A subscription to request events (arrived, finished). Events sent
    /// before the subscription are not seen; a slow subscriber may lag
    /// (capacity 4096).
    pub fn subscribe(&self) -> broadcast::Receiver<RequestEvent> {
        self.shared().events.subscribe()
    }

    // ----- faults and limits ----------------------------------------------

    /// Scripts a fault for the next requests of `token` to `method` (a name,
    /// case-insensitive, or [`MethodFilter::Any`] / `"*"` for any method).
    /// Faults for a named method are used before those for any method; each
    /// list is first in, first out. Faults apply before the token check, so
    /// they work for unregistered tokens too. Downloads
    /// (`/file/bot<TOKEN>/<path>`) count as the method `file`.
    pub fn add_fault(&self, token: &str, method: impl Into<MethodFilter>, fault: Fault) {
        let method = method.into();
        self.with_state(|st| st.faults.add(token, method, fault));
    }

    /// Removes every fault scripted for `token`.
    pub fn clear_faults(&self, token: &str) {
        self.with_state(|st| st.faults.clear(Some(token)));
    }

    /// Removes every fault of every token.
    pub fn clear_all_faults(&self) {
        self.with_state(|st| st.faults.clear(None));
    }

    /// Turns rate limits on (`Some(limits)` or a `RateLimits`) or off
    /// (`None`, [`RateLimits::disabled`]). Resets the windows.
    pub fn set_rate_limits(&self, limits: impl Into<Option<RateLimits>>) {
        let limits = limits.into().unwrap_or_default();
        self.with_state(|st| st.limiter.set_limits(limits));
    }

    /// How many 429s the rate limits have answered to this bot.
    pub fn too_many_requests_count(&self, token: &str) -> u64 {
        self.with_state(|st| st.bots.get(token).map_or(0, |b| b.too_many_requests))
    }

    // ----- waiting ---------------------------------------------------------

    /// Re-checks `check` each time the state changes until it yields a
    /// value or the timeout passes. `check` returns the value (if ready) and
    /// how many matching items it saw; on timeout, that count is returned.
    async fn wait_until<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&State) -> (Option<T>, usize),
    ) -> Result<T, (usize, Duration)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared().changed.notified();
            tokio::pin!(notified);
            // Register before checking, so a change between the check and
            // the await is not missed.
            notified.as_mut().enable();
            let seen = {
                let st = self.shared().lock();
                match check(&st) {
                    (Some(v), _) => return Ok(v),
                    (None, seen) => seen,
                }
            };
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                // One last look: a change may have landed right at the deadline.
                let st = self.shared().lock();
                return match check(&st) {
                    (Some(v), _) => Ok(v),
                    (None, last) => Err((last.max(seen), timeout)),
                };
            }
        }
    }
}

/// A token for messages: the bot id part only.
fn redact(token: &str) -> String {
    match token.split_once(':') {
        Some((id, _)) => format!("bot {id}"),
        None => "a bot".to_owned(),
    }
}
