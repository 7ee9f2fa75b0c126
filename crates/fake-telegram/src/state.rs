//! The fake's memory, behind one `std::sync::Mutex` held briefly: registered
//! bots with their update queues, offsets, held long poll, webhook, sent
//! messages and commands; known chats, users and member statuses; the log of
//! requests; scripted faults; rate-limit windows; the file store. Also the
//! two wake-up mechanisms: a `Notify` for test-side waiters and a broadcast
//! of request events. Also what background tasks (webhook delivery) need: the runtime
//! to spawn on and the shutdown signal.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde_json::{Map, Value, json};
use tokio::sync::{Notify, broadcast, oneshot, watch};

use crate::faults::{Fault, FaultBook};
use crate::files::{self, FileStore, MediaDetails, MediaKind, NewFile, StoredFile};
use crate::json::{self, TextMessage};
use crate::model::{
    BotCommand, BotInfo, CallbackAnswer, Chat, MemberStatus, Outcome, RecordedRequest,
    RequestEvent, SentMessage, User, WebhookDelivery,
};
use crate::params::ChatRef;
use crate::ratelimit::RateLimiter;
use crate::reply::ApiError;
use crate::webhook::{self, Webhook};

/// Update types Telegram leaves out unless `allowed_updates` names them.
const OPT_IN_UPDATES: [&str; 3] = ["chat_member", "message_reaction", "message_reaction_count"];

/// Everything shared between the server's tasks and the test-side handle.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Woken (`notify_waiters`) whenever a request arrives or finishes, a
    /// message is sent, or a long poll starts being held.
    pub changed: Notify,
    /// Request events for subscribers.
    pub events: broadcast::Sender<RequestEvent>,
    /// The runtime the server was started on, where webhook deliveries run.
    pub runtime: tokio::runtime::Handle,
    /// Turns true when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
}

impl Shared {
    /// Must be called within a tokio runtime (the one background tasks use).
    pub fn new(shutdown: watch::Receiver<bool>) -> Self {
        Shared {
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            events: broadcast::channel(4096).0,
            runtime: tokio::runtime::Handle::current(),
            shutdown,
        }
    }

    /// Locks the state.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("fake-telegram state lock poisoned")
    }

    /// Records an arriving request and takes the fault that will answer it,
    /// if one is scripted. Returns the request's sequence number.
    pub fn arrive(
        &self,
        token: &str,
        method: &str,
        body: Value,
        at: Instant,
    ) -> (u64, Option<Fault>) {
        let (seq, fault) = {
            let mut st = self.lock();
            let seq = st.log.push(RecordedRequest {
                seq: 0,
                token: token.to_owned(),
                method: method.to_owned(),
                body,
                at,
                outcome: Outcome::Pending,
            });
            let fault = if token.is_empty() {
                None
            } else {
                st.faults.take(token, method)
            };
            (seq, fault)
        };
        self.changed.notify_waiters();
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(RequestEvent::Arrived {
                seq,
                token: token.to_owned(),
                method: method.to_owned(),
            });
        }
        (seq, fault)
    }

    /// Records how a request ended.
    pub fn finish(&self, seq: u64, token: &str, method: &str, outcome: Outcome) {
        self.lock().log.set_outcome(seq, outcome);
        self.changed.notify_waiters();
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(RequestEvent::Finished {
                seq,
                token: token.to_owned(),
                method: method.to_owned(),
                outcome,
            });
        }
    }
}

/// The request log: a bounded queue indexed by sequence number.
pub(crate) struct RequestLog {
    entries: VecDeque<RecordedRequest>,
    /// Sequence number of `entries[0]`.
    base: u64,
    capacity: usize,
}

impl Default for RequestLog {
    fn default() -> Self {
        RequestLog {
            entries: VecDeque::new(),
            base: 0,
            capacity: usize::MAX,
        }
    }
}

impl RequestLog {
    fn push(&mut self, mut r: RecordedRequest) -> u64 {
        let seq = self.base + self.entries.len() as u64;
        r.seq = seq;
        self.entries.push_back(r);
        self.trim();
        seq
    }

    fn trim(&mut self) {
        while self.entries.len() > self.capacity {
            self.entries.pop_front();
            self.base += 1;
        }
    }

