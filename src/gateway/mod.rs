//! The gateway: a Bot API server on the loopback interface through which
//! process bots (a python-telegram-bot, aiogram, grammY or teloxide program
//! run as a child) reach Telegram, getting what botvisor gives its own
//! bots. It is never on the status listener, which may be public.
//!
//! Each process bot has a [`Gate`]: a local token (`<bot id>:<35 random
//! characters>`, new at every start, the only token the child sees), the
//! bot's real handle for forwarding, and its [`updates::Feed`]. A request
//! is answered as Telegram would (`server.rs`), by its method's class
//! (`methods.rs`): `getUpdates` from the bot's durable inbox, sends through
//! its paced outbox (answered with Telegram's answer once delivered),
//! `getMe`/`getWebhookInfo`/`deleteWebhook` here, `setWebhook`/`logOut`/
//! `close` refused, everything else forwarded with the real token. A
//! session attaches its outbox's sink ([`Link`]) while it runs; a request
//! that needs one waits for it.

pub mod methods;
pub mod request;
mod server;
pub mod updates;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::GatewaySettings;
use crate::outbox::Sink;
use crate::secret::{Redactor, Token};
use crate::status::ProcessFigures;
use crate::telegram::BotHandle;
use updates::Feed;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[error("the gateway cannot listen on {addr}: {source}")]
pub struct GatewayError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// The process bots' gateway of this botvisor.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("addr", &self.shared.addr)
            .finish_non_exhaustive()
    }
}

struct Shared {
    addr: SocketAddr,
    /// Where each bot's uploads wait, in a folder of its own.
    spool: PathBuf,
    /// By local token.
    gates: RwLock<HashMap<String, Arc<Gate>>>,
    /// Shutting down: long polls answer at once.
    stopping: AtomicBool,
}

impl Gateway {
    /// Binds `settings.listen` (a loopback address) and serves until
    /// `stop` is cancelled.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn start(
        settings: &GatewaySettings,
        spool: PathBuf,
        stop: CancellationToken,
    ) -> Result<Gateway, GatewayError> {
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .map_err(|source| GatewayError {
                addr: settings.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| GatewayError {
            addr: settings.listen,
            source,
        })?;
        let gateway = Gateway {
            shared: Arc::new(Shared {
                addr,
                spool,
                gates: RwLock::default(),
                stopping: AtomicBool::new(false),
            }),
        };
        info!(url = %gateway.url(), "the Bot API gateway for process bots is listening");
        tokio::spawn(server::serve(listener, gateway.clone(), stop));
        Ok(gateway)
    }

    /// The gateway's root, as process bots get it in `BOT_API_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// Opens a gate for bot `name` (real handle `bot`, numeric id
    /// `bot_id`) with a new local token, until [`Gateway::close`].
    pub fn open(
        &self,
        name: &str,
        bot: BotHandle,
        bot_id: &str,
        figures: Arc<ProcessFigures>,
    ) -> Arc<Gate> {
        let token = Token::new(format!("{bot_id}:{}", local_secret()));
        Redactor::global().learn(&token);
        let gate = Arc::new(Gate {
            name: name.to_owned(),
            token: token.clone(),
            bot,
            spool: self.shared.spool.join(name),
            feed: Mutex::default(),
            changed: Notify::new(),
            link: watch::Sender::new(None),
            me: Mutex::default(),
            allowed: watch::Sender::new(None),
            figures,
            stopping: AtomicBool::new(false),
        });
        write(&self.shared.gates).insert(token.expose().to_owned(), gate.clone());
        gate
    }

    /// Closes `gate`: its token is unknown from now on, and its waiting
    /// polls answer.
    pub fn close(&self, gate: &Gate) {
        write(&self.shared.gates).remove(gate.token.expose());
        gate.stopping.store(true, Ordering::SeqCst);
        gate.changed.notify_waiters();
    }

    /// Shutting down: every long poll answers now, and new ones at once.
    pub fn stop(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for gate in read(&self.shared.gates).values() {
            gate.changed.notify_waiters();
        }
    }

    fn gate(&self, token: &str) -> Option<Arc<Gate>> {
        read(&self.shared.gates).get(token).cloned()
    }

    fn stopping(&self) -> bool {
        self.shared.stopping.load(Ordering::SeqCst)
    }
}

