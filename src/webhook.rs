//! Webhook delivery: Telegram POSTs each update of a `delivery = "webhook"`
//! bot to `<public_url>/telegram/<bot name>` on the status endpoint's
//! listener, with the secret botvisor gave it in `setWebhook`.
//!
//! [`Webhooks`] is the meeting point of the HTTP side and the workers. A
//! worker registers its bot's secret for as long as it runs, and a session
//! that holds the bot's lease attaches a bounded channel. A request is
//! answered:
//! - 401 when its `X-Telegram-Bot-Api-Secret-Token` header is missing or
//!   wrong (not handled; logged once a minute per bot at most, never its
//!   body);
//! - 200 once the update is stored in the bot's inbox (the session's
//!   committer answers), so Telegram's retry after a crash finds it stored
//!   and it is handled once;
//! - 503 while botvisor is shutting down, while no session here holds the
//!   bot (starting, standby, backing off), and when the bot's channel is
//!   full: Telegram tries again later.
//!
//! The secret is derived from the bot's token (SHA-256 of a label and the
//! token, as 64 hex digits), so operators configure nothing more and it is
//! never written anywhere; it never appears in a log line.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::config::Environment;
use crate::secret::Token;
use crate::store::{InboxRow, Store};
use crate::telegram::polling::{Delivered, Reading};

/// The header Telegram sends the secret in.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";
/// The largest request body read: one update (a 4096-character message with
/// its entities and the message it replies to is a few dozen KB).
pub const BODY_CAP: usize = 1 << 20;
/// Updates waiting for a session to take them, per bot; past it Telegram is
/// told to come back (503).
const QUEUE: usize = 256;
/// The least time between two lines about refused requests, per bot.
const REFUSED_LOG_EVERY: Duration = Duration::from_secs(60);

/// The secret botvisor gives Telegram for one bot.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// The bot's secret, derived from its token.
    pub fn of(token: &Token) -> Secret {
        let mut hash = Sha256::new();
        hash.update(b"botvisor webhook secret\0");
        hash.update(token.expose().as_bytes());
        let digest = hash.finalize();
        let mut hex = String::with_capacity(64);
        for byte in digest {
            hex.push_str(&format!("{byte:02x}"));
        }
        Secret(hex)
    }

    /// The text for `setWebhook`.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares in time independent of where `given` differs.
    fn matches(&self, given: &[u8]) -> bool {
        let ours = self.0.as_bytes();
        if ours.len() != given.len() {
            return false;
        }
        ours.iter()
            .zip(given)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// The URL Telegram calls for bot `name`: `public_url` with each `$VAR`
/// taken from the environment, then `/telegram/<name>`.
///
/// # Errors
/// A variable that is not set, or a URL that Telegram would not call.
pub fn url_for(public_url: &str, name: &str, env: &Environment) -> Result<String, String> {
    let base = expand(public_url, env)?;
    if let Some(problem) = crate::config::public_url_problem(&base) {
        return Err(format!(
            "[supervisor.webhook] public_url = \"{public_url}\" {problem}"
        ));
    }
    Ok(format!("{}/telegram/{name}", base.trim_end_matches('/')))
}

/// `text` with every `$NAME` replaced by that variable's value.
fn expand(text: &str, env: &Environment) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let len = after
            .char_indices()
            .find(|(i, c)| {
                !(c.is_ascii_alphanumeric() || *c == '_') || (*i == 0 && c.is_ascii_digit())
            })
            .map_or(after.len(), |(i, _)| i);
        if len == 0 {
            out.push('$');
            rest = after;
            continue;
        }
        let name = &after[..len];
        let value = env.var(name).ok_or_else(|| {
            format!(
                "[supervisor.webhook] public_url = \"{text}\" needs the {name} variable, which is not set"
            )
        })?;
        out.push_str(value.trim());
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Where a webhook bot's updates arrive, as its worker tells Telegram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `<public_url>/telegram/<bot name>`.
    pub url: String,
    /// Requests Telegram may have in flight.
    pub max_connections: u32,
}

/// One request's update, handed to the session that holds the bot.
pub struct Incoming {
    /// The body as Telegram sent it.
    pub body: String,
    /// Answered once the update is stored (or known already): `true` for
    /// 200, `false` for 503.
    pub ack: oneshot::Sender<bool>,
}

/// What the HTTP side answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 200: stored, Telegram may forget it.
    Stored,
    /// 401: the secret is missing or wrong.
    Refused,
    /// 404: no such webhook bot.
    Unknown,
    /// 503: not now; Telegram tries again later.
    Unavailable,
}

/// The webhook bots of this process.
#[derive(Clone, Default)]
pub struct Webhooks {
    shared: Arc<Shared>,
}

impl fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhooks").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Shared {
    bots: Mutex<HashMap<String, Slot>>,
    stopping: AtomicBool,
    scan: Mutex<Scan>,
}

