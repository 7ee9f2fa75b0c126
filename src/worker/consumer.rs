//! Who consumes a session's updates. The sources (the poll loop in
//! `poll.rs`, the webhook loop in `delivery.rs`) store every new update in
//! the inbox and hand it here; they know nothing of what happens next.
//!
//! A built-in kind's updates go to its lanes (`dispatch.rs`): handled at
//! once, before their commit ends, because a handler's decision is queued
//! behind that commit anyway. The kind's own background work (the relay's
//! checks) and the chat events the outbox learns run beside them, and stop
//! with them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{Instrument, error, info, warn};

use super::Worker;
use super::decide::SessionEnd;
use super::dispatch::Dispatcher;
use super::progress::Progress;
use crate::bots::{Context, Kind};
use crate::outbox::{self, OutboxError, Sink};
use crate::store::InboxRow;
use crate::telegram::polling::Delivered;

/// A handover that resolves once the updates are stored (and, for a
/// consumer that takes them only then, taken).
pub(super) type Handed = Pin<Box<dyn Future<Output = Result<(), OutboxError>> + Send>>;

/// What a running session hands its updates to.
pub(super) enum Consumer {
    /// A built-in kind's handlers, one lane per chat.
    Lanes(Lanes),
}

/// A built-in kind's side of a session.
pub(super) struct Lanes {
    dispatcher: Dispatcher,
    /// The kind's background work, while it runs.
    background: Option<JoinHandle<()>>,
    background_stop: CancellationToken,
    _stop_background: DropGuard,
}

/// What a session knows when its consumer starts.
pub(super) struct Start<'a> {
    pub ctx: Arc<Context>,
    pub outbox: &'a mut outbox::Session,
}

impl Consumer {
    /// Starts the kind (its start-up hook, its background work, its lanes).
    ///
    /// # Errors
    /// How the session ends when the kind cannot start or the worker is
    /// cancelled first.
    pub(super) async fn start(
        worker: &Worker,
        kind: &Arc<Kind>,
        start: Start<'_>,
    ) -> Result<Consumer, SessionEnd> {
        let Start { ctx, outbox } = start;
        let started = tokio::select! {
            () = worker.cancel.cancelled() => return Err(SessionEnd::Stopped),
            started = kind.start(&ctx) => started,
        };
        if let Err(err) = started {
            return Err(SessionEnd::Failed(format!(
                "the {} kind could not start: {err}",
                worker.config.kind.name()
            )));
        }
        // The kind's own work (the relay's checks) runs beside the source,
        // and hears what the outbox learns about chats.
        let background_stop = CancellationToken::new();
        let background = kind
            .background(ctx.clone(), background_stop.clone())
            .map(|work| tokio::spawn(work.in_current_span()));
        if let Some(mut events) = outbox.take_events() {
            let kind = kind.clone();
            let ctx = ctx.clone();
            let stop = background_stop.clone();
            tokio::spawn(
                async move {
                    loop {
                        let event = tokio::select! {
                            () = stop.cancelled() => return,
                            event = events.recv() => event,
                        };
                        match event {
                            Some(event) => kind.chat_event(&ctx, event).await,
                            None => return,
                        }
                    }
                }
                .in_current_span(),
            );
        }
        let dispatcher = Dispatcher::new(
            kind.clone(),
            ctx.clone(),
            outbox.sink(),
            CancellationToken::new(),
        );
        Ok(Consumer::Lanes(Lanes {
            dispatcher,
            background,
            _stop_background: background_stop.clone().drop_guard(),
            background_stop,
        }))
    }

    /// Takes `updates`, whose commit into the inbox is `stored`; resolves
    /// once they are stored.
    pub(super) fn take(
        &mut self,
        updates: Vec<Delivered>,
        stored: impl Future<Output = Result<(), OutboxError>> + Send + 'static,
    ) -> Handed {
        match self {
            Consumer::Lanes(lanes) => {
                // Handled at once: their decisions queue behind `stored`.
                for delivered in updates {
                    lanes.dispatcher.dispatch(delivered.update);
                }
                Box::pin(stored)
            }
        }
    }

    /// Takes the inbox rows a former session (or another instance) left:
    /// those open here already are skipped, those handled already only
    /// leave the inbox, the others are handled.
    pub(super) fn resume(&mut self, rows: Vec<InboxRow>, progress: &Progress, sink: &Sink) {
        let mut resumed = 0usize;
        for row in rows {
            let (open, handled) = progress
                .with(|ledger| (ledger.is_open(row.update_id), ledger.knows(row.update_id)));
            if open {
                continue;
            }
            progress.with(|ledger| ledger.reopen(row.update_id));
            if handled {
                sink.handled(row.update_id, Vec::new());
                continue;
            }
            let Some(delivered) = Delivered::parse(&row.body) else {
                warn!(
                    update_id = row.update_id,
                    "skipping a stored update this version cannot read"
                );
                sink.handled(row.update_id, Vec::new());
                continue;
            };
            match self {
                Consumer::Lanes(lanes) => lanes.dispatcher.resume(delivered.update),
            }
            resumed += 1;
        }
        if resumed > 0 {
            info!(
                count = resumed,
                "handling the updates received before the restart"
            );
        }
    }

    /// How the session must end because the consumer cannot go on (the
    /// kind's background work stopped), if it must.
    pub(super) fn ended(&mut self, worker: &Worker) -> Option<SessionEnd> {
        match self {
            Consumer::Lanes(lanes) => {
                let stopped = lanes
                    .background
                    .as_ref()
                    .is_some_and(JoinHandle::is_finished);
                stopped.then(|| {
                    lanes.background = None;
                    SessionEnd::Failed(format!(
                        "the {} kind's background work stopped",
                        worker.config.kind.name()
                    ))
                })
            }
        }
    }

    /// Stops taking updates: handlers running get `grace` and are then
    /// abandoned, the kind's background work stops.
    pub(super) async fn finish(self, worker: &Worker, grace: Duration) {
        match self {
            Consumer::Lanes(lanes) => {
                lanes.background_stop.cancel();
                let (_unfinished, ()) = tokio::join!(
                    lanes.dispatcher.finish(grace),
                    stop_background(worker, lanes.background, grace)
                );
            }
        }
    }
}

/// Waits for the kind's background work to stop, within `grace`.
async fn stop_background(worker: &Worker, background: Option<JoinHandle<()>>, grace: Duration) {
    let Some(mut task) = background else {
        return;
    };
    if tokio::time::timeout(grace, &mut task).await.is_err() {
        // Aborted, not detached: nothing of it may run once the lease is
        // given back.
        task.abort();
        let _ = task.await;
        error!(
            "the {} kind's background work did not stop in time; abandoned",
            worker.config.kind.name()
        );
    }
}