    fn set_outcome(&mut self, seq: u64, outcome: Outcome) {
        let entry = seq
            .checked_sub(self.base)
            .and_then(|idx| usize::try_from(idx).ok())
            .and_then(|i| self.entries.get_mut(i));
        if let Some(r) = entry {
            r.outcome = outcome;
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &RecordedRequest> {
        self.entries.iter()
    }

    pub fn clear(&mut self) {
        self.base += self.entries.len() as u64;
        self.entries.clear();
    }

    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
        self.trim();
    }
}

/// An update waiting in a bot's queue.
pub(crate) struct QueuedUpdate {
    pub id: u32,
    /// The update's type: its field other than `update_id` (`message`, …).
    pub kind: String,
    /// The serialized update.
    pub json: Arc<str>,
    /// The webhook queue it is delivered in (see `webhook::queue_of`).
    pub webhook_queue: Option<i64>,
}

/// Why a held long poll was ended early.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PollEnd {
    OtherPoller,
    SetWebhook,
}

/// The long poll a bot currently has open.
pub(crate) struct HeldPoll {
    pub id: u64,
    pub end: oneshot::Sender<PollEnd>,
}

/// The file a message carries, as which kind, and its Bot API object.
#[derive(Clone, Debug)]
pub(crate) struct MessageMedia {
    pub kind: MediaKind,
    pub file: StoredFile,
    /// `files::media_json` of the file as `kind`.
    pub json: Value,
}

impl MessageMedia {
    pub fn new(kind: MediaKind, file: StoredFile, details: &MediaDetails) -> Self {
        MessageMedia {
            json: files::media_json(&file, kind, details),
            kind,
            file,
        }
    }
}

/// A message in a chat as one bot sees it, kept for edits, forwards, copies
/// and callback queries. A media message has `media` (and maybe a
/// `caption`) and an empty `text`.
#[derive(Clone, Debug, Default)]
pub(crate) struct StoredMessage {
    pub by_bot: bool,
    pub from: Option<User>,
    pub date: i64,
    pub text: String,
    pub entities: Option<Value>,
    pub reply_markup: Option<Value>,
    pub edit_date: Option<i64>,
    pub media: Option<MessageMedia>,
    pub caption: Option<String>,
    pub caption_entities: Option<Value>,
    pub media_group_id: Option<String>,
    /// The `forward_origin` of a forwarded message.
    pub forward_origin: Option<Value>,
}

impl StoredMessage {
    pub fn to_json(&self, message_id: i32, chat: &Chat) -> Value {
        let mut m = json::message_head(message_id, self.from.as_ref(), chat, self.date);
        if let Some(o) = &self.forward_origin {
            m.insert("forward_origin".into(), o.clone());
        }
        match &self.media {
            None => {
                m.insert("text".into(), json!(self.text));
                if let Some(e) = &self.entities {
                    m.insert("entities".into(), e.clone());
                }
            }
            Some(media) => {
                m.insert(media.kind.as_str().into(), media.json.clone());
                if media.kind == MediaKind::Animation {
                    // Telegram sends an animation as a document too.
                    m.insert(
                        "document".into(),
                        files::media_json(
                            &media.file,
                            MediaKind::Document,
                            &MediaDetails::default(),
                        ),
                    );
                }
                if let Some(c) = &self.caption {
                    m.insert("caption".into(), json!(c));
                }
                if let Some(e) = &self.caption_entities {
                    m.insert("caption_entities".into(), e.clone());
                }
                if let Some(g) = &self.media_group_id {
                    m.insert("media_group_id".into(), json!(g));
                }
            }
        }
        json::insert_reply_markup(&mut m, self.reply_markup.as_ref());
        if let Some(d) = self.edit_date {
            m.insert("edit_date".into(), json!(d));
        }
        Value::Object(m)
    }

    /// What a user sees as its text: the text, or a media message's caption.
    pub fn visible_text(&self) -> &str {
        match &self.media {
            Some(_) => self.caption.as_deref().unwrap_or(""),
            None => &self.text,
        }
    }
}

/// One registered bot.
pub(crate) struct BotState {
    pub info: BotInfo,
    pub user: User,
    pub next_update_id: u32,
    pub queue: VecDeque<QueuedUpdate>,
    pub confirmed_offset: i64,
    pub allowed_updates: Option<Vec<String>>,
    /// Bumped whenever an update is queued; held polls watch it.
    pub update_signal: watch::Sender<u64>,
    pub held: Option<HeldPoll>,
    pub webhook: Option<Webhook>,
    /// Every webhook delivery attempt, in the order they completed.
    pub webhook_deliveries: Vec<WebhookDelivery>,
    pub sent: Vec<SentMessage>,
    pub edits: Vec<SentMessage>,
    /// Messages deleted with deleteMessage(s): (chat id, message id).
    pub deleted: Vec<(i64, i32)>,
    pub messages: HashMap<(i64, i32), StoredMessage>,
    pub last_message_id: HashMap<i64, i32>,
    pub commands: HashMap<String, Vec<BotCommand>>,
    pub callback_ids: HashSet<String>,
    pub callback_answers: Vec<CallbackAnswer>,
    pub too_many_requests: u64,
}

