//! Leases on PostgreSQL, shared by a fleet of instances (issue 22).
//!
//! A lease is a row of `bot_leases`: the bot, its holder (an instance id),
//! a generation that only grows (each take adds one) and an expiry on the
//! database's clock. The holder renews its leases well before they expire;
//! another instance takes a bot only once its row is free or expired
//! (`FOR UPDATE SKIP LOCKED`, so a take never waits for a holder's
//! commit). Every instance writes a heartbeat row to `fleet_instances`.
//!
//! Fencing has two halves. Locally, a lease counts as held only until its
//! last renewal was sent plus four fifths of the TTL, measured on this
//! process's monotonic clock, which runs on while the process is paused
//! (SIGSTOP, a frozen VM): a woken instance sees at once that the lease is
//! no longer valid, before any send. In the store, every commit for a bot
//! checks (`FOR SHARE`, in the same transaction) that the row still names
//! this instance and this generation, so nothing is stored for a bot that
//! another instance holds now.
//!
//! Which bots an instance may take is decided above the store (the fleet's
//! plan, `crate::fleet`): it tells this book which bots it wants and which
//! it should hand over.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};
use tokio::sync::watch;
use tracing::{info, warn};

use super::{StoreError, pg_options};

/// The database's clock, in Unix milliseconds.
const NOW_MS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";
/// How long one lease query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Heartbeat rows unseen this many TTLs are deleted.
const FORGET_AFTER_TTLS: u32 = 30;

/// This instance, as the fleet sees it.
#[derive(Clone, Debug)]
pub struct InstanceInfo {
    /// Unique per start: the host, the process id and a random part.
    pub id: String,
    pub host: String,
    /// Unix milliseconds.
    pub started_at: i64,
    pub weight: u32,
}

/// An instance's heartbeat row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceRow {
    pub id: String,
    pub host: String,
    pub started_at: i64,
    pub weight: u32,
    /// Milliseconds since its last heartbeat, on the database's clock.
    pub silent_ms: i64,
}

/// A bot's lease row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRow {
    pub bot_id: String,
    /// `None` once released.
    pub holder: Option<String>,
    pub generation: i64,
    /// Milliseconds until it expires (negative: expired).
    pub expires_in_ms: i64,
    /// Milliseconds since it was taken.
    pub age_ms: i64,
}

impl LeaseRow {
    /// Its holder, while the lease has not expired.
    pub fn live_holder(&self) -> Option<&str> {
        self.holder.as_deref().filter(|_| self.expires_in_ms > 0)
    }
}

/// The fleet as the store holds it at one moment.
#[derive(Clone, Debug, Default)]
pub struct FleetView {
    pub instances: Vec<InstanceRow>,
    pub leases: Vec<LeaseRow>,
}

impl FleetView {
    /// The instances heard from within `ttl`.
    pub fn alive(&self, ttl: Duration) -> impl Iterator<Item = &InstanceRow> {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self.instances.iter().filter(move |i| i.silent_ms < ttl_ms)
    }
}

/// A lease this instance holds.
#[derive(Clone, Debug)]
struct Held {
    generation: i64,
    /// When it was taken: a renewal sent before cannot have seen it.
    taken: Instant,
    /// Past this the lease is not used, renewed or not.
    valid_until: Instant,
    /// The fleet asked for it to be handed over.
    handover: bool,
}

