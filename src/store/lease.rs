//! Leases: exactly one botvisor process polls a bot, however many run.
//!
//! With PostgreSQL a lease is a row of the fleet's lease table, with a
//! fencing generation and an expiry (`store::fleet`): a process killed with
//! `kill -9` loses its bots when their leases expire. With
//! SQLite a lease is an OS lock the OS frees when the process ends. On Linux
//! it is an open-file-description lock on one byte of the database file
//! itself (far past any byte SQLite locks, one byte per bot), so no lease
//! file exists whose deletion would let a second instance in; elsewhere it
//! is a `flock` on a lease file beside the database. Either way a lease is
//! held only while its path still names the file locked: a deleted or
//! replaced file makes [`Lease::is_held`] false, so the worker stops polling.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fleet::{Fence, InstanceInfo, PgLeases};
use super::{FileIdentity, StoreError, StoreSpec};

/// A path that was found to name the lock file this recently is not
/// looked at again: every bot checks its lease each second, and 500 bots
/// must not mean 500 `stat`s a second.
const ALIVE_REUSE: Duration = Duration::from_millis(900);
/// Mixed into every bot's lock key.
const KEY_SALT: i64 = 0x0B07_0000_0000_0000;

/// Where leases are taken.
pub enum Leases {
    /// Locks on (or, off Linux, beside) the SQLite database at `db`; on
    /// Linux every bot's lock is a byte of one open file, so a thousand
    /// bots hold one descriptor for their leases, not a thousand.
    Files {
        db: PathBuf,
        open: std::sync::Mutex<Option<Arc<LockFile>>>,
    },
    Postgres(Arc<PgLeases>),
}

/// An open lock file and the leases held on it by this process.
pub struct LockFile {
    file: File,
    identity: FileIdentity,
    /// The lock bytes held through this open file: a second lease on a
    /// byte in this process must fail as one in another process does (a
    /// lock never conflicts with its own open file description).
    held: std::sync::Mutex<std::collections::HashSet<i64>>,
    /// When the path was last found to name this file, in ms since
    /// `opened` (0: not yet, or not named): every bot checks its lease each
    /// second, and a thousand bots must not mean a thousand `stat`s (or
    /// lock waits) a second.
    named_at: std::sync::atomic::AtomicU64,
    opened: Instant,
}

impl LockFile {
    /// True while the path still names this file (checked at most every
    /// [`ALIVE_REUSE`]).
    fn is_named(&self) -> bool {
        use std::sync::atomic::Ordering;
        let since_open = |at: Instant| {
            u64::try_from(at.saturating_duration_since(self.opened).as_millis())
                .unwrap_or(u64::MAX)
                .max(1)
        };
        let now = since_open(Instant::now());
        let named_at = self.named_at.load(Ordering::Relaxed);
        let reuse = u64::try_from(ALIVE_REUSE.as_millis()).unwrap_or(u64::MAX);
        if named_at != 0 && now.saturating_sub(named_at) < reuse {
            return true;
        }
        let named = self.identity.check().is_ok();
        self.named_at
            .store(if named { now } else { 0 }, Ordering::Relaxed);
        named
    }
}

/// A lease on one bot, held until released or the process ends.
pub enum Lease {
    /// A lock on the shared lock file, released when dropped.
    File(FileLease),
    /// A row of the fleet's lease table (`store::fleet`).
    Postgres {
        leases: Arc<PgLeases>,
        bot_id: String,
        generation: i64,
    },
}

impl Leases {
    /// The leases that go with a store.
    ///
    /// # Errors
    /// When a PostgreSQL URL cannot be parsed.
    pub fn for_store(
        spec: &StoreSpec,
        me: InstanceInfo,
        ttl: Duration,
    ) -> Result<Leases, StoreError> {
        match spec {
            StoreSpec::Sqlite(path) => Ok(Leases::Files {
                db: path.clone(),
                open: std::sync::Mutex::new(None),
            }),
            StoreSpec::Postgres(url) => {
                Ok(Leases::Postgres(Arc::new(PgLeases::new(url, me, ttl)?)))
            }
        }
    }

    /// The fleet's leases, when the store is PostgreSQL.
    pub fn fleet(&self) -> Option<&Arc<PgLeases>> {
        match self {
            Leases::Postgres(leases) => Some(leases),
            Leases::Files { .. } => None,
        }
    }

