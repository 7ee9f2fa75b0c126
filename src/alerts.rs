//! Alerts: one message to the operators' chat when a bot's incident opens
//! (parked, a long conflict, a lost store, an empty selector) and one when
//! it closes, sent through one of the bots (`[supervisor.alerts]`).
//!
//! The monitor reads the [`StatusBoard`] once a second and compares the
//! incidents open now with those it saw last: a new one is an alert, a gone
//! one a recovery. An incident that stays open is never repeated, and a bot
//! removed by a reload is forgotten without a message. Messages are capped
//! per hour; one held back is still logged, and the next message that goes
//! says how many were held back. Every text passes the redactor, though no
//! incident detail carries a token. Alerts go through the sending bot's
//! outbox (not durably): paced with its other messages, retried until they
//! go, and sent only by the instance that runs that bot.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::outbox::{OutMessage, Outbox};
use crate::secret::Redactor;
use crate::status::{BotIncidents, Incident, StatusBoard, WorkerState};

/// How often the board is read.
const TICK: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);

/// Where alerts go: the chat, the bot that sends them, and the cap.
#[derive(Clone, Debug)]
pub struct Route {
    /// The sending bot's outbox.
    pub outbox: Outbox,
    pub chat: i64,
    pub max_per_hour: u32,
}

/// What becomes of an alert.
#[derive(Clone, Debug)]
pub enum Target {
    /// No `[supervisor.alerts]`: the workers' own log lines are all.
    Off,
    /// Alerts are configured but their `via_bot` cannot run: logged only.
    Unavailable {
        via_bot: String,
    },
    Send(Route),
}

/// What changed between two readings of the board.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    Opened {
        bot: String,
        incident: Incident,
        detail: String,
    },
    Closed {
        bot: String,
        incident: Incident,
    },
}

impl Change {
    /// The message an operator reads.
    pub fn text(&self) -> String {
        match self {
            Change::Opened {
                bot,
                incident,
                detail,
            } => format!("⚠️ botvisor: {bot} {}: {detail}", incident.describe()),
            Change::Closed { bot, incident } => {
                let now = match incident {
                    Incident::Parked => "is running again",
                    Incident::Conflict => "polls alone again; the conflict is over",
                    Incident::StoreDown => "reaches its store again",
                    Incident::SelectorEmpty => "finds announcements on the list page again",
                    Incident::WebhookFailing => "gets its webhook's updates again",
                };
                format!("✅ botvisor: {bot} {now}")
            }
        }
    }
}

type Open = BTreeMap<(String, Incident), String>;

/// The incidents open on the board, by bot and incident. A store outage
/// stays open here until the store has been healthy for
/// [`crate::status::STORE_SETTLE`] (the board decides), so a store that
/// fails again and again is one alert, not one per retry.
/// A bot in standby is left out: another instance runs it and reports its
/// incidents, so several instances on one store alert once.
fn open_incidents(bots: &[BotIncidents]) -> Open {
    bots.iter()
        .filter(|bot| bot.state != WorkerState::Standby)
        .flat_map(|bot| {
            bot.incidents
                .iter()
                .map(|(incident, detail)| ((bot.name.clone(), *incident), detail.clone()))
        })
        .collect()
}

/// The bots whose incidents this instance reports. A bot in standby counts
/// as absent: its incidents end silently here (the instance that runs it
/// reports them).
/// Only the bots with an incident open matter: looked up by name, so a
/// board of ten thousand quiet bots costs nothing here.
fn present(board: &StatusBoard, open: &Open) -> Vec<String> {
    let mut names: Vec<String> = open
        .keys()
        .map(|(bot, _)| bot)
        .filter(|bot| {
            board
                .state_of(bot)
                .is_some_and(|state| state != WorkerState::Standby)
        })
        .cloned()
        .collect();
    names.dedup();
    names
}

