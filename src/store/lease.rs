//! Leases: exactly one botvisor process polls a bot, however many run.
//!
//! With PostgreSQL a lease is an advisory lock held on one connection kept
//! for leases alone (one per process, not per bot, so a hundred bots do not
//! need a hundred connections); PostgreSQL frees every lock of a process
//! whose connection closes, including a process killed with `kill -9`. With
//! SQLite a lease is an OS file lock on a file beside the database, which
//! the OS frees when the process ends.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Row};
use tokio::sync::Mutex;

use super::{StoreError, StoreSpec, pg_options};

/// How long a lease query may take before the lease counts as lost.
const LEASE_QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// A lease connection that answered this recently counts as alive without
/// another query: every bot checks its lease each second, and 500 bots
/// must not mean 500 queries a second on the one lease connection.
const ALIVE_REUSE: Duration = Duration::from_millis(900);
/// Mixed into every advisory lock key, so botvisor's keys are unlikely to
/// meet another application's on a shared database.
const KEY_SALT: i64 = 0x0B07_0000_0000_0000;

/// Where leases are taken.
pub enum Leases {
    Files { dir: PathBuf, prefix: String },
    Postgres(Arc<PgLeases>),
}

/// The process's lease connection to PostgreSQL.
pub struct PgLeases {
    options: PgConnectOptions,
    /// The connection and its generation: a lease taken on an older
    /// generation was lost with that connection.
    conn: Mutex<(Option<PgConnection>, u64)>,
    /// When the connection of a generation last answered.
    alive_at: std::sync::Mutex<Option<(u64, Instant)>>,
}

/// A lease on one bot, held until released or the process ends.
pub enum Lease {
    File(File),
    Postgres {
        leases: Arc<PgLeases>,
        key: i64,
        generation: u64,
    },
}

impl Leases {
    /// The leases that go with a store.
    ///
    /// # Errors
    /// When a PostgreSQL URL cannot be parsed.
    pub fn for_store(spec: &StoreSpec) -> Result<Leases, StoreError> {
        match spec {
            StoreSpec::Sqlite(path) => {
                let dir = crate::config::config_dir(path).to_path_buf();
                let prefix = path.file_name().map_or_else(
                    || "botvisor".to_owned(),
                    |n| n.to_string_lossy().into_owned(),
                );
                Ok(Leases::Files { dir, prefix })
            }
            StoreSpec::Postgres(url) => Ok(Leases::Postgres(Arc::new(PgLeases {
                options: pg_options(url)?,
                conn: Mutex::new((None, 0)),
                alive_at: std::sync::Mutex::new(None),
            }))),
        }
    }

    /// Takes the lease on bot `bot_id` if no other process holds it.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn try_acquire(&self, bot_id: &str) -> Result<Option<Lease>, StoreError> {
        match self {
            Leases::Files { dir, prefix } => {
                let path = dir.join(format!("{prefix}.lease-{bot_id}"));
                let file = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map_err(|e| {
                        StoreError::Query(format!(
                            "cannot open the lease file {}: {e}",
                            path.display()
                        ))
                    })?;
                match file.try_lock() {
                    Ok(()) => Ok(Some(Lease::File(file))),
                    Err(TryLockError::WouldBlock) => Ok(None),
                    Err(TryLockError::Error(e)) => Err(StoreError::Query(format!(
                        "cannot lock the lease file {}: {e}",
                        path.display()
                    ))),
                }
            }
            Leases::Postgres(leases) => leases.try_acquire(lock_key(bot_id)).await,
        }
    }
}

impl PgLeases {
    // A std mutex: held for one read or write, never across an await.
    fn answered_recently(&self, generation: u64) -> bool {
        let alive_at = self.alive_at.lock().unwrap_or_else(|e| e.into_inner());
        alive_at.is_some_and(|(gen_, at)| gen_ == generation && at.elapsed() < ALIVE_REUSE)
    }

    fn set_answered(&self, alive_at: Option<(u64, Instant)>) {
        *self.alive_at.lock().unwrap_or_else(|e| e.into_inner()) = alive_at;
    }