/// The one scan of the store for updates other instances stored, for
/// every webhook session here: one query a second whatever the number of
/// bots, and a bot's session reads its own inbox only when the scan found
/// rows for it.
#[derive(Default)]
struct Scan {
    store: Option<Store>,
    /// By the bot's Telegram id: its session's wake-up.
    sessions: HashMap<String, Arc<tokio::sync::Notify>>,
    running: bool,
}

/// How often the shared scan looks for updates other instances stored.
pub const SCAN_EVERY: Duration = Duration::from_secs(1);

/// A webhook session's place in the shared scan; leaving it is dropping it.
pub struct ScanTicket {
    shared: Arc<Shared>,
    bot_id: String,
    wake: Arc<tokio::sync::Notify>,
}

impl ScanTicket {
    /// Resolves when the store holds updates for this bot (or the scan
    /// failed, so that the session reads, fails and says why).
    pub async fn found(&self) {
        self.wake.notified().await;
    }
}

impl Drop for ScanTicket {
    fn drop(&mut self) {
        let mut scan = lock(&self.shared.scan);
        if scan
            .sessions
            .get(&self.bot_id)
            .is_some_and(|wake| Arc::ptr_eq(wake, &self.wake))
        {
            scan.sessions.remove(&self.bot_id);
        }
    }
}

/// The scan's loop: ends when no session is left in it.
async fn scan_loop(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(SCAN_EVERY).await;
        let store = {
            let mut scan = lock(&shared.scan);
            if scan.sessions.is_empty() {
                scan.running = false;
                return;
            }
            scan.store.clone()
        };
        let Some(store) = store else { continue };
        let found = store.bots_with_inbox().await;
        let scan = lock(&shared.scan);
        match found {
            Ok(bots) => {
                for bot_id in bots {
                    if let Some(wake) = scan.sessions.get(&bot_id) {
                        wake.notify_one();
                    }
                }
            }
            // Every session reads its own inbox, and ends as a store
            // outage if that fails too.
            Err(_) => scan.sessions.values().for_each(|wake| wake.notify_one()),
        }
    }
}