impl BotState {
    fn new(info: BotInfo) -> Self {
        BotState {
            user: info.user(),
            info,
            next_update_id: 1,
            queue: VecDeque::new(),
            confirmed_offset: 0,
            allowed_updates: None,
            update_signal: watch::channel(0).0,
            held: None,
            webhook: None,
            webhook_deliveries: Vec::new(),
            sent: Vec::new(),
            edits: Vec::new(),
            deleted: Vec::new(),
            messages: HashMap::new(),
            last_message_id: HashMap::new(),
            commands: HashMap::new(),
            callback_ids: HashSet::new(),
            callback_answers: Vec::new(),
            too_many_requests: 0,
        }
    }

    /// Queues an update (an object without `update_id`; the fake sets it).
    pub fn enqueue(&mut self, mut update: Map<String, Value>) -> u32 {
        let id = self.next_update_id;
        self.next_update_id = id.checked_add(1).unwrap_or(1);
        let kind = update
            .keys()
            .find(|k| k.as_str() != "update_id")
            .cloned()
            .unwrap_or_default();
        update.insert("update_id".into(), json!(id));
        let update = Value::Object(update);
        self.queue.push_back(QueuedUpdate {
            id,
            webhook_queue: webhook::queue_of(&kind, &update),
            kind,
            json: update.to_string().into(),
        });
        self.update_signal.send_modify(|n| *n = n.wrapping_add(1));
        id
    }

    /// Applies a getUpdates `offset`: a positive one forgets every update
    /// with a lower id; a negative one keeps only the last `-offset` updates.
    /// An offset beyond every id issued so far ("in the future", as after
    /// Telegram restarted the ids) confirms nothing.
    pub fn confirm(&mut self, offset: i64) {
        if offset > 0 {
            if offset > i64::from(self.next_update_id) {
                return;
            }
            self.queue.retain(|u| i64::from(u.id) >= offset);
            self.confirmed_offset = offset;
        } else if offset < 0 {
            let keep = usize::try_from(offset.unsigned_abs()).unwrap_or(usize::MAX);
            while self.queue.len() > keep {
                self.queue.pop_front();
            }
            self.confirmed_offset = self
                .queue
                .front()
                .map_or(i64::from(self.next_update_id), |u| i64::from(u.id));
        }
    }

    /// Drops queued updates of a type the bot did not ask for, then returns
    /// up to `limit` of the rest, oldest first.
    pub fn batch(&mut self, limit: usize) -> Vec<Arc<str>> {
        let allowed = &self.allowed_updates;
        self.queue
            .retain(|u| update_allowed(&u.kind, allowed.as_deref()));
        self.queue
            .iter()
            .take(limit)
            .map(|u| Arc::clone(&u.json))
            .collect()
    }

    /// The next message id in `chat_id` as this bot sees it.
    pub fn next_message_id(&mut self, chat_id: i64) -> i32 {
        let last = self.last_message_id.entry(chat_id).or_insert(0);
        *last = last.saturating_add(1);
        *last
    }

    /// Ends the held long poll, if any.
    pub fn end_held_poll(&mut self, why: PollEnd) {
        if let Some(h) = self.held.take() {
            let _ = h.end.send(why);
        }
    }
}

/// Whether an update of type `kind` is delivered under `allowed`
/// (`None` or empty: everything except the opt-in types).
pub(crate) fn update_allowed(kind: &str, allowed: Option<&[String]>) -> bool {
    match allowed {
        Some(list) if !list.is_empty() => list.iter().any(|a| a == kind),
        _ => !OPT_IN_UPDATES.contains(&kind),
    }
}

/// All of the fake's memory.
#[derive(Default)]
pub(crate) struct State {
    pub bots: HashMap<String, BotState>,
    next_generated_bot_id: u64,
    pub chats: HashMap<i64, Chat>,
    pub users: HashMap<u64, User>,
    pub members: HashMap<(i64, u64), MemberStatus>,
    pub log: RequestLog,
    pub faults: FaultBook,
    pub limiter: RateLimiter,
    pub next_poll_id: u64,
    next_callback_id: u64,
    pub next_webhook_id: u64,
    pub webhook_settings: webhook::Settings,
    /// Every file uploaded, sent by URL or injected.
    pub files: FileStore,
    next_media_group_id: u64,
}