/// What this instance holds and wants.
#[derive(Default)]
struct Book {
    /// The bots the plan gives this instance; `None` before the first plan
    /// (nothing is taken until the fleet has been looked at).
    wanted: Option<HashSet<String>>,
    held: HashMap<String, Held>,
    /// The last view of the fleet, for `/status`.
    view: Option<(Instant, FleetView)>,
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct FleetCounters {
    pub handovers: AtomicU64,
    pub fencing_refusals: AtomicU64,
    pub takes: AtomicU64,
}

/// The PostgreSQL leases of this process.
pub struct PgLeases {
    pool: PgPool,
    me: InstanceInfo,
    ttl: Duration,
    book: std::sync::Mutex<Book>,
    /// Bumped whenever the wanted bots change, so standby workers look at
    /// once rather than at their next retry.
    wanted_changed: watch::Sender<u64>,
    pub counters: FleetCounters,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl PgLeases {
    /// The leases of instance `me` on the database at `url` (connected
    /// lazily, on a small pool of their own so that renewals never queue
    /// behind the bots' writes).
    ///
    /// # Errors
    /// When the URL cannot be parsed.
    pub fn new(url: &str, me: InstanceInfo, ttl: Duration) -> Result<PgLeases, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(QUERY_TIMEOUT)
            .connect_lazy_with(pg_options(url)?);
        Ok(PgLeases {
            pool,
            me,
            ttl,
            book: std::sync::Mutex::new(Book::default()),
            wanted_changed: watch::channel(0).0,
            counters: FleetCounters::default(),
        })
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn me(&self) -> &InstanceInfo {
        &self.me
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How long a lease stays usable after its renewal was sent.
    fn validity(&self) -> Duration {
        self.ttl.mul_f64(0.8)
    }

    async fn timed<T>(
        &self,
        what: &str,
        query: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(QUERY_TIMEOUT, query).await {
            Ok(result) => result.map_err(StoreError::from),
            Err(_) => Err(StoreError::Query(format!("timed out {what}"))),
        }
    }

    /// Writes this instance's heartbeat row and forgets instances long gone.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn heartbeat(&self) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO fleet_instances (instance_id, host, started_at, weight, seen_at) \
             VALUES ($1, $2, $3, $4, {NOW_MS}) ON CONFLICT (instance_id) DO UPDATE \
             SET seen_at = excluded.seen_at, weight = excluded.weight"
        );
        self.timed(
            "writing the heartbeat",
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&self.me.id)
                .bind(&self.me.host)
                .bind(self.me.started_at)
                .bind(i64::from(self.me.weight))
                .execute(&self.pool),
        )
        .await?;
        let sql = format!("DELETE FROM fleet_instances WHERE seen_at < {NOW_MS} - $1");
        self.timed(
            "forgetting old instances",
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(millis(self.ttl * FORGET_AFTER_TTLS))
                .execute(&self.pool),
        )
        .await?;
        Ok(())
    }

    /// Deletes this instance's heartbeat row: the others stop counting it
    /// at once (a shutdown), and take its bots as it releases them.
    pub async fn leave(&self) {
        let left = self
            .timed(
                "leaving the fleet",
                sqlx::query("DELETE FROM fleet_instances WHERE instance_id = $1")
                    .bind(&self.me.id)
                    .execute(&self.pool),
            )
            .await;
        if let Err(err) = left {
            warn!(error = %err, "could not leave the fleet; the others notice within the lease TTL");
        }
    }

