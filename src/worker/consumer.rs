//! Who consumes a session's updates. The sources (the poll loop in
//! `poll.rs`, the webhook loop in `delivery.rs`) store every new update in
//! the inbox and hand it here; they know nothing of what happens next.
//!
//! - A built-in kind's updates go to its lanes (`dispatch.rs`): handled at
//!   once, before their commit ends, because a handler's decision is
//!   queued behind that commit anyway. The kind's own background work (the
//!   relay's checks) and the chat events the outbox learns run beside
//!   them, and stop with them.
//! - A process bot's updates are offered to its program through the
//!   gateway's `getUpdates` at once too: the program's confirmations and
//!   sends reach the committer behind the commit that stores them, so
//!   nothing it does is recorded or sent before they are stored. They
//!   leave the inbox when the program confirms them. The program itself starts with the first
//!   session and outlives the ones that end for botvisor's own reasons.

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
use crate::gateway::{Gate, Link};
use crate::outbox::{self, Body, OutboxError, Sink};
use crate::status::{StatusSender, WorkerState};
use crate::store::InboxRow;
use crate::telegram::polling::{Delivered, Reading};

/// A program that has not asked for updates this long after it started is
/// reported as not polling.
pub const NOT_POLLING_AFTER: Duration = Duration::from_secs(60);
/// How often a program's state line is brought up to date.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// A handover that resolves once the updates are stored (and, for a
/// consumer that takes them only then, taken).
pub(super) type Handed = Pin<Box<dyn Future<Output = Result<(), OutboxError>> + Send>>;

/// What a running session hands its updates to.
pub(super) enum Consumer {
    /// A built-in kind's handlers, one lane per chat.
    Lanes(Lanes),
    /// A process bot's program, through the gateway.
    Program(Program),
}

/// A built-in kind's side of a session.
pub(super) struct Lanes {
    dispatcher: Dispatcher,
    /// The kind's background work, while it runs.
    background: Option<JoinHandle<()>>,
    background_stop: CancellationToken,
    _stop_background: DropGuard,
}

/// A process bot's side of a session.
pub(super) struct Program {
    kind: Arc<Kind>,
    gate: Arc<Gate>,
    /// Keeps the state line saying what the program does.
    watcher: JoinHandle<()>,
}

/// What a session knows when its consumer starts.
pub(super) struct Start<'a> {
    pub ctx: Arc<Context>,
    pub outbox: &'a mut outbox::Session,
    /// `getMe`'s raw answer.
    pub me: Arc<[u8]>,
    /// A process bot's gate.
    pub gate: Option<Arc<Gate>>,
}

impl Consumer {
    /// Starts the kind (its start-up hook, its background work, its lanes),
    /// or a process bot's program unless it runs already.
    ///
    /// # Errors
    /// How the session ends when the kind or program cannot start (or the
    /// program ended since the last session), or the worker is cancelled
    /// first.
    pub(super) async fn start(
        worker: &Worker,
        kind: &Arc<Kind>,
        start: Start<'_>,
    ) -> Result<Consumer, SessionEnd> {
        if let Kind::Process(_) = &**kind {
            return Program::start(worker, kind, start)
                .await
                .map(Consumer::Program);
        }
        let Start { ctx, outbox, .. } = start;
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
                            // Boxed: the store's writes make a 15 KB
                            // future, held only while an event is recorded.
                            Some(event) => Box::pin(kind.chat_event(&ctx, event)).await,
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

    /// The state line of a running session.
    pub(super) fn running_reason(&self, worker: &Worker, username: &str) -> String {
        match self {
            Consumer::Lanes(_) => {
                let how = match worker.webhook {
                    Some(_) => "receiving by webhook",
                    None => "polling",
                };
                format!("{how} as @{username} ({})", worker.config.kind.name())
            }
            Consumer::Program(program) => program.reason(),
        }
    }

    /// Takes `updates`, whose commit into the inbox is `stored`; resolves
    /// once they are stored (and, for a program, offered).
    pub(super) fn take(
        &mut self,
        updates: Vec<Delivered>,
        stored: impl Future<Output = Result<(), OutboxError>> + Send + 'static,
    ) -> Handed {
        match self {
            Consumer::Lanes(lanes) => {
                // Handled at once: their decisions queue behind `stored`.
                for update in updates.into_iter().filter_map(|d| d.update) {
                    lanes.dispatcher.dispatch(update);
                }
                Box::pin(stored)
            }
            Consumer::Program(program) => {
                // Offered at once, as lanes take theirs: whatever the
                // program does with them (a confirmation, a send) reaches
                // the committer behind this commit, so nothing of it is
                // recorded, or sent, before the update is stored.
                program.gate.offer(
                    updates
                        .into_iter()
                        .map(|d| (d.id(), Arc::<str>::from(d.raw))),
                );
                Box::pin(stored)
            }
        }
    }

    /// Takes the inbox rows a former session (or another instance) left:
    /// those open here already are skipped, those handled already only
    /// leave the inbox, the others are handled (or offered again).
    pub(super) fn resume(&mut self, rows: Vec<InboxRow>, progress: &Progress, sink: &Sink) {
        let reading = self.reading();
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
            let Some(delivered) = Delivered::read(&row.body, reading) else {
                warn!(
                    update_id = row.update_id,
                    "skipping a stored update this version cannot read"
                );
                sink.handled(row.update_id, Vec::new());
                continue;
            };
            match self {
                Consumer::Lanes(lanes) => {
                    if let Some(update) = delivered.update {
                        lanes.dispatcher.resume(update);
                    }
                }
                Consumer::Program(program) => program
                    .gate
                    .offer([(delivered.id(), Arc::<str>::from(delivered.raw))]),
            }
            resumed += 1;
        }
        if let Consumer::Program(program) = self {
            program.gate.resumed();
        }
        if resumed > 0 {
            info!(
                count = resumed,
                "handing over the updates received before the restart"
            );
        }
    }