struct Slot {
    secret: Secret,
    session: Option<mpsc::Sender<Incoming>>,
    /// Where a request goes when no session here takes it: the shared
    /// store's inbox, by the bot's Telegram id.
    store: Option<(Store, String)>,
    refused: u64,
    refused_logged: Option<Instant>,
    last_request: Option<SystemTime>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Webhooks {
    /// Bot `name` takes webhook requests with `secret` (until
    /// [`Webhooks::unregister`]); 503 until a session attaches.
    pub fn register(&self, name: &str, secret: Secret) {
        lock(&self.shared.bots).insert(
            name.to_owned(),
            Slot {
                secret,
                session: None,
                store: None,
                refused: 0,
                refused_logged: None,
                last_request: None,
            },
        );
    }

    pub fn unregister(&self, name: &str) {
        lock(&self.shared.bots).remove(name);
    }

    /// Requests for bot `name` that no session here takes go to `store`'s
    /// inbox for bot `bot_id` (another instance may hold the bot).
    pub fn store_in(&self, name: &str, store: Store, bot_id: String) {
        if let Some(slot) = lock(&self.shared.bots).get_mut(name) {
            slot.store = Some((store, bot_id));
        }
    }

    /// A webhook session of bot `bot_id` is told when `store` holds updates
    /// for it (stored by other instances), until the ticket is dropped.
    pub fn scan_for(&self, store: Store, bot_id: &str) -> ScanTicket {
        let wake = Arc::new(tokio::sync::Notify::new());
        let mut scan = lock(&self.shared.scan);
        scan.sessions.insert(bot_id.to_owned(), wake.clone());
        scan.store.get_or_insert(store);
        if !scan.running {
            scan.running = true;
            tokio::spawn(scan_loop(self.shared.clone()));
        }
        ScanTicket {
            shared: self.shared.clone(),
            bot_id: bot_id.to_owned(),
            wake,
        }
    }

    /// A session of bot `name` takes its requests from now on.
    pub fn attach(&self, name: &str) -> Option<mpsc::Receiver<Incoming>> {
        let mut bots = lock(&self.shared.bots);
        let slot = bots.get_mut(name)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        slot.session = Some(tx);
        Some(rx)
    }

    /// The session ended: requests get 503 until the next one attaches.
    pub fn detach(&self, name: &str) {
        if let Some(slot) = lock(&self.shared.bots).get_mut(name) {
            slot.session = None;
        }
    }

    /// botvisor is shutting down: every request gets 503 from now on.
    pub fn stop(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
    }

    /// When bot `name` last received a request with the right secret.
    pub fn last_request(&self, name: &str) -> Option<SystemTime> {
        lock(&self.shared.bots)
            .get(name)
            .and_then(|slot| slot.last_request)
    }

    /// One request for bot `name`: checks the secret, hands the body to the
    /// session, and waits until it is stored.
    pub async fn deliver(&self, name: &str, secret: Option<&[u8]>, body: String) -> Answer {
        if self.shared.stopping.load(Ordering::SeqCst) {
            return Answer::Unavailable;
        }
        let (ack, stored) = oneshot::channel();
        let elsewhere = {
            let mut bots = lock(&self.shared.bots);
            let Some(slot) = bots.get_mut(name) else {
                return Answer::Unknown;
            };
            if !secret.is_some_and(|given| slot.secret.matches(given)) {
                slot.refused += 1;
                let now = Instant::now();
                if slot
                    .refused_logged
                    .is_none_or(|at| now.duration_since(at) >= REFUSED_LOG_EVERY)
                {
                    warn!(
                        bot = name,
                        refused = slot.refused,
                        "refused {} webhook request(s) without the right secret token header",
                        slot.refused
                    );
                    slot.refused = 0;
                    slot.refused_logged = Some(now);
                }
                return Answer::Refused;
            }
            slot.last_request = Some(SystemTime::now());
            match (&slot.session, &slot.store) {
                (Some(session), _) => {
                    if session.try_send(Incoming { body, ack }).is_err() {
                        return Answer::Unavailable;
                    }
                    None
                }
                (None, Some((store, bot_id))) => Some((store.clone(), bot_id.clone(), body)),
                (None, None) => return Answer::Unavailable,
            }
        };
        if let Some((store, bot_id, body)) = elsewhere {
            return store_elsewhere(&store, &bot_id, body).await;
        }
        match stored.await {
            Ok(true) => Answer::Stored,
            _ => Answer::Unavailable,
        }
    }
}

/// Stores a request's update straight into the shared inbox: 200 once
/// stored (or when it is no update: Telegram would repeat it for a day).
async fn store_elsewhere(store: &Store, bot_id: &str, body: String) -> Answer {
    // Only the id is needed here: the session that takes it reads the rest.
    let Some(delivered) = Delivered::read(&body, Reading::IdOnly) else {
        warn!("skipping a webhook update that cannot be read");
        return Answer::Stored;
    };
    let row = InboxRow {
        update_id: delivered.id(),
        body,
    };
    match store.receive_elsewhere(bot_id, &row).await {
        Ok(()) => Answer::Stored,
        Err(err) => {
            warn!(error = %err, "could not store a webhook update; Telegram will send it again");
            Answer::Unavailable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Environment {
        Environment::isolated(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
    }

    #[test]
    fn urls_take_their_variables_and_must_be_https() {
        let e = env(&[("APP", "botvisor-btu")]);
        assert_eq!(
            url_for("https://$APP.herokuapp.com", "tanitim", &e).as_deref(),
            Ok("https://botvisor-btu.herokuapp.com/telegram/tanitim")
        );
        assert_eq!(
            url_for("http://127.0.0.1:8080/", "a", &e).as_deref(),
            Ok("http://127.0.0.1:8080/telegram/a")
        );
        let err = url_for("https://$NOPE.herokuapp.com", "a", &e).unwrap_err();
        assert!(err.contains("NOPE variable, which is not set"), "{err}");
        let err = url_for("http://example.org", "a", &e).unwrap_err();
        assert!(err.contains("must be https"), "{err}");
    }

    #[test]
    fn secrets_are_telegram_shaped_stable_and_per_token() {
        let token = |s: &str| Token::new(format!("{}:{s}", 12345));
        let a = Secret::of(&token("first-secret-part"));
        let b = Secret::of(&token("other-secret-part"));
        assert_eq!(a, Secret::of(&token("first-secret-part")));
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 64);
        assert!(a.expose().chars().all(|c| c.is_ascii_hexdigit()));
        assert!(!a.expose().contains("first-secret-part"));
        assert!(a.matches(a.expose().as_bytes()));
        assert!(!a.matches(b.expose().as_bytes()));
        assert!(!a.matches(b""));
        assert_eq!(format!("{a:?}"), "Secret(…)");
    }

    #[tokio::test]
    async fn requests_are_refused_held_or_stored() {
        let hooks = Webhooks::default();
        let secret = Secret::of(&Token::new(format!("{}:{}", 1, "abc")));
        assert_eq!(
            hooks.deliver("a", Some(b"x"), "{}".into()).await,
            Answer::Unknown
        );
        hooks.register("a", secret.clone());
        assert_eq!(
            hooks.deliver("a", Some(b"wrong"), "{}".into()).await,
            Answer::Refused
        );
        assert_eq!(hooks.deliver("a", None, "{}".into()).await, Answer::Refused);
        let good = Some(secret.expose().as_bytes());
        assert_eq!(
            hooks.deliver("a", good, "{}".into()).await,
            Answer::Unavailable,
            "no session yet"
        );
        let mut rx = hooks.attach("a").expect("registered");
        let session = tokio::spawn(async move {
            let incoming = rx.recv().await.expect("a request");
            let _ = incoming.ack.send(true);
        });
        assert_eq!(hooks.deliver("a", good, "{}".into()).await, Answer::Stored);
        session.await.expect("the session");
        hooks.stop();
        assert_eq!(
            hooks.deliver("a", good, "{}".into()).await,
            Answer::Unavailable
        );
    }
}