    /// Renews every lease this instance holds. A lease the store no longer
    /// gives this instance (expired and taken) is lost here at once.
    ///
    /// # Errors
    /// When the store fails; the leases then lapse at their validity.
    pub async fn renew(&self) -> Result<(), StoreError> {
        // Only the leases in the book, at their generation: a row left
        // ours by a failed release, or one whose lease a session gave up,
        // must expire, not live on unused.
        let (bots, generations): (Vec<String>, Vec<i64>) = self
            .book()
            .held
            .iter()
            .map(|(bot, held)| (bot.clone(), held.generation))
            .unzip();
        if bots.is_empty() {
            return Ok(());
        }
        let sent = Instant::now();
        let sql = format!(
            "UPDATE bot_leases SET expires_at = {NOW_MS} + $2 \
             FROM UNNEST($3::TEXT[], $4::BIGINT[]) AS mine(bot_id, generation) \
             WHERE bot_leases.holder = $1 AND bot_leases.bot_id = mine.bot_id \
             AND bot_leases.generation = mine.generation AND bot_leases.expires_at > {NOW_MS} \
             RETURNING bot_leases.bot_id, bot_leases.generation"
        );
        let rows = self
            .timed(
                "renewing the leases",
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&self.me.id)
                    .bind(millis(self.ttl))
                    .bind(&bots)
                    .bind(&generations)
                    .fetch_all(&self.pool),
            )
            .await?;
        let mut renewed: HashMap<String, i64> = HashMap::with_capacity(rows.len());
        for row in rows {
            renewed.insert(row.try_get(0)?, row.try_get(1)?);
        }
        let valid_until = sent + self.validity();
        let mut book = self.book();
        for (bot, held) in &mut book.held {
            if renewed.get(bot) == Some(&held.generation) {
                held.valid_until = held.valid_until.max(valid_until);
            } else if held.taken >= sent {
                // Taken while the renewal was on its way: not in its view.
            } else if held.valid_until > sent {
                warn!(
                    bot_id = %bot,
                    generation = held.generation,
                    "lost the lease: the store no longer gives this bot to this instance"
                );
                held.valid_until = sent;
            }
        }
        Ok(())
    }

    /// Reads the fleet: every heartbeat and every lease.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn view(&self) -> Result<FleetView, StoreError> {
        let sql = format!(
            "SELECT instance_id, host, started_at, weight, {NOW_MS} - seen_at FROM fleet_instances \
             ORDER BY instance_id"
        );
        let rows = self
            .timed(
                "reading the fleet",
                sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool),
            )
            .await?;
        let mut instances = Vec::with_capacity(rows.len());
        for row in rows {
            instances.push(InstanceRow {
                id: row.try_get(0)?,
                host: row.try_get(1)?,
                started_at: row.try_get(2)?,
                weight: u32::try_from(row.try_get::<i64, _>(3)?).unwrap_or(0),
                silent_ms: row.try_get(4)?,
            });
        }
        let sql = format!(
            "SELECT bot_id, holder, generation, expires_at - {NOW_MS}, {NOW_MS} - taken_at \
             FROM bot_leases ORDER BY bot_id"
        );
        let rows = self
            .timed(
                "reading the leases",
                sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool),
            )
            .await?;
        let mut leases = Vec::with_capacity(rows.len());
        for row in rows {
            leases.push(LeaseRow {
                bot_id: row.try_get(0)?,
                holder: row.try_get(1)?,
                generation: row.try_get(2)?,
                expires_in_ms: row.try_get(3)?,
                age_ms: row.try_get(4)?,
            });
        }
        let view = FleetView { instances, leases };
        self.book().view = Some((Instant::now(), view.clone()));
        Ok(view)
    }

    /// The last view read, and how old it is.
    pub fn last_view(&self) -> Option<(Duration, FleetView)> {
        self.book()
            .view
            .as_ref()
            .map(|(at, view)| (at.elapsed(), view.clone()))
    }

    /// Acts on the fleet's plan: the bots this instance should hold, and
    /// those it holds that it should hand over.
    pub fn set_plan(&self, wanted: HashSet<String>, release: &[String]) {
        let mut book = self.book();
        let changed = book.wanted.as_ref() != Some(&wanted);
        for bot in release {
            if let Some(held) = book.held.get_mut(bot)
                && !held.handover
            {
                held.handover = true;
                info!(bot_id = %bot, generation = held.generation, "handing the bot over to another instance");
            }
        }
        book.wanted = Some(wanted);
        drop(book);
        if changed {
            self.wanted_changed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Changes whenever the wanted bots change.
    pub fn wanted_changed(&self) -> watch::Receiver<u64> {
        self.wanted_changed.subscribe()
    }

    /// How many bots this instance holds (valid leases).
    pub fn held_count(&self) -> usize {
        let now = Instant::now();
        self.book()
            .held
            .values()
            .filter(|h| h.valid_until > now)
            .count()
    }

    /// Takes the lease of `bot_id` if the plan gives it to this instance and
    /// the store has it free (never taken, released, or expired).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn try_take(&self, bot_id: &str) -> Result<Option<i64>, StoreError> {
        if !self
            .book()
            .wanted
            .as_ref()
            .is_some_and(|wanted| wanted.contains(bot_id))
        {
            return Ok(None);
        }
        let sent = Instant::now();
        let ttl = millis(self.ttl);
        let insert = format!(
            "INSERT INTO bot_leases (bot_id, holder, generation, expires_at, taken_at) \
             VALUES ($1, $2, 1, {NOW_MS} + $3, {NOW_MS}) ON CONFLICT (bot_id) DO NOTHING \
             RETURNING generation"
        );
        let mut generation: Option<i64> = self
            .timed(
                "taking a lease",
                sqlx::query(sqlx::AssertSqlSafe(insert))
                    .bind(bot_id)
                    .bind(&self.me.id)
                    .bind(ttl)
                    .fetch_optional(&self.pool),
            )
            .await?
            .map(|row| row.try_get(0))
            .transpose()?;
        if generation.is_none() {
            let take = format!(
                "UPDATE bot_leases SET holder = $2, generation = generation + 1, \
                 expires_at = {NOW_MS} + $3, taken_at = {NOW_MS} \
                 WHERE bot_id = (SELECT bot_id FROM bot_leases WHERE bot_id = $1 \
                   AND (holder IS NULL OR holder = $2 OR expires_at <= {NOW_MS}) \
                   FOR UPDATE SKIP LOCKED) \
                 RETURNING generation"
            );
            generation = self
                .timed(
                    "taking a lease",
                    sqlx::query(sqlx::AssertSqlSafe(take))
                        .bind(bot_id)
                        .bind(&self.me.id)
                        .bind(ttl)
                        .fetch_optional(&self.pool),
                )
                .await?
                .map(|row| row.try_get(0))
                .transpose()?;
        }
        if let Some(generation) = generation {
            self.counters.takes.fetch_add(1, Ordering::Relaxed);
            self.book().held.insert(
                bot_id.to_owned(),
                Held {
                    generation,
                    taken: sent,
                    valid_until: sent + self.validity(),
                    handover: false,
                },
            );
        }
        Ok(generation)
    }

    /// True while this instance holds `bot_id` at `generation`, by the last
    /// renewal's time.
    pub fn holds(&self, bot_id: &str, generation: i64) -> bool {
        self.book()
            .held
            .get(bot_id)
            .is_some_and(|h| h.generation == generation && Instant::now() < h.valid_until)
    }

    /// True when the fleet asked for this lease to be handed over.
    pub fn handover_wanted(&self, bot_id: &str, generation: i64) -> bool {
        self.book()
            .held
            .get(bot_id)
            .is_some_and(|h| h.generation == generation && h.handover)
    }

    /// Gives the lease back: another instance may take it at once.
    pub async fn release(&self, bot_id: &str, generation: i64) {
        let handover = {
            let mut book = self.book();
            match book.held.get(bot_id) {
                Some(h) if h.generation == generation => {
                    book.held.remove(bot_id).is_some_and(|h| h.handover)
                }
                _ => false,
            }
        };
        if handover {
            self.counters.handovers.fetch_add(1, Ordering::Relaxed);
        }
        let sql = format!(
            "UPDATE bot_leases SET holder = NULL, expires_at = {NOW_MS} \
             WHERE bot_id = $1 AND holder = $2 AND generation = $3"
        );
        let released = self
            .timed(
                "releasing a lease",
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(bot_id)
                    .bind(&self.me.id)
                    .bind(generation)
                    .execute(&self.pool),
            )
            .await;
        if let Err(err) = released {
            warn!(bot_id = %bot_id, error = %err, "could not release a lease; it expires within the lease TTL");
        }
    }

    /// Which generation of each bot this instance holds (for `/status`).
    pub fn held_generations(&self) -> BTreeMap<String, (i64, bool)> {
        let now = Instant::now();
        self.book()
            .held
            .iter()
            .filter(|(_, h)| h.valid_until > now)
            .map(|(bot, h)| (bot.clone(), (h.generation, h.handover)))
            .collect()
    }
}