    /// Takes the lease on bot `bot_id` if no other process holds it.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn try_acquire(&self, bot_id: &str) -> Result<Option<Lease>, StoreError> {
        match self {
            Leases::Files { db, open } => file_lease(db, open, bot_id),
            Leases::Postgres(leases) => {
                Ok(leases
                    .try_take(bot_id)
                    .await?
                    .map(|generation| Lease::Postgres {
                        leases: leases.clone(),
                        bot_id: bot_id.to_owned(),
                        generation,
                    }))
            }
        }
    }
}

/// A bot's lock on a [`LockFile`]; dropping it releases the lock.
pub struct FileLease {
    file: Arc<LockFile>,
    byte: i64,
}

impl Drop for FileLease {
    fn drop(&mut self) {
        unlock(&self.file.file, self.byte);
        self.file
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.byte);
    }
}

/// Takes the file lease of `bot_id` for the database at `db`, if free.
fn file_lease(
    db: &Path,
    open: &std::sync::Mutex<Option<Arc<LockFile>>>,
    bot_id: &str,
) -> Result<Option<Lease>, StoreError> {
    let file = lock_file(db, open, bot_id)?;
    let byte = lock_byte(bot_id);
    let mut held = file.held.lock().unwrap_or_else(|e| e.into_inner());
    if held.contains(&byte) {
        return Ok(None);
    }
    match try_lock(&file.file, byte) {
        Ok(true) => {
            held.insert(byte);
            drop(held);
            Ok(Some(Lease::File(FileLease { file, byte })))
        }
        Ok(false) => Ok(None),
        Err(e) => Err(StoreError::Query(format!(
            "cannot lock the lease file {}: {e}",
            file.identity.path.display()
        ))),
    }
}

/// The lock file to take `bot_id`'s lease on: on Linux the one kept open,
/// opened again when its path names another file now (leases taken on the
/// old one are lost, and new ones must be on the file others see).
fn lock_file(
    db: &Path,
    open: &std::sync::Mutex<Option<Arc<LockFile>>>,
    bot_id: &str,
) -> Result<Arc<LockFile>, StoreError> {
    let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
    if cfg!(target_os = "linux")
        && let Some(file) = open.as_ref()
        && file.identity.check().is_ok()
    {
        return Ok(file.clone());
    }
    let (path, file) = open_lock_file(db, bot_id)?;
    let identity = FileIdentity::of_open(&file, &path).map_err(|e| {
        StoreError::Query(format!(
            "cannot read the lease file {}: {e}",
            path.display()
        ))
    })?;
    // A file deleted or replaced between the open and now would give a
    // lock nobody else can see.
    identity.check()?;
    let file = Arc::new(LockFile {
        file,
        identity,
        held: std::sync::Mutex::new(std::collections::HashSet::new()),
        named_at: std::sync::atomic::AtomicU64::new(0),
        opened: Instant::now(),
    });
    if cfg!(target_os = "linux") {
        *open = Some(file.clone());
    }
    Ok(file)
}

/// The database file itself: the store created it, and a missing one means
/// the store is gone (a lease on a new empty file would protect nothing).
#[cfg(target_os = "linux")]
fn open_lock_file(db: &Path, _bot_id: &str) -> Result<(PathBuf, File), StoreError> {
    match OpenOptions::new().read(true).write(true).open(db) {
        Ok(file) => Ok((db.to_path_buf(), file)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::FileGone {
            path: db.display().to_string(),
            how: "deleted",
        }),
        Err(e) => Err(StoreError::Query(format!(
            "cannot open {} for a lease: {e}",
            db.display()
        ))),
    }
}

/// Where no open-file-description locks exist: one lease file per bot.
#[cfg(not(target_os = "linux"))]
fn open_lock_file(db: &Path, bot_id: &str) -> Result<(PathBuf, File), StoreError> {
    let mut name = db.as_os_str().to_owned();
    name.push(format!(".lease-{bot_id}"));
    let path = PathBuf::from(name);
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map(|file| (path.clone(), file))
        .map_err(|e| {
            StoreError::Query(format!(
                "cannot open the lease file {}: {e}",
                path.display()
            ))
        })
}