impl State {
    /// Registers (or renames) a bot.
    pub fn add_bot(&mut self, token: &str, username: &str) -> BotInfo {
        let username = username.trim_start_matches('@').to_owned();
        if let Some(bot) = self.bots.get_mut(token) {
            bot.info.username.clone_from(&username);
            bot.info.first_name = username;
            bot.user = bot.info.user();
            return bot.info.clone();
        }
        let id = match token.split_once(':').map(|(d, _)| d.parse::<u64>()) {
            Some(Ok(id)) if id > 0 => id,
            _ => {
                self.next_generated_bot_id += 1;
                7_000_000_000 + self.next_generated_bot_id
            }
        };
        let info = BotInfo {
            id,
            token: token.to_owned(),
            first_name: username.clone(),
            username,
        };
        self.users.insert(id, info.user());
        self.bots
            .insert(token.to_owned(), BotState::new(info.clone()));
        info
    }

    /// The bot with this token.
    ///
    /// # Panics
    /// If no bot has it: a test-side mistake.
    pub fn bot_mut(&mut self, token: &str) -> &mut BotState {
        self.bots.get_mut(token).unwrap_or_else(|| {
            panic!("fake-telegram: no bot with token {token:?}; call add_bot first")
        })
    }

    /// Remembers a chat (its title, username, …) for later answers.
    pub fn remember_chat(&mut self, chat: &Chat) {
        self.chats.insert(chat.id, chat.clone());
    }

    /// Remembers a user.
    pub fn remember_user(&mut self, user: &User) {
        self.users.insert(user.id, user.clone());
    }

    /// The chat a `chat_id` names. An unknown numeric id is accepted and its
    /// kind guessed from the id; an unknown `@username` is "chat not found".
    pub fn resolve_chat(&mut self, r: &ChatRef) -> Result<Chat, ApiError> {
        match r {
            ChatRef::Id(0) => Err(ApiError::bad_request("chat not found")),
            ChatRef::Id(id) => Ok(self
                .chats
                .entry(*id)
                .or_insert_with(|| Chat::guess_from_id(*id))
                .clone()),
            ChatRef::Username(name) => self
                .chats
                .values()
                .find(|c| {
                    c.username
                        .as_deref()
                        .is_some_and(|u| u.eq_ignore_ascii_case(name))
                })
                .cloned()
                .ok_or_else(|| ApiError::bad_request("chat not found")),
        }
    }

    /// The user with this id (a generic one if never seen).
    pub fn user(&self, id: u64) -> User {
        self.users
            .get(&id)
            .cloned()
            .unwrap_or_else(|| User::new(id, format!("User {id}")))
    }

    pub fn member_status(&self, chat_id: i64, user_id: u64) -> MemberStatus {
        self.members
            .get(&(chat_id, user_id))
            .copied()
            .unwrap_or_default()
    }

    /// Queues a text message from `from` in `chat` for the bot.
    pub fn inject_message(&mut self, token: &str, chat: &Chat, from: &User, text: &str) -> u32 {
        let stored = StoredMessage {
            text: text.to_owned(),
            entities: json::command_entity(text).map(|e| Value::Array(vec![e])),
            ..StoredMessage::default()
        };
        self.inject(token, chat, from, stored)
    }

    /// Stores a file a user sends and queues the message carrying it, with
    /// an optional caption (a `/command` caption gets its entity). Returns
    /// the update id and the file.
    pub fn inject_media(
        &mut self,
        token: &str,
        chat: &Chat,
        from: &User,
        new: NewFile<'_>,
        caption: Option<&str>,
    ) -> (u32, StoredFile) {
        // Fail on an unknown token before storing anything.
        self.bot_mut(token);
        let kind = new.kind;
        let file = self.files.add(new);
        let caption = caption.map(str::trim).filter(|c| !c.is_empty());
        let stored = StoredMessage {
            media: Some(MessageMedia::new(
                kind,
                file.clone(),
                &MediaDetails::default(),
            )),
            caption: caption.map(str::to_owned),
            caption_entities: caption
                .and_then(json::command_entity)
                .map(|e| Value::Array(vec![e])),
            ..StoredMessage::default()
        };
        (self.inject(token, chat, from, stored), file)
    }

