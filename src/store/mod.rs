//! Durable state: the only module that speaks SQL.
//!
//! A SQLite file by default (created on first run, WAL mode, busy timeout),
//! PostgreSQL when the variable `store_env` names is set (Heroku's
//! `DATABASE_URL`). The same portable SQL runs on both; migrations are
//! versioned and safe to run from two processes at once (sqlx takes a lock
//! around them). Operations are typed: a bot's handled offset and the
//! updates handled above it. Every write that changes two rows is one
//! transaction.
//!
//! Bots are keyed by their Telegram user id (from `getMe`), so renaming a
//! bot in the config keeps its state.
//!
//! A SQLite file can vanish under a running process (deleted, or replaced by
//! a restore) and SQLite would go on writing to the unlinked inode without a
//! word: [`Store::health`] compares the path's device and inode with the
//! ones opened, so the loss is noticed at the next check.

pub mod bot;
pub mod fleet;
pub mod lease;
pub mod outbox;
pub mod relay;

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use bot::BotStore;
pub use fleet::{Fence, FleetView, InstanceInfo, InstanceRow, LeaseRow, PgLeases};
pub use lease::{Lease, Leases};
pub use outbox::{InboxRow, OutboxCommit, OutboxRow};
pub use relay::{Announcement, NewAnnouncement, Subscription};

/// An offset older than this is ignored: after a week without updates
/// Telegram starts its update ids again at random.
pub const OFFSET_MAX_AGE: Duration = Duration::from_secs(6 * 24 * 3600);

/// How long to wait for a connection before calling the store unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the state lives.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreSpec {
    Sqlite(PathBuf),
    /// A `postgres://` URL (may hold a password: never printed whole).
    Postgres(String),
}

impl fmt::Debug for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl StoreSpec {
    /// The store for display, with any password hidden.
    pub fn describe(&self) -> String {
        match self {
            StoreSpec::Sqlite(path) => format!("sqlite:{}", path.display()),
            StoreSpec::Postgres(url) => match url::Url::parse(url) {
                Ok(mut parsed) => {
                    if parsed.password().is_some() {
                        let _ = parsed.set_password(Some("***"));
                    }
                    // A password may also come as a query parameter.
                    let query: Vec<(String, String)> = parsed
                        .query_pairs()
                        .map(|(k, v)| {
                            let hidden = k.eq_ignore_ascii_case("password");
                            (
                                k.into_owned(),
                                if hidden {
                                    "***".to_owned()
                                } else {
                                    v.into_owned()
                                },
                            )
                        })
                        .collect();
                    if !query.is_empty() {
                        parsed.query_pairs_mut().clear().extend_pairs(query);
                    }
                    parsed.to_string()
                }
                Err(_) => "postgres://(unparsable URL)".to_owned(),
            },
        }
    }
}

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store {store}: {message}")]
    Open { store: String, message: String },
    #[error("the store failed: {0}")]
    Query(String),
    /// The SQLite file at the configured path is not the one opened.
    #[error(
        "the store's file {path} was {how} while botvisor runs; restart botvisor to use the new file"
    )]
    FileGone { path: String, how: &'static str },
    /// A fenced write for a bot whose lease this instance no longer holds
    /// at that generation: nothing was written.
    #[error(
        "this instance no longer holds the bot (lease generation {generation}); nothing was stored for it"
    )]
    Fenced { generation: i64 },
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        // A driver error may quote the database's own answer (a value, a
        // path): short and sanitised, like any text from outside.
        StoreError::Query(crate::sanitize::excerpt(
            &err.to_string(),
            crate::sanitize::EXCERPT,
        ))
    }
}

/// Which file a path named when the store opened it: device and inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileIdentity {
    pub(crate) path: PathBuf,
    dev: u64,
    ino: u64,
}