/// Where a bot's byte lies in the database file: 2 TiB plus 40 bits of its
/// key, far past SQLite's own lock bytes (at 1 GiB) and any real file.
fn lock_byte(bot_id: &str) -> i64 {
    const BASE: i64 = 1 << 41;
    BASE + (lock_key(bot_id) & ((1 << 40) - 1))
}

/// Takes the bot's byte with an open-file-description lock: it belongs to
/// this open file, not to the process, so SQLite closing its own
/// descriptors of the file (which drops POSIX record locks) leaves it.
#[cfg(target_os = "linux")]
fn try_lock(file: &File, byte: i64) -> std::io::Result<bool> {
    match ofd_lock(file, byte, libc::F_WRLCK) {
        Ok(()) => Ok(true),
        Err(err) if matches!(err.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Gives the bot's byte back (the lock file stays open for the others).
#[cfg(target_os = "linux")]
fn unlock(file: &File, byte: i64) {
    if let Err(err) = ofd_lock(file, byte, libc::F_UNLCK) {
        tracing::warn!(error = %err, "cannot release a lease lock; it goes when botvisor exits");
    }
}

#[cfg(target_os = "linux")]
fn ofd_lock(file: &File, byte: i64, kind: libc::c_int) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: `flock` is a plain C struct for which all zeroes is valid.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = byte;
    lock.l_len = 1;
    // SAFETY: the descriptor is open for the call (borrowed from `file`)
    // and `lock` is a valid, initialised struct that outlives it.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &raw const lock) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Off Linux: the whole lease file of one bot, opened for that bot alone.
#[cfg(not(target_os = "linux"))]
fn try_lock(file: &File, _byte: i64) -> std::io::Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Off Linux the lock goes with the bot's own lease file when it closes.
#[cfg(not(target_os = "linux"))]
fn unlock(_file: &File, _byte: i64) {}

impl Lease {
    /// True while the lease is still held: for a file lock, while its path
    /// still names the file locked (a deleted or replaced file is a lost
    /// lease: another instance could lock the new one); for a fleet lease,
    /// while its last renewal is recent enough (no query: see
    /// `store::fleet`).
    pub async fn is_held(&self) -> bool {
        self.is_held_now()
    }

    /// [`is_held`](Self::is_held), which needs no wait: a file's identity is
    /// looked at at most every 900 ms, a fleet lease is in memory.
    pub fn is_held_now(&self) -> bool {
        match self {
            Lease::File(lease) => lease.file.is_named(),
            Lease::Postgres {
                leases,
                bot_id,
                generation,
            } => leases.holds(bot_id, *generation),
        }
    }

    /// True when the fleet asked for this bot to be handed over (never for
    /// a file lease: SQLite has no fleet).
    pub fn handover_wanted(&self) -> bool {
        match self {
            Lease::File(_) => false,
            Lease::Postgres {
                leases,
                bot_id,
                generation,
            } => leases.handover_wanted(bot_id, *generation),
        }
    }

    /// What writes and sends for the bot check, when the lease is fenced
    /// (PostgreSQL); a file lease needs none: one host, one lock.
    pub fn fence(&self) -> Option<Fence> {
        match self {
            Lease::File(_) => None,
            Lease::Postgres {
                leases,
                bot_id,
                generation,
            } => Some(Fence::new(leases.clone(), bot_id, *generation)),
        }
    }

    /// Gives a fleet lease back without giving up the value (a handover,
    /// while the session's tasks may still hold a clone); a file lease is
    /// released when dropped.
    pub async fn release_shared(&self) {
        if let Lease::Postgres {
            leases,
            bot_id,
            generation,
        } = self
        {
            leases.release(bot_id, *generation).await;
        }
    }

    /// Gives the lease back, so another process can take the bot at once.
    pub async fn release(self) {
        match self {
            Lease::File(lease) => drop(lease),
            Lease::Postgres {
                leases,
                bot_id,
                generation,
            } => leases.release(&bot_id, generation).await,
        }
    }
}

/// The lock key of a bot (its byte in the SQLite file): its numeric Telegram id, salted; any
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

    fn test_instance() -> InstanceInfo {
        InstanceInfo {
            id: "test".to_owned(),
            host: "test".to_owned(),
            started_at: 0,
            weight: 1,
        }
    }

    #[tokio::test]
    async fn a_file_lease_excludes_a_second_holder_until_released() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let spec = StoreSpec::Sqlite(dir.path().join("botvisor.db"));
        let _store = crate::store::Store::open(&spec).await.expect("open");
        let leases =
            Leases::for_store(&spec, test_instance(), Duration::from_secs(10)).expect("leases");
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

    /// True once `lease` is found lost: the path is looked at again after
    /// [`ALIVE_REUSE`] at most.
    async fn lost_soon(lease: &Lease) -> bool {
        let deadline = Instant::now() + ALIVE_REUSE * 5;
        while Instant::now() < deadline {
            if !lease.is_held().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn deleting_files_cannot_hand_a_held_lease_to_another_instance() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let db = dir.path().join("botvisor.db");
        let spec = StoreSpec::Sqlite(db.clone());
        let store = crate::store::Store::open(&spec).await.expect("open");
        let first_instance =
            Leases::for_store(&spec, test_instance(), Duration::from_secs(10)).expect("leases");
        let second_instance =
            Leases::for_store(&spec, test_instance(), Duration::from_secs(10)).expect("leases");
        let first = first_instance
            .try_acquire("42")
            .await
            .expect("try")
            .expect("free");

        // Everything beside the database (WAL, lock files, any lease file)
        // is deleted: the lease stays with the first instance.
        for entry in std::fs::read_dir(dir.path()).expect("list") {
            let path = entry.expect("an entry").path();
            if path != db {
                std::fs::remove_file(&path).expect("delete");
            }
        }
        assert!(first.is_held().await, "nothing the lease needs was deleted");
        assert!(
            second_instance
                .try_acquire("42")
                .await
                .expect("try")
                .is_none(),
            "the second instance cannot take a held bot"
        );

        // The database itself deleted: the lease is lost, and no lease can
        // be taken on a store that is gone.
        drop(store);
        std::fs::remove_file(&db).expect("delete the database");
        assert!(lost_soon(&first).await, "a deleted file holds no lease");
        assert!(second_instance.try_acquire("42").await.is_err());

        // A new database at the path (a restore): the old lease is not on it.
        let _new_store = crate::store::Store::open(&spec).await.expect("reopen");
        assert!(lost_soon(&first).await, "a replaced file holds no lease");
        assert!(
            second_instance
                .try_acquire("42")
                .await
                .expect("try")
                .is_some(),
            "the new file is free"
        );
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_hundred_file_leases_hold_one_descriptor() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let spec = StoreSpec::Sqlite(dir.path().join("botvisor.db"));
        let _store = crate::store::Store::open(&spec).await.expect("open");
        let leases =
            Leases::for_store(&spec, test_instance(), Duration::from_secs(10)).expect("leases");
        let first = leases.try_acquire("1").await.expect("try").expect("free");
        // Other tests open files meanwhile: count this folder's only.
        let open_here = || {
            std::fs::read_dir("/proc/self/fd")
                .expect("list descriptors")
                .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .filter(|target| target == &dir.path().join("botvisor.db"))
                .count()
        };
        let before = open_here();
        let mut held = vec![first];
        for bot in 2..=100 {
            let lease = leases.try_acquire(&bot.to_string()).await.expect("try");
            held.push(lease.expect("free"));
        }
        assert_eq!(open_here(), before, "a lease opened a descriptor");
        for lease in &held {
            assert!(lease.is_held().await);
        }
        // A released bot is free again; the others stay held.
        let fifty = held.remove(49);
        assert!(leases.try_acquire("50").await.expect("try").is_none());
        fifty.release().await;
        let other =
            Leases::for_store(&spec, test_instance(), Duration::from_secs(10)).expect("leases");
        assert!(other.try_acquire("50").await.expect("try").is_some());
        assert!(other.try_acquire("51").await.expect("try").is_none());
    }

    #[test]
    fn lock_keys_differ_per_bot_and_are_stable() {
        assert_eq!(lock_key("123456789"), 123_456_789 ^ KEY_SALT);
        assert_ne!(lock_key("a"), lock_key("b"));
        assert_eq!(lock_key("a"), lock_key("a"));
    }
}
