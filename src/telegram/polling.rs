//! `getUpdates`: one long poll at a time, its answer read up to a cap and
//! parsed update by update.
//!
//! The poller knows nothing of handling: the caller says which offset to
//! send (every update below it is handled) and gets back the updates, the
//! ones the parser rejected (by id, never by content), and the highest id
//! in the answer. One update the parser cannot read costs only itself.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use teloxide::types::{AllowedUpdate, Update};

use super::BotHandle;
use super::api::{self, CallError};

/// The largest `getUpdates` answer read: 100 updates of at most a few
/// dozen KB each (a 4096-character message with its entities and the
/// message it replies to) fit well inside it.
pub const UPDATES_CAP: usize = 16 << 20;
/// Updates asked for per poll: Telegram's maximum.
const LIMIT: u32 = 100;
/// Extra time the HTTP request allows a long poll beyond its own timeout,
/// so the server's empty answer arrives before the client gives up.
const LONG_POLL_GRACE: Duration = Duration::from_secs(15);
/// The timeout of the last, short `getUpdates` that confirms the offset.
const CONFIRM_TIMEOUT: Duration = Duration::from_millis(1500);

/// One answer to `getUpdates`.
#[derive(Debug, Default)]
pub struct Batch {
    /// The updates that parsed, in the answer's order (duplicates kept:
    /// the caller decides what is new).
    pub updates: Vec<Delivered>,
    /// The updates the parser rejected.
    pub rejected: Vec<Rejected>,
    /// The highest usable update id in the answer, parsed or not.
    pub highest: Option<u32>,
    /// Updates the caller said it knows already, not parsed again.
    pub known: usize,
    /// How long the server took to answer.
    pub took: Duration,
}

/// How much of each update is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// All of it: a built-in kind handles the update. One that does not
    /// parse is rejected.
    Whole,
    /// Only its id: a process bot's own library reads the rest, and may
    /// know update types this version does not.
    IdOnly,
}

/// An update as read, with the JSON it was read from (what the inbox
/// keeps, so a restart handles exactly what Telegram sent).
#[derive(Debug, Clone)]
pub struct Delivered {
    id: u32,
    /// The update itself, when read [`Reading::Whole`].
    pub update: Option<Update>,
    pub raw: String,
}

impl Delivered {
    /// Reads one stored or delivered update whole; `None` when it does not
    /// parse as an update with a usable id.
    pub fn parse(raw: &str) -> Option<Delivered> {
        Delivered::read(raw, Reading::Whole)
    }

    /// Reads one stored or delivered update as far as `reading` says;
    /// `None` when it has no usable id (or, read whole, does not parse).
    pub fn read(raw: &str, reading: Reading) -> Option<Delivered> {
        let id = usable_id(raw)?;
        let update = match reading {
            Reading::Whole => {
                let update = serde_json::from_str::<Update>(raw).ok()?;
                Some((update.id.0 == id).then_some(update)?)
            }
            Reading::IdOnly => None,
        };
        Some(Delivered {
            id,
            update,
            raw: raw.to_owned(),
        })
    }

    pub fn id(&self) -> u32 {
        self.id
    }
}

/// The `update_id` of an update's JSON, when it is a whole number from 0
/// to 2^31.
fn usable_id(raw: &str) -> Option<u32> {
    serde_json::from_str::<IdOnly>(raw)
        .ok()
        .and_then(|only| only.update_id.as_u64())
        .and_then(|id| u32::try_from(id).ok())
        .filter(|id| i32::try_from(*id).is_ok())
}

/// An update that could not be read, described without its content.
#[derive(Debug, PartialEq, Eq)]
pub struct Rejected {
    /// Its `update_id`, when that much could be read.
    pub id: Option<u32>,
    /// What was wrong, e.g. `Data error at column 40`.
    pub why: String,
}

#[derive(Serialize)]
struct Request<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<i64>,
    limit: u32,
    timeout: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_updates: Option<&'a [String]>,
}

/// The update types `kinds` as Telegram names them (`message`,
/// `callback_query`).
pub fn update_names(kinds: &[AllowedUpdate]) -> Vec<String> {
    kinds
        .iter()
        .filter_map(|kind| match serde_json::to_value(kind) {
            Ok(serde_json::Value::String(name)) => Some(name),
            _ => None,
        })
        .collect()
}