impl FileIdentity {
    /// The identity of the file now at `path`.
    pub(crate) fn of(path: &std::path::Path) -> std::io::Result<FileIdentity> {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::metadata(path)?;
        Ok(FileIdentity {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// The identity of the open file `file` (which was opened from `path`).
    pub(crate) fn of_open(
        file: &std::fs::File,
        path: &std::path::Path,
    ) -> std::io::Result<FileIdentity> {
        use std::os::unix::fs::MetadataExt as _;
        let meta = file.metadata()?;
        Ok(FileIdentity {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// `Ok` while the path still names the same file; otherwise why not.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        let gone = |how| StoreError::FileGone {
            path: self.path.display().to_string(),
            how,
        };
        match FileIdentity::of(&self.path) {
            Ok(now) if now == *self => Ok(()),
            Ok(_) => Err(gone("replaced")),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Err(gone("deleted")),
            Err(err) => Err(StoreError::Query(format!(
                "cannot check the store's file {}: {err}",
                self.path.display()
            ))),
        }
    }
}

/// A bot's handled offset, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredOffset {
    /// The next update id to ask for: every update below it is handled.
    pub next_offset: u32,
    pub updated_at: SystemTime,
}

impl StoredOffset {
    /// True when the offset is recent enough to trust.
    pub fn is_fresh(&self) -> bool {
        self.updated_at
            .elapsed()
            .map_or(true, |age| age < OFFSET_MAX_AGE)
    }
}

/// An open store with its migrations applied.
#[derive(Clone)]
pub enum Store {
    /// The pool and the file it opened.
    Sqlite(SqlitePool, Arc<FileIdentity>),
    Postgres(PgPool),
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Store::Sqlite(..) => f.write_str("Store(sqlite)"),
            Store::Postgres(_) => f.write_str("Store(postgres)"),
        }
    }
}

/// Runs the same statement on whichever pool the store has.
macro_rules! on_pool_impl {
    ($store:expr, |$pool:ident| $body:expr) => {
        match $store {
            Store::Sqlite($pool, _) => $body,
            Store::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool_impl as on_pool;

/// In a transaction `tx` for bot `bot_id`: with a fence, checks that the
/// lease row still names this instance at its generation (`FOR SHARE`, so
/// a take waits for the commit), and returns [`StoreError::Fenced`] when
/// not; without one (SQLite, one host), nothing.
macro_rules! check_fence_impl {
    ($tx:expr, $bot_id:expr, $fence:expr) => {
        if let Some(fence) = $fence {
            let held = sqlx::query($crate::store::fleet::FENCE_CHECK)
                .bind($bot_id)
                .bind(fence.holder())
                .bind(fence.generation())
                .fetch_optional(&mut *$tx)
                .await?;
            if held.is_none() {
                fence.refused();
                return Err(StoreError::Fenced {
                    generation: fence.generation(),
                });
            }
        }
    };
}
pub(crate) use check_fence_impl as check_fence;

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Store {
    /// Opens the store and applies the migrations.
    ///
    /// # Errors
    /// [`StoreError::Open`] when it cannot be reached or migrated; the
    /// message never holds a password.
    pub async fn open(spec: &StoreSpec) -> Result<Store, StoreError> {
        let fail = |message: String| StoreError::Open {
            store: spec.describe(),
            message: hide_password(spec, &message),
        };
        // sqlx locks migrations on PostgreSQL, not on SQLite: two processes
        // opening a new file (which also switches it to WAL) take turns
        // through a file lock, held until the migrations are done.
        let mut _migrating = None;
        let store = match spec {
            StoreSpec::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
                }
                _migrating = Some(
                    migration_lock(path)
                        .await
                        .map_err(|e| fail(e.to_string()))?,
                );
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(5));
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(CONNECT_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                let file = FileIdentity::of(path).map_err(|e| fail(e.to_string()))?;
                Store::Sqlite(pool, Arc::new(file))
            }
            StoreSpec::Postgres(url) => {
                let pool = PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(CONNECT_TIMEOUT)
                    .connect_with(pg_options(url).map_err(|e| fail(e.to_string()))?)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                Store::Postgres(pool)
            }
        };
        let migrator = sqlx::migrate!("src/store/migrations");
        on_pool!(&store, |pool| migrator.run(pool).await).map_err(|e| fail(e.to_string()))?;
        Ok(store)
    }

    /// Whether the store is usable: for SQLite, the configured path still
    /// names the file opened (not deleted, not replaced); then one trivial
    /// query. Cheap enough to call every few seconds.
    ///
    /// # Errors
    /// [`StoreError::FileGone`] when the SQLite file was deleted or
    /// replaced; [`StoreError::Query`] when the query fails.
    pub async fn health(&self) -> Result<(), StoreError> {
        if let Store::Sqlite(_, file) = self {
            file.check()?;
        }
        on_pool!(self, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// The bot's stored offset, if any.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn offset(&self, bot_id: &str) -> Result<Option<StoredOffset>, StoreError> {
        const SQL: &str = "SELECT next_offset, updated_at FROM bot_offsets WHERE bot_id = $1";
        let row: Option<(i64, i64)> = on_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(bot_id)
                .fetch_optional(pool)
                .await?
                .map(|row| (row.get::<i64, _>(0), row.get::<i64, _>(1)))
        });
        Ok(row.map(|(next, at)| StoredOffset {
            next_offset: u32::try_from(next).unwrap_or(0),
            updated_at: UNIX_EPOCH + Duration::from_secs(u64::try_from(at).unwrap_or(0)),
        }))
    }

    /// The updates handled at or above `from` (not yet covered by the offset).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn handled_above(&self, bot_id: &str, from: u32) -> Result<HashSet<u32>, StoreError> {
        const SQL: &str =
            "SELECT update_id FROM handled_updates WHERE bot_id = $1 AND update_id >= $2";
        let ids: Vec<i64> = on_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(bot_id)
                .bind(i64::from(from))
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| row.get::<i64, _>(0))
                .collect()
        });
        Ok(ids
            .into_iter()
            .filter_map(|id| u32::try_from(id).ok())
            .collect())
    }

    /// Records that `update_id` has been handled.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn mark_handled(&self, bot_id: &str, update_id: u32) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO handled_updates (bot_id, update_id, handled_at) VALUES ($1, $2, $3) \
                           ON CONFLICT (bot_id, update_id) DO NOTHING";
        on_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(bot_id)
                .bind(i64::from(update_id))
                .bind(now_secs())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Moves the bot's offset to `next_offset` and forgets the handled
    /// updates below it, in one transaction.
    ///
    /// # Errors
    /// When the store fails; nothing is written then.
    pub async fn save_offset(&self, bot_id: &str, next_offset: u32) -> Result<(), StoreError> {
        const UPSERT: &str = "INSERT INTO bot_offsets (bot_id, next_offset, updated_at) VALUES ($1, $2, $3) \
                              ON CONFLICT (bot_id) DO UPDATE SET next_offset = excluded.next_offset, \
                              updated_at = excluded.updated_at";
        const FORGET: &str = "DELETE FROM handled_updates WHERE bot_id = $1 AND update_id < $2";
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(UPSERT)
                .bind(bot_id)
                .bind(i64::from(next_offset))
                .bind(now_secs())
                .execute(&mut *tx)
                .await?;
            sqlx::query(FORGET)
                .bind(bot_id)
                .bind(i64::from(next_offset))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Forgets the bot's offset and handled updates (after Telegram restarted
    /// its update ids).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn forget(&self, bot_id: &str) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM handled_updates WHERE bot_id = $1")
                .bind(bot_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM bot_offsets WHERE bot_id = $1")
                .bind(bot_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }
}

/// Takes the lock that serializes migrations of one SQLite file (released
/// when the returned file is dropped).
async fn migration_lock(db: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut name = db.as_os_str().to_owned();
    name.push(".migrate-lock");
    let path = PathBuf::from(name);
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Connection options for a PostgreSQL URL. Without an explicit `sslmode`,
/// TLS is required (Heroku Postgres demands it, with a self-signed
/// certificate, so it is not verified) except on a loopback address.
pub(crate) fn pg_options(url: &str) -> Result<PgConnectOptions, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?;
    if url.contains("sslmode=") {
        return Ok(options);
    }
    let host = url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    Ok(options.ssl_mode(if loopback {
        PgSslMode::Prefer
    } else {
        PgSslMode::Require
    }))
}

/// `message` with the store URL's password replaced, should a driver echo it.
fn hide_password(spec: &StoreSpec, message: &str) -> String {
    match spec {
        StoreSpec::Postgres(url) => match url::Url::parse(url)
            .ok()
            .and_then(|u| u.password().map(str::to_owned))
        {
            Some(password) if !password.is_empty() => message.replace(&password, "***"),
            _ => message.to_owned(),
        },
        StoreSpec::Sqlite(_) => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_hide_the_password() {
        let cases = [
            (
                StoreSpec::Postgres("postgres://u:secret@db.example:5432/app".into()),
                "postgres://u:***@db.example:5432/app",
            ),
            (
                StoreSpec::Postgres("postgres://u@127.0.0.1/app".into()),
                "postgres://u@127.0.0.1/app",
            ),
            (
                StoreSpec::Sqlite(PathBuf::from("/srv/botvisor.db")),
                "sqlite:/srv/botvisor.db",
            ),
        ];
        for (spec, expected) in cases {
            assert_eq!(spec.describe(), expected);
            assert!(!format!("{spec:?}").contains("secret"));
        }
    }

    #[tokio::test]
    async fn two_processes_may_migrate_a_new_sqlite_file_at_once() {
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("a temporary folder");
            let spec = StoreSpec::Sqlite(dir.path().join("fresh.db"));
            let (a, b) = tokio::join!(Store::open(&spec), Store::open(&spec));
            a.expect("the first opens");
            b.expect("the second opens");
        }
    }

    #[tokio::test]
    async fn a_deleted_or_replaced_sqlite_file_is_noticed() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("botvisor.db");
        let store = Store::open(&StoreSpec::Sqlite(path.clone()))
            .await
            .expect("open");
        store.health().await.expect("healthy after opening");
        store.save_offset("42", 7).await.expect("save");
        store.health().await.expect("still healthy after a write");

        std::fs::remove_file(&path).expect("delete the database");
        let err = store.health().await.expect_err("a deleted file is noticed");
        assert!(
            matches!(err, StoreError::FileGone { how: "deleted", .. }),
            "{err}"
        );
        assert!(err.to_string().contains("botvisor.db"), "{err}");

        // Another file at the same path (a restore) is not the one opened.
        let other = Store::open(&StoreSpec::Sqlite(path.clone()))
            .await
            .expect("a new file at the path");
        other.health().await.expect("the new store is healthy");
        let err = store
            .health()
            .await
            .expect_err("a replaced file is noticed");
        assert!(
            matches!(
                err,
                StoreError::FileGone {
                    how: "replaced",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn sqlite_keeps_offsets_and_handled_updates() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let spec = StoreSpec::Sqlite(dir.path().join("state/botvisor.db"));
        let store = Store::open(&spec).await.expect("open");
        assert_eq!(store.offset("42").await.expect("read"), None);
        store.mark_handled("42", 10).await.expect("mark");
        store.mark_handled("42", 12).await.expect("mark");
        store
            .mark_handled("42", 12)
            .await
            .expect("marking twice is fine");
        assert_eq!(
            store.handled_above("42", 0).await.expect("read"),
            HashSet::from([10, 12])
        );
        store.save_offset("42", 11).await.expect("save");
        assert_eq!(
            store.handled_above("42", 0).await.expect("read"),
            HashSet::from([12])
        );
        drop(store);
        // Reopened (and migrated again): the state is still there.
        let store = Store::open(&spec).await.expect("reopen");
        let offset = store.offset("42").await.expect("read").expect("an offset");
        assert_eq!(offset.next_offset, 11);
        assert!(offset.is_fresh());
        assert_eq!(store.offset("43").await.expect("read"), None);
        store.forget("42").await.expect("forget");
        assert_eq!(store.offset("42").await.expect("read"), None);
    }
}