    /// Queues a message from `from` in `chat` (a `channel_post` in a
    /// channel, without `from`) and keeps it for the bot.
    fn inject(&mut self, token: &str, chat: &Chat, from: &User, mut stored: StoredMessage) -> u32 {
        self.remember_chat(chat);
        let is_channel = chat.kind == crate::model::ChatKind::Channel;
        if !is_channel {
            self.remember_user(from);
        }
        let bot = self.bot_mut(token);
        let message_id = bot.next_message_id(chat.id);
        stored.by_bot = false;
        stored.from = (!is_channel).then(|| from.clone());
        stored.date = json::unix_now();
        let message = stored.to_json(message_id, chat);
        bot.messages.insert((chat.id, message_id), stored);
        let mut update = Map::new();
        let kind = if is_channel {
            "channel_post"
        } else {
            "message"
        };
        update.insert(kind.into(), message);
        bot.enqueue(update)
    }

    /// A new `media_group_id`.
    pub fn next_media_group_id(&mut self) -> String {
        self.next_media_group_id += 1;
        (13_000_000_000_000_000 + self.next_media_group_id).to_string()
    }

    /// Queues a callback query pressed by `from` on message `message_id`
    /// in `chat`.
    pub fn inject_callback_query(
        &mut self,
        token: &str,
        chat: &Chat,
        from: &User,
        message_id: i32,
        data: &str,
    ) -> u32 {
        self.remember_chat(chat);
        self.remember_user(from);
        self.next_callback_id += 1;
        let serial = self.next_callback_id;
        let bot = self.bot_mut(token);
        let message = match bot.messages.get(&(chat.id, message_id)) {
            Some(m) => m.to_json(message_id, chat),
            None => json::text_message(TextMessage {
                message_id,
                from: Some(&bot.user),
                chat,
                date: json::unix_now(),
                text: "(message)",
                entities: None,
                reply_markup: None,
            }),
        };
        let id = format!("{}{:010}", bot.info.id, serial);
        bot.callback_ids.insert(id.clone());
        let mut update = Map::new();
        update.insert(
            "callback_query".into(),
            json!({
                "id": id,
                "from": json::user(from),
                "message": message,
                "chat_instance": chat_instance(chat.id),
                "data": data,
            }),
        );
        bot.enqueue(update)
    }

    /// Queues a `my_chat_member` update: the bot's status in `chat` changed
    /// from `old` to `new` by `from`; also records the new status.
    pub fn inject_my_chat_member(
        &mut self,
        token: &str,
        chat: &Chat,
        from: &User,
        old: MemberStatus,
        new: MemberStatus,
    ) -> u32 {
        self.remember_chat(chat);
        self.remember_user(from);
        let bot = self.bot_mut(token);
        let bot_id = bot.info.id;
        let mut update = Map::new();
        update.insert(
            "my_chat_member".into(),
            json!({
                "chat": json::chat(chat),
                "from": json::user(from),
                "date": json::unix_now(),
                "old_chat_member": json::chat_member(&bot.user, old),
                "new_chat_member": json::chat_member(&bot.user, new),
            }),
        );
        let id = bot.enqueue(update);
        self.members.insert((chat.id, bot_id), new);
        id
    }
}

/// A stable opaque `chat_instance` for a chat.
fn chat_instance(chat_id: i64) -> String {
    // A fixed odd multiplier scrambles the id; the result is only an identifier.
    let x = (chat_id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 1).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bot() -> BotState {
        BotState::new(BotInfo {
            id: 1,
            token: "1:x".into(),
            username: "b".into(),
            first_name: "b".into(),
        })
    }

    fn msg() -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("message".into(), json!({}));
        m
    }

    #[test]
    fn offsets_confirm_lower_ids() {
        let mut b = bot();
        for _ in 0..5 {
            b.enqueue(msg());
        }
        b.confirm(3);
        assert_eq!(b.queue.iter().map(|u| u.id).collect::<Vec<_>>(), [3, 4, 5]);
        b.confirm(-1);
        assert_eq!(b.queue.iter().map(|u| u.id).collect::<Vec<_>>(), [5]);
        // An offset in the future confirms nothing.
        b.confirm(1000);
        assert_eq!(b.queue.len(), 1);
    }

    #[test]
    fn default_allowed_excludes_opt_in_types() {
        assert!(update_allowed("message", None));
        assert!(!update_allowed("chat_member", None));
        assert!(!update_allowed("chat_member", Some(&[])));
        assert!(update_allowed(
            "chat_member",
            Some(&["chat_member".to_owned()])
        ));
        assert!(!update_allowed(
            "message",
            Some(&["callback_query".to_owned()])
        ));
    }
}