/// One bot's long poll.
pub struct Poller {
    bot: BotHandle,
    timeout: Duration,
    /// The update types asked for; `None` sends none, and Telegram keeps
    /// the list it was given last.
    allowed_updates: Option<Vec<String>>,
    reading: Reading,
    /// The offset the last answered request carried: what Telegram knows
    /// is handled.
    sent_offset: Option<u32>,
}

impl Poller {
    /// A poller asking for `allowed_updates` (or, with `None`, what
    /// Telegram was told last) and reading updates as `reading` says.
    pub fn new(
        bot: BotHandle,
        timeout: Duration,
        allowed_updates: Option<Vec<String>>,
        reading: Reading,
    ) -> Poller {
        Poller {
            bot,
            timeout,
            allowed_updates,
            reading,
            sent_offset: None,
        }
    }

    /// Asks for `allowed_updates` from the next poll on.
    pub fn set_allowed_updates(&mut self, allowed_updates: Option<Vec<String>>) {
        self.allowed_updates = allowed_updates;
    }

    /// Long-polls once with `offset` (every update below it is handled).
    ///
    /// Cancel-safe: dropping the future loses nothing; the offset is the
    /// caller's.
    ///
    /// # Errors
    /// The request's [`CallError`].
    /// `known` says which update ids the caller has already (being handled,
    /// or handled): those are not parsed again, only counted.
    pub async fn poll(
        &mut self,
        offset: Option<u32>,
        known: impl Fn(u32) -> bool,
    ) -> Result<Batch, CallError> {
        let timeout = u32::try_from(self.timeout.as_secs()).unwrap_or(50);
        let started = Instant::now();
        let raw = self
            .request(offset, LIMIT, timeout, self.timeout + LONG_POLL_GRACE)
            .await?;
        self.sent_offset = offset;
        let mut batch = parse_batch(&raw, known, self.reading)?;
        batch.took = started.elapsed();
        Ok(batch)
    }

    /// True when `offset` has not reached Telegram yet.
    pub fn unconfirmed(&self, offset: Option<u32>) -> bool {
        offset.is_some() && offset != self.sent_offset
    }

    /// Tells Telegram the updates below `offset` are handled, with one short
    /// `getUpdates` (`limit=1`, `timeout=0`), as a clean stop does.
    ///
    /// # Errors
    /// The request's error.
    pub async fn confirm(&mut self, offset: u32) -> Result<(), CallError> {
        self.request(Some(offset), 1, 0, CONFIRM_TIMEOUT).await?;
        self.sent_offset = Some(offset);
        Ok(())
    }

    async fn request(
        &self,
        offset: Option<u32>,
        limit: u32,
        timeout: u32,
        deadline: Duration,
    ) -> Result<Vec<u8>, CallError> {
        let body = Request {
            offset: offset.map(i64::from),
            limit,
            timeout,
            allowed_updates: self.allowed_updates.as_deref(),
        };
        api::call_raw(&self.bot, "getUpdates", &body, deadline, UPDATES_CAP).await
    }
}

#[derive(Deserialize)]
struct IdOnly {
    update_id: serde_json::Value,
}

