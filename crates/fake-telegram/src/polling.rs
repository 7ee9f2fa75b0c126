//! getUpdates: offsets and confirmation, `limit`, `allowed_updates` (which
//! persists), long polling that holds the request until an update arrives or
//! the timeout passes, and Telegram's 409 conflicts: a newer poll ends the
//! held one, a webhook forbids polling, and setWebhook ends a held poll.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::conflicts::{
    OTHER_POLLER as CONFLICT_OTHER_POLLER, SET_WEBHOOK as CONFLICT_SET_WEBHOOK,
    WEBHOOK_ACTIVE as CONFLICT_WEBHOOK_ACTIVE,
};
use crate::params::Params;
use crate::reply::{ApiError, MethodResult, Success};
use crate::state::{HeldPoll, PollEnd, Shared};

/// Longest long-poll timeout Telegram honours, in seconds.
const MAX_TIMEOUT_SECS: f64 = 50.0;
/// Most updates one getUpdates returns.
const MAX_LIMIT: i64 = 100;

/// The `allowed_updates` parameter, if given (a JSON array of type names).
pub(crate) fn parse_allowed_updates(p: &Params) -> Result<Option<Vec<String>>, ApiError> {
    match p.json("allowed_updates")? {
        None => Ok(None),
        Some(Value::Array(items)) => Ok(Some(
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        )),
        Some(_) => Err(ApiError::bad_request(
            "can't parse allowed_updates JSON object",
        )),
    }
}

fn batch_result(batch: &[Arc<str>]) -> Success {
    let mut s = String::with_capacity(2 + batch.iter().map(|u| u.len() + 1).sum::<usize>());
    s.push('[');
    for (i, u) in batch.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(u);
    }
    s.push(']');
    Success::raw(s)
}

/// Clears the bot's held-poll slot when this poll ends, unless a newer poll
/// has already taken it (also when the client goes away mid-poll).
struct HeldGuard<'a> {
    shared: &'a Shared,
    token: &'a str,
    id: u64,
}

impl Drop for HeldGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        if let Some(bot) = st.bots.get_mut(self.token)
            && bot.held.as_ref().is_some_and(|h| h.id == self.id)
        {
            bot.held = None;
        }
    }
}

/// Answers getUpdates.
pub(crate) async fn get_updates(shared: &Arc<Shared>, token: &str, p: &Params) -> MethodResult {
    let offset = p.i64("offset")?.unwrap_or(0);
    let limit = p.i64("limit")?.unwrap_or(MAX_LIMIT).clamp(1, MAX_LIMIT);
    let limit = usize::try_from(limit).unwrap_or(1);
    let timeout = p
        .f64("timeout")?
        .unwrap_or(0.0)
        .clamp(0.0, MAX_TIMEOUT_SECS);
    let allowed = parse_allowed_updates(p)?;
    let deadline = Instant::now() + Duration::from_secs_f64(timeout);

    let (mut signal, mut end, id) = {
        let mut guard = shared.lock();
        let st = &mut *guard;
        let Some(bot) = st.bots.get_mut(token) else {
            return Err(ApiError::unauthorized());
        };
        if bot.webhook.is_some() {
            return Err(ApiError::new(409, CONFLICT_WEBHOOK_ACTIVE));
        }
        if let Some(a) = allowed {
            bot.allowed_updates = Some(a);
        }
        bot.confirm(offset);
        let batch = bot.batch(limit);
        if !batch.is_empty() || timeout <= 0.0 {
            return Ok(batch_result(&batch));
        }
        bot.end_held_poll(PollEnd::OtherPoller);
        st.next_poll_id += 1;
        let id = st.next_poll_id;
        let (tx, rx) = tokio::sync::oneshot::channel();
        bot.held = Some(HeldPoll { id, end: tx });
        (bot.update_signal.subscribe(), rx, id)
    };
    let _held = HeldGuard { shared, token, id };
    shared.changed.notify_waiters();

    let sleep = tokio::time::sleep_until(deadline);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            biased;
            why = &mut end => {
                return match why {
                    Ok(PollEnd::OtherPoller) => Err(ApiError::new(409, CONFLICT_OTHER_POLLER)),
                    Ok(PollEnd::SetWebhook) => Err(ApiError::new(409, CONFLICT_SET_WEBHOOK)),
                    // The slot was dropped without a reason: answer "nothing".
                    Err(_) => Ok(batch_result(&[])),
                };
            }
            changed = signal.changed() => {
                if changed.is_err() {
                    return Ok(batch_result(&[]));
                }
                let batch = {
                    let mut st = shared.lock();
                    st.bots.get_mut(token).map(|bot| bot.batch(limit)).unwrap_or_default()
                };
                if !batch.is_empty() {
                    return Ok(batch_result(&batch));
                }
            }
            () = &mut sleep => return Ok(batch_result(&[])),
        }
    }
}