/// 35 characters of `[A-Za-z0-9_-]`, as the secret part of a real token.
fn local_secret() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    (0..35)
        .map(|_| char::from(CHARS[rand::random_range(0..CHARS.len())]))
        .collect()
}

/// What a running session lends the gate.
#[derive(Clone, Debug)]
pub struct Link {
    /// The session's outbox: sends go in, confirmed updates leave the inbox.
    pub sink: Sink,
}

/// One process bot's side of the gateway.
pub struct Gate {
    name: String,
    /// The local token the child holds.
    token: Token,
    /// The real bot, for forwarded calls and downloads.
    bot: BotHandle,
    spool: PathBuf,
    feed: Mutex<Feed>,
    /// New updates offered, a newer poll, or a stop.
    changed: Notify,
    link: watch::Sender<Option<Link>>,
    /// `getMe`'s answer, as the session got it.
    me: Mutex<Option<Arc<[u8]>>>,
    /// The child's `allowed_updates`, once it gave one.
    allowed: watch::Sender<Option<Vec<String>>>,
    figures: Arc<ProcessFigures>,
    stopping: AtomicBool,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("bot", &self.name)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// The local token, for the child's `BOT_TOKEN` only.
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// Where this bot's uploads wait.
    pub fn spool(&self) -> &std::path::Path {
        &self.spool
    }

    /// The figures the gate keeps.
    pub fn figures(&self) -> &Arc<ProcessFigures> {
        &self.figures
    }

    /// A session starts: it lends its sink, its inbox is offered anew
    /// (through [`Gate::offer`]), and `getMe` is answered with `me`.
    pub fn attach(&self, link: Link, me: Arc<[u8]>) {
        *lock(&self.me) = Some(me);
        lock(&self.feed).restart();
        self.link.send_replace(Some(link));
        self.changed.notify_waiters();
    }

    /// The session ended: confirmations wait for the next one.
    pub fn detach(&self) {
        self.link.send_replace(None);
    }

    /// Offers updates stored in the inbox; those confirmed while no session
    /// ran leave the inbox now.
    pub fn offer(&self, updates: impl IntoIterator<Item = (u32, Arc<str>)>) {
        let mut gone = Vec::new();
        let mut offered = 0u64;
        {
            let mut feed = lock(&self.feed);
            for (id, raw) in updates {
                if feed.offer(id, raw) {
                    offered += 1;
                } else {
                    gone.push(id);
                }
            }
            self.figures.set_waiting(feed.len());
        }
        self.figures.add_offered(offered);
        if !gone.is_empty() {
            self.confirmed(gone);
        }
        self.changed.notify_waiters();
    }

    /// The session's inbox is all offered: confirmations that matched none
    /// of it are gone already.
    pub fn resumed(&self) {
        lock(&self.feed).forget_pending();
    }

    /// The child's `allowed_updates`, as it changes.
    pub fn allowed_updates(&self) -> watch::Receiver<Option<Vec<String>>> {
        self.allowed.subscribe()
    }

    /// Updates the child confirmed: out of the inbox through the session's
    /// sink, or when the next session starts.
    fn confirmed(&self, ids: Vec<u32>) {
        if ids.is_empty() {
            return;
        }
        self.figures.add_confirmed(ids.len() as u64);
        let link = self.link.borrow().clone();
        match link {
            Some(link) => {
                for id in ids {
                    link.sink.handled(id, Vec::new());
                }
            }
            None => lock(&self.feed).hold(&ids),
        }
    }

    /// Sets what the child asked for in `allowed_updates`.
    fn set_allowed(&self, allowed: Vec<String>) {
        self.allowed.send_if_modified(|current| {
            if current.as_ref() == Some(&allowed) {
                return false;
            }
            *current = Some(allowed);
            true
        });
    }

    /// The child asked for updates now.
    fn polled(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        if self.figures.set_polled(now) {
            info!("the program asks the gateway for updates");
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

/// Removes a bot's spooled files that no queued message refers to: what a
/// crash left between spooling and queueing. Run when its worker starts,
/// before any request can spool.
pub fn sweep_spool(spool: &std::path::Path, keep: &std::collections::HashSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(spool) else {
        return;
    };
    let mut removed = 0usize;
    for entry in entries.flatten() {
        let path = entry.path();
        if !keep.contains(&path) && std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        warn!(removed, "removed uploads a crash left in the spool folder");
    }
}