    /// How much of each update this consumer needs read.
    pub(super) fn reading(&self) -> Reading {
        match self {
            Consumer::Lanes(_) => Reading::Whole,
            Consumer::Program(_) => Reading::IdOnly,
        }
    }

    /// The update types the program asks for, as it changes; `None` for a
    /// kind, whose types are fixed.
    pub(super) fn allowed_updates(
        &self,
    ) -> Option<tokio::sync::watch::Receiver<Option<Vec<String>>>> {
        match self {
            Consumer::Lanes(_) => None,
            Consumer::Program(program) => Some(program.gate.allowed_updates()),
        }
    }

    /// How the session must end because the consumer cannot go on (the
    /// kind's background work stopped, the program ended), if it must.
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
            Consumer::Program(program) => program
                .process()
                .and_then(crate::bots::process::Process::take_exit)
                .map(|ended| SessionEnd::Failed(format!("the program {ended}"))),
        }
    }

    /// Resolves when the consumer cannot go on: how the session ends.
    pub(super) async fn failed(&mut self, worker: &Worker) -> SessionEnd {
        match self {
            Consumer::Lanes(lanes) => match lanes.background.as_mut() {
                Some(background) => {
                    let _ = background.await;
                    lanes.background = None;
                    SessionEnd::Failed(format!(
                        "the {} kind's background work stopped",
                        worker.config.kind.name()
                    ))
                }
                None => std::future::pending().await,
            },
            Consumer::Program(program) => {
                if let Some(process) = program.process() {
                    process.ended().await;
                }
                match self.ended(worker) {
                    Some(end) => end,
                    None => std::future::pending().await,
                }
            }
        }
    }

    /// Stops taking updates: handlers running get `grace` and are then
    /// abandoned, the kind's background work stops. A program is stopped
    /// (SIGTERM, SIGKILL at the grace) when `stop_program` says so, and
    /// left running otherwise; its confirmations reach the outbox until it
    /// has stopped.
    pub(super) async fn finish(self, worker: &Worker, grace: Duration, stop_program: bool) {
        match self {
            Consumer::Lanes(lanes) => {
                lanes.background_stop.cancel();
                let (_unfinished, ()) = tokio::join!(
                    lanes.dispatcher.finish(grace),
                    stop_background(worker, lanes.background, grace)
                );
            }
            Consumer::Program(program) => {
                program.watcher.abort();
                if stop_program && let Some(process) = program.process() {
                    process.stop(grace).await;
                }
                program.gate.detach();
            }
        }
    }
}