/// The changes from `before` to `now`; bots no longer on the board
/// (`present`) are dropped without a message.
pub fn diff(before: &Open, now: &Open, present: &[String]) -> Vec<Change> {
    let mut changes = Vec::new();
    for ((bot, incident), detail) in now {
        if !before.contains_key(&(bot.clone(), *incident)) {
            changes.push(Change::Opened {
                bot: bot.clone(),
                incident: *incident,
                detail: detail.clone(),
            });
        }
    }
    for (bot, incident) in before.keys() {
        if !now.contains_key(&(bot.clone(), *incident)) && present.contains(bot) {
            changes.push(Change::Closed {
                bot: bot.clone(),
                incident: *incident,
            });
        }
    }
    changes
}

/// The hourly cap: send times within the last hour.
struct Cap {
    sent: VecDeque<Instant>,
    held_back: u64,
}

impl Cap {
    fn allows(&mut self, max_per_hour: u32, now: Instant) -> bool {
        while self
            .sent
            .front()
            .is_some_and(|at| now.duration_since(*at) >= HOUR)
        {
            self.sent.pop_front();
        }
        self.sent.len() < usize::try_from(max_per_hour).unwrap_or(usize::MAX)
    }
}

/// Watches the board and sends alerts to the current target until `stop`;
/// the target may change on reload. An alert is handed to the sending
/// bot's outbox, which keeps it until that bot runs here and Telegram
/// takes it, so a recovery is announced even when the sending bot was down.
pub async fn run(board: StatusBoard, target: watch::Receiver<Target>, stop: CancellationToken) {
    let mut open = Open::new();
    let mut cap = Cap {
        sent: VecDeque::new(),
        held_back: 0,
    };
    // When the last look found no bot with an incident and none has been
    // raised since, there is nothing to look at (ten thousand quiet bots).
    let mut quiet_since: Option<u64> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(TICK) => {}
        }
        let raised = crate::status::raised_count();
        if quiet_since == Some(raised) {
            continue;
        }
        let bots = board.incidents_at(Instant::now());
        quiet_since = bots.is_empty().then_some(raised);
        let present = present(&board, &open);
        let now = open_incidents(&bots);
        let changes = diff(&open, &now, &present);
        open = now;
        let target = target.borrow().clone();
        for change in changes {
            let text = Redactor::global().redact(&change.text()).into_owned();
            let route = match &target {
                Target::Off => continue,
                Target::Unavailable { via_bot } => {
                    warn!(alert = %text, %via_bot, "alert not sent: the alerts' via_bot is not running");
                    continue;
                }
                Target::Send(route) => route,
            };
            if !cap.allows(route.max_per_hour, Instant::now()) {
                cap.held_back += 1;
                warn!(alert = %text, max_per_hour = route.max_per_hour, "alert not sent: max_per_hour reached");
                continue;
            }
            let mut message = text.clone();
            if cap.held_back > 0 {
                message.push_str(&format!(
                    "\n({} earlier alert(s) were held back by max_per_hour; see the logs)",
                    cap.held_back
                ));
            }
            let parts = OutMessage::text(route.chat, message).into_parts();
            for _ in &parts {
                cap.sent.push_back(Instant::now());
            }
            for part in parts {
                route.outbox.send_volatile(part);
            }
            cap.held_back = 0;
            info!(alert = %text, chat = route.chat, "alert queued");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(items: &[(&str, Incident, &str)]) -> Open {
        items
            .iter()
            .map(|(bot, incident, detail)| (((*bot).to_owned(), *incident), (*detail).to_owned()))
            .collect()
    }

    #[test]
    fn an_incident_is_announced_once_and_its_end_once() {
        let present = vec!["a".to_owned(), "b".to_owned()];
        let none = open(&[]);
        let parked = open(&[("a", Incident::Parked, "token rejected")]);
        let parked_again = open(&[("a", Incident::Parked, "token rejected, second try")]);
        // (before, now, expected texts)
        let cases: &[(&Open, &Open, &[&str])] = &[
            (&none, &none, &[]),
            (
                &none,
                &parked,
                &["⚠️ botvisor: a is parked: token rejected"],
            ),
            // Still open, with a new detail: nothing new to say.
            (&parked, &parked_again, &[]),
            (&parked_again, &none, &["✅ botvisor: a is running again"]),
        ];
        for (before, now, expected) in cases {
            let texts: Vec<String> = diff(before, now, &present)
                .iter()
                .map(Change::text)
                .collect();
            assert_eq!(texts, *expected);
        }
    }

    #[test]
    fn a_bot_removed_by_a_reload_is_forgotten_without_a_message() {
        let before = open(&[("gone", Incident::StoreDown, "x")]);
        assert!(diff(&before, &open(&[]), &["a".to_owned()]).is_empty());
    }

    /// A full disk: every session reads the store (clearing the incident)
    /// and fails its first write (raising it) a moment later, for two
    /// minutes; then the store is healthy. The monitor, reading the board
    /// once a second, announces the outage once and its end once, after the
    /// store has stayed healthy for the settle period.
    #[test]
    fn a_flapping_store_outage_is_one_alert_and_one_all_clear() {
        let board = StatusBoard::default();
        let (status, rx) = crate::status::StatusSender::new("a", "echo");
        board.insert("a", rx);
        let present = vec!["a".to_owned()];
        let start = Instant::now();
        let mut open = Open::new();
        let mut changes: Vec<(u64, String)> = Vec::new();
        for second in 0..240u64 {
            let now = start + Duration::from_secs(second);
            if second < 120 {
                // A session every 4 s: the read works, the write fails.
                match second % 4 {
                    0 => status.raise(Incident::StoreDown, format!("write {second} failed")),
                    2 => status.clear_at(Incident::StoreDown, now),
                    _ => {}
                }
            } else if second == 122 {
                // The disk has room again. The last failure was at 116 and
                // the store has been healthy since 118: a later session
                // start does not restart the period.
                status.clear_at(Incident::StoreDown, now);
            }
            let seen = open_incidents(&board.incidents_at(now));
            for change in diff(&open, &seen, &present) {
                changes.push((second, change.text()));
            }
            open = seen;
        }
        let settled = 118 + crate::status::STORE_SETTLE.as_secs();
        assert_eq!(
            changes,
            vec![
                (
                    0,
                    "⚠️ botvisor: a lost its store: write 0 failed".to_owned()
                ),
                (settled, "✅ botvisor: a reaches its store again".to_owned()),
            ]
        );
    }

    #[test]
    fn a_bot_in_standby_is_reported_by_the_instance_that_runs_it() {
        let board = StatusBoard::default();
        let (status, rx) = crate::status::StatusSender::new("a", "echo");
        board.insert("a", rx);
        let mut open = Open::new();
        let mut texts = Vec::new();
        let mut look = |open: &mut Open| {
            let bots = board.incidents_at(Instant::now());
            let seen = open_incidents(&bots);
            for change in diff(open, &seen, &present(&board, open)) {
                texts.push(change.text());
            }
            *open = seen;
        };
        status.set(WorkerState::Running, "polling", None);
        status.raise(Incident::Conflict, "409s for 10m");
        look(&mut open);
        // Another instance took the bot: no all-clear from here.
        status.set(WorkerState::Standby, "another instance holds it", None);
        look(&mut open);
        status.raise(Incident::StoreDown, "the store is gone");
        look(&mut open);
        assert_eq!(texts.len(), 1, "{texts:?}");
        assert!(texts[0].contains("conflict"), "{texts:?}");
    }

    #[test]
    fn the_cap_counts_only_the_last_hour() {
        let start = Instant::now();
        let mut cap = Cap {
            sent: VecDeque::from([start, start]),
            held_back: 0,
        };
        assert!(!cap.allows(2, start + Duration::from_secs(10)));
        assert!(cap.allows(3, start + Duration::from_secs(10)));
        assert!(cap.allows(2, start + HOUR));
    }
}