    async fn try_acquire(self: &Arc<Self>, key: i64) -> Result<Option<Lease>, StoreError> {
        let mut guard = self.conn.lock().await;
        if guard.0.is_none() {
            let conn = tokio::time::timeout(
                LEASE_QUERY_TIMEOUT,
                PgConnection::connect_with(&self.options),
            )
            .await
            .map_err(|_| StoreError::Query("timed out connecting for a lease".to_owned()))??;
            guard.0 = Some(conn);
            guard.1 += 1;
        }
        let generation = guard.1;
        let Some(conn) = guard.0.as_mut() else {
            return Ok(None);
        };
        let query = sqlx::query("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(conn);
        match tokio::time::timeout(LEASE_QUERY_TIMEOUT, query).await {
            Ok(Ok(row)) => {
                let taken: bool = row.try_get(0)?;
                Ok(taken.then(|| Lease::Postgres {
                    leases: self.clone(),
                    key,
                    generation,
                }))
            }
            Ok(Err(err)) => {
                guard.0 = None;
                Err(err.into())
            }
            Err(_) => {
                guard.0 = None;
                Err(StoreError::Query("timed out taking a lease".to_owned()))
            }
        }
    }
}

impl Lease {
    /// True while the lease is still held: always for a file lock; for an
    /// advisory lock, while its connection answers.
    pub async fn is_held(&self) -> bool {
        match self {
            Lease::File(_) => true,
            Lease::Postgres {
                leases, generation, ..
            } => {
                let mut guard = leases.conn.lock().await;
                if guard.1 != *generation {
                    return false;
                }
                let Some(conn) = guard.0.as_mut() else {
                    return false;
                };
                if leases.answered_recently(*generation) {
                    return true;
                }
                let alive = matches!(
                    tokio::time::timeout(
                        LEASE_QUERY_TIMEOUT,
                        sqlx::query("SELECT 1").execute(conn)
                    )
                    .await,
                    Ok(Ok(_))
                );
                leases.set_answered(alive.then(|| (*generation, Instant::now())));
                if !alive {
                    // Every lease on this connection is gone with it.
                    guard.0 = None;
                }
                alive
            }
        }
    }

    /// Gives the lease back, so another process can take the bot at once.
    pub async fn release(self) {
        match self {
            Lease::File(file) => drop(file),
            Lease::Postgres {
                leases,
                key,
                generation,
            } => {
                let mut guard = leases.conn.lock().await;
                if guard.1 != generation {
                    return;
                }
                if let Some(conn) = guard.0.as_mut() {
                    let unlock = sqlx::query("SELECT pg_advisory_unlock($1)")
                        .bind(key)
                        .execute(conn);
                    if !matches!(
                        tokio::time::timeout(LEASE_QUERY_TIMEOUT, unlock).await,
                        Ok(Ok(_))
                    ) {
                        guard.0 = None;
                    }
                }
            }
        }
    }
}

/// The advisory lock key of a bot: its numeric Telegram id, salted; any
/// other id is hashed (FNV-1a).
fn lock_key(bot_id: &str) -> i64 {
    let id = bot_id.parse::<i64>().unwrap_or_else(|_| {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in bot_id.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        i64::from_ne_bytes(hash.to_ne_bytes())
    });
    id ^ KEY_SALT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_lease_excludes_a_second_holder_until_released() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let leases =
            Leases::for_store(&StoreSpec::Sqlite(dir.path().join("botvisor.db"))).expect("leases");
        let first = leases.try_acquire("42").await.expect("try").expect("free");
        assert!(first.is_held().await);
        assert!(
            leases.try_acquire("42").await.expect("try").is_none(),
            "held by the first"
        );
        assert!(
            leases.try_acquire("43").await.expect("try").is_some(),
            "another bot is free"
        );
        first.release().await;
        assert!(
            leases.try_acquire("42").await.expect("try").is_some(),
            "free again"
        );
    }

    #[test]
    fn lock_keys_differ_per_bot_and_are_stable() {
        assert_eq!(lock_key("123456789"), 123_456_789 ^ KEY_SALT);
        assert_ne!(lock_key("a"), lock_key("b"));
        assert_eq!(lock_key("a"), lock_key("a"));
    }
}