/// The check every commit for a bot makes when its lease is fenced: the
/// row still names this instance and this generation, and has not
/// expired. `FOR SHARE` keeps a take waiting until the commit is done.
pub(super) const FENCE_CHECK: &str = "SELECT 1 FROM bot_leases WHERE bot_id = $1 AND holder = $2 \
     AND generation = $3 AND expires_at > (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT \
     FOR SHARE";

/// What a fenced writer checks: this instance still holds the bot at the
/// generation it took.
#[derive(Clone)]
pub struct Fence {
    leases: Arc<PgLeases>,
    bot_id: String,
    generation: i64,
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fence(generation {})", self.generation)
    }
}

impl Fence {
    pub(super) fn new(leases: Arc<PgLeases>, bot_id: &str, generation: i64) -> Fence {
        Fence {
            leases,
            bot_id: bot_id.to_owned(),
            generation,
        }
    }

    /// True while the lease is held, by this process's clock: checked
    /// before each send.
    pub fn is_valid(&self) -> bool {
        self.leases.holds(&self.bot_id, self.generation)
    }

    pub fn generation(&self) -> i64 {
        self.generation
    }

    pub(super) fn holder(&self) -> &str {
        &self.leases.me.id
    }

    /// Counts a refusal (a send or a write not made) for `/metrics`.
    pub fn refused(&self) {
        self.leases
            .counters
            .fencing_refusals
            .fetch_add(1, Ordering::Relaxed);
    }
}