/// Parses a `getUpdates` result update by update.
///
/// # Errors
/// A transient error when the result is not a list.
pub fn parse_batch(
    raw: &[u8],
    known: impl Fn(u32) -> bool,
    reading: Reading,
) -> Result<Batch, CallError> {
    let items: Vec<&RawValue> = serde_json::from_slice(raw).map_err(|err| CallError {
        class: super::ErrorClass::Transient,
        refusal: None,
        detail: format!(
            "getUpdates answered something that is not a list of updates ({:?} error at column {})",
            err.classify(),
            err.column()
        ),
    })?;
    let mut batch = Batch::default();
    for item in items {
        let id = serde_json::from_str::<IdOnly>(item.get())
            .ok()
            .and_then(|only| only.update_id.as_u64())
            .and_then(|id| u32::try_from(id).ok())
            .filter(|id| i32::try_from(*id).is_ok());
        if let Some(id) = id {
            batch.highest = Some(batch.highest.map_or(id, |h| h.max(id)));
            if known(id) {
                batch.known += 1;
                continue;
            }
        }
        let Some(id) = id.filter(|_| reading == Reading::IdOnly) else {
            match serde_json::from_str::<Update>(item.get()) {
                Ok(update) if Some(update.id.0) == id => batch.updates.push(Delivered {
                    id: update.id.0,
                    update: Some(update),
                    raw: item.get().to_owned(),
                }),
                Ok(_) => batch.rejected.push(Rejected {
                    id,
                    why: "an update_id that is not a whole number from 0 to 2^31".to_owned(),
                }),
                Err(err) => batch.rejected.push(Rejected {
                    id,
                    why: format!("{:?} error at column {}", err.classify(), err.column()),
                }),
            }
            continue;
        };
        batch.updates.push(Delivered {
            id,
            update: None,
            raw: item.get().to_owned(),
        });
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: i64, text: &str) -> String {
        format!(
            r#"{{"update_id":{id},"message":{{"message_id":1,"date":0,"chat":{{"id":5,"type":"private","first_name":"A"}},"from":{{"id":5,"is_bot":false,"first_name":"A"}},"text":"{text}"}}}}"#
        )
    }

    #[test]
    fn one_bad_update_costs_only_itself() {
        // (answer, ids handed on, ids rejected, highest id)
        type Case<'a> = (&'a str, Vec<u32>, Vec<Option<u32>>, Option<u32>);
        let cases: &[Case] = &[
            ("[]", vec![], vec![], None),
            (&format!("[{}]", message(7, "hi")), vec![7], vec![], Some(7)),
            // A negative id, one past u32, a string, a fraction, none, not an object.
            (
                &format!(
                    "[{},{},{},{},{},{},7,{}]",
                    message(-1, "a"),
                    message(4_294_967_296, "b"),
                    message(8, "c").replace("\"update_id\":8", "\"update_id\":\"8\""),
                    message(9, "d").replace("\"update_id\":9", "\"update_id\":9.5"),
                    message(10, "e").replace("\"update_id\":10,", ""),
                    "{\"update_id\":11,\"message\":42}",
                    message(12, "ok"),
                ),
                // teloxide reads an update of an unknown shape as its
                // `Error` kind: handlers ignore it, and it is not rejected.
                vec![11, 12],
                vec![None, None, None, None, None, None],
                Some(12),
            ),
            // The same id twice is kept twice: the caller skips repeats.
            (
                &format!("[{},{}]", message(3, "x"), message(3, "x")),
                vec![3, 3],
                vec![],
                Some(3),
            ),
        ];
        for (raw, ids, rejected, highest) in cases {
            let batch = parse_batch(raw.as_bytes(), |_| false, Reading::Whole).expect("a list");
            let got: Vec<u32> = batch.updates.iter().map(Delivered::id).collect();
            for delivered in &batch.updates {
                let again = Delivered::parse(&delivered.raw).expect("the raw text parses again");
                assert_eq!(again.id(), delivered.id());
            }
            assert_eq!(&got, ids, "{raw}");
            let got: Vec<Option<u32>> = batch.rejected.iter().map(|r| r.id).collect();
            assert_eq!(&got, rejected, "{raw}");
            assert_eq!(batch.highest, *highest, "{raw}");
            for r in &batch.rejected {
                assert!(!r.why.contains("hi") && !r.why.contains('"'), "{}", r.why);
            }
        }
        assert!(parse_batch(b"{\"not\":\"a list\"}", |_| false, Reading::Whole).is_err());
        // Read by id only, an update of any shape with a usable id is kept
        // as it came (a process bot's library reads it).
        let batch = parse_batch(
            format!(
                "[{},{},{}]",
                "{\"update_id\":11,\"message\":42}",
                message(-1, "a"),
                message(12, "ok")
            )
            .as_bytes(),
            |_| false,
            Reading::IdOnly,
        )
        .expect("a list");
        let got: Vec<(u32, bool)> = batch
            .updates
            .iter()
            .map(|d| (d.id(), d.update.is_some()))
            .collect();
        assert_eq!(got, [(11, false), (12, false)]);
        assert_eq!(batch.rejected.len(), 1);
        // Known ids are counted, not parsed.
        let batch = parse_batch(
            format!("[{},{}]", message(3, "x"), message(4, "y")).as_bytes(),
            |id| id == 3,
            Reading::Whole,
        )
        .expect("a list");
        assert_eq!(
            (batch.known, batch.updates.len(), batch.highest),
            (1, 1, Some(4))
        );
    }
}