impl Program {
    async fn start(
        worker: &Worker,
        kind: &Arc<Kind>,
        start: Start<'_>,
    ) -> Result<Program, SessionEnd> {
        let Kind::Process(process) = &**kind else {
            return Err(SessionEnd::Failed("not a process bot".to_owned()));
        };
        let (Some(gate), Some(host)) = (start.gate, &worker.host) else {
            return Err(SessionEnd::Failed(
                "a process bot needs the gateway, and none runs".to_owned(),
            ));
        };
        // It ended while no session ran: that counts like any other end.
        if let Some(ended) = process.take_exit() {
            return Err(SessionEnd::Failed(format!("the program {ended}")));
        }
        gate.attach(
            Link {
                sink: start.outbox.sink(),
            },
            start.me,
        );
        if process.running().is_none() {
            if process.first_start() {
                sweep(worker, &gate, &start.ctx.bot_id).await;
            }
            if let Err(err) =
                process.start(&host.env, gate.token(), &host.gateway.url(), gate.figures())
            {
                gate.detach();
                return Err(SessionEnd::Failed(err.to_string()));
            }
        }
        let watcher = tokio::spawn(
            watch_program(kind.clone(), gate.clone(), worker.status.clone()).in_current_span(),
        );
        Ok(Program {
            kind: kind.clone(),
            gate,
            watcher,
        })
    }

    fn process(&self) -> Option<&crate::bots::process::Process> {
        match &*self.kind {
            Kind::Process(process) => Some(process),
            _ => None,
        }
    }

    fn reason(&self) -> String {
        match self
            .process()
            .and_then(crate::bots::process::Process::running)
        {
            Some((pid, ran)) => program_reason(
                crate::status::program_pid(pid),
                ran,
                self.gate.figures().has_polled(),
            ),
            None => "the program is not running".to_owned(),
        }
    }
}

/// What a running program's state line says.
fn program_reason(pid: u32, ran: Duration, polled: bool) -> String {
    if polled {
        format!("pid {pid}, polling the gateway")
    } else if ran >= NOT_POLLING_AFTER {
        format!(
            "pid {pid}, not polling the gateway: no getUpdates in the {} since it started",
            crate::status::short(NOT_POLLING_AFTER)
        )
    } else {
        format!("pid {pid}, started; waiting for its first getUpdates")
    }
}

/// Keeps a running program's state line true: started, polling, or not
/// polling a minute after it started (said once in the log too).
async fn watch_program(kind: Arc<Kind>, gate: Arc<Gate>, status: StatusSender) {
    let Kind::Process(process) = &*kind else {
        return;
    };
    let mut warned = false;
    loop {
        let Some((pid, ran)) = process.running() else {
            return;
        };
        let polled = gate.figures().has_polled();
        if !polled && ran >= NOT_POLLING_AFTER && !warned {
            warned = true;
            warn!(
                pid,
                "the bot's program has not asked the gateway for updates in the {} since it \
                 started: does it read BOT_API_URL?",
                crate::status::short(NOT_POLLING_AFTER)
            );
        }
        if status.state() == WorkerState::Running {
            let reason = program_reason(crate::status::program_pid(pid), ran, polled);
            if status.reason() != reason {
                status.set(WorkerState::Running, reason, None);
            }
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
}

/// Removes the uploads a crash left in the bot's spool folder, keeping
/// those its queued messages still need.
async fn sweep(worker: &Worker, gate: &Gate, bot_id: &str) {
    let rows = match worker.store.outbox_rows(bot_id).await {
        Ok(rows) => rows,
        Err(_) => return,
    };
    let keep: std::collections::HashSet<std::path::PathBuf> = rows
        .iter()
        .filter_map(|row| serde_json::from_str::<Body>(&row.body).ok())
        .filter_map(|body| match body {
            Body::Call(call) => Some(call.files),
            _ => None,
        })
        .flatten()
        .map(|upload| upload.path)
        .collect();
    crate::gateway::sweep_spool(gate.spool(), &keep);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_programs_state_line_says_whether_it_polls() {
        let cases = [
            (
                Duration::from_secs(1),
                false,
                "pid 7, started; waiting for its first getUpdates",
            ),
            (Duration::from_secs(1), true, "pid 7, polling the gateway"),
            (
                NOT_POLLING_AFTER,
                false,
                "pid 7, not polling the gateway: no getUpdates in the 60.0s since it started",
            ),
            (NOT_POLLING_AFTER * 2, true, "pid 7, polling the gateway"),
        ];
        for (ran, polled, expected) in cases {
            assert_eq!(program_reason(7, ran, polled), expected);
        }
    }
}
