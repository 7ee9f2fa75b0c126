//! The fleet (issue 22): botvisor instances on one PostgreSQL store share
//! the bots by weight. Each instance, once a second, writes its heartbeat,
//! renews its leases (every third of the TTL), reads every heartbeat and
//! lease, and computes the same plan as every other instance (`plan`, pure):
//! the bots it should hold, and those it holds and should hand over. The
//! plan only tells the lease book (`store::fleet`) what to want; the
//! workers take and give up their bots' leases themselves: a standby worker
//! takes a wanted bot once its lease is free or expired, and a worker whose
//! bot is to move ends its session as at a stop (the outbox drains, the
//! offset is confirmed) and releases the lease.

pub mod plan;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use plan::{Instance, Moves, Plan, plan, shares};

use crate::status::{FleetInstance, FleetStatus, StatusBoard};
use crate::store::{FleetView, InstanceInfo, LeaseRow, PgLeases, StoreError};

/// How often the fleet is looked at: how soon a join, a leave or a
/// released bot is acted on.
pub const LOOK_EVERY: Duration = Duration::from_secs(1);

/// The bots this instance runs: Telegram bot id → the bot's name here.
pub type FleetBots = BTreeMap<String, String>;

/// Runs the fleet's loop until `leaving` (the shutdown begins): then it
/// leaves the fleet (its heartbeat row goes, so the others count it out at
/// once and take its bots as they are released) and only renews the leases
/// of the bots still draining, until `stop`.
pub async fn run(
    leases: Arc<PgLeases>,
    bots: watch::Receiver<FleetBots>,
    board: StatusBoard,
    leaving: CancellationToken,
    stop: CancellationToken,
) {
    let mut renewed_at: Option<Instant> = None;
    let mut failing = false;
    while !leaving.is_cancelled() {
        let bots_now = bots.borrow().clone();
        match look(&leases, &bots_now, &mut renewed_at, &board).await {
            Ok(()) if failing => {
                info!("the fleet's store answers again");
                failing = false;
            }
            Ok(()) => {}
            Err(err) if !failing => {
                warn!(
                    error = %err,
                    "the fleet cannot reach the store; its leases lapse within the lease TTL and its bots stop"
                );
                failing = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            () = leaving.cancelled() => {}
            () = tokio::time::sleep(LOOK_EVERY) => {}
        }
    }
    leases.set_plan(HashSet::new(), &[]);
    // The draining bots' leases first: the last renewal may be most of a
    // validity ago.
    if let Err(err) = leases.renew().await {
        warn!(error = %err, "renewing the leases of the bots still stopping failed");
    }
    leases.leave().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(leases.ttl() / 3) => {}
        }
        if let Err(err) = leases.renew().await {
            warn!(error = %err, "renewing the leases of the bots still stopping failed");
        }
    }
}

/// One look at the fleet.
async fn look(
    leases: &PgLeases,
    bots: &FleetBots,
    renewed_at: &mut Option<Instant>,
    board: &StatusBoard,
) -> Result<(), StoreError> {
    // The renewal first, timed from when it was sent: a slow or failing
    // heartbeat must not cost the leases their renewal.
    let ttl = leases.ttl();
    if renewed_at.is_none_or(|at| at.elapsed() >= ttl / 3) {
        let sent = Instant::now();
        leases.renew().await?;
        *renewed_at = Some(sent);
    }
    leases.heartbeat().await?;
    let view = leases.view().await?;
    let me = leases.me().id.clone();
    let (plan, instances) = plan_for(&view, ttl, bots);
    let wanted: HashSet<String> = plan
        .holders
        .iter()
        .filter(|(_, holder)| **holder == me)
        .map(|(bot, _)| bot.clone())
        .collect();
    let moves = plan.moves_of(&me);
    leases.set_plan(wanted, &moves.release);
    board.set_fleet(status_of(leases, &view, &plan, &instances, bots));
    Ok(())
}

/// The plan every instance computes from `view`: the instances heard from
/// within the TTL, the bots of this config, and the live holders.
pub fn plan_for(view: &FleetView, ttl: Duration, bots: &FleetBots) -> (Plan, Vec<Instance>) {
    let instances: Vec<Instance> = view
        .alive(ttl)
        .map(|row| Instance {
            id: row.id.clone(),
            weight: row.weight,
        })
        .collect();
    let holders: BTreeMap<String, String> = view
        .leases
        .iter()
        .filter_map(|lease| {
            lease
                .live_holder()
                .map(|holder| (lease.bot_id.clone(), holder.to_owned()))
        })
        .collect();
    let ids: Vec<String> = bots.keys().cloned().collect();
    (plan(&instances, &ids, &holders), instances)
}

/// An instance's id or host as shown: written by another instance into the
/// shared store, so bounded and sanitised like any text from outside.
fn shown(text: &str) -> String {
    crate::sanitize::excerpt(text, 120)
}

/// A bot's name here, or `id:<n>` for a bot this config does not have.
pub fn name_of(bots: &FleetBots, bot_id: &str) -> String {
    bots.get(bot_id)
        .cloned()
        .unwrap_or_else(|| format!("id:{bot_id}"))
}

/// What `/status` shows of the fleet.
fn status_of(
    leases: &PgLeases,
    view: &FleetView,
    plan: &Plan,
    instances: &[Instance],
    bots: &FleetBots,
) -> FleetStatus {
    let alive: BTreeSet<&str> = instances.iter().map(|i| i.id.as_str()).collect();
    let mut rows: Vec<FleetInstance> = view
        .instances
        .iter()
        .filter(|row| alive.contains(row.id.as_str()))
        // Rows other instances wrote are text from outside: bounded and
        // sanitised before they are shown.
        .map(|row| FleetInstance {
            id: shown(&row.id),
            host: shown(&row.host),
            weight: row.weight,
            share: plan.shares.get(&row.id).copied().unwrap_or(0),
            silent_ms: row.silent_ms,
            bots: Vec::new(),
        })
        .collect();
    // By the raw id (as the leases name it), in the rows' order.
    let index: BTreeMap<&str, usize> = view
        .instances
        .iter()
        .filter(|row| alive.contains(row.id.as_str()))
        .enumerate()
        .map(|(i, row)| (row.id.as_str(), i))
        .collect();
    let mut moving = Vec::new();
    for lease in &view.leases {
        if !bots.contains_key(&lease.bot_id) {
            continue;
        }
        let name = name_of(bots, &lease.bot_id);
        let holder = lease.live_holder().filter(|h| alive.contains(h));
        match holder
            .and_then(|h| index.get(h).copied())
            .and_then(|i| rows.get_mut(i))
        {
            Some(row) => {
                row.bots
                    .push((name.clone(), lease.generation, lease.age_ms));
                if plan.holders.get(&lease.bot_id).map(String::as_str) != holder {
                    moving.push(name);
                }
            }
            None => moving.push(name),
        }
    }
    // Bots never taken yet are moving too.
    let leased: HashSet<&str> = view.leases.iter().map(|l| l.bot_id.as_str()).collect();
    for (id, name) in bots {
        if !leased.contains(id.as_str()) {
            moving.push(name.clone());
        }
    }
    moving.sort();
    FleetStatus {
        me: shown(&leases.me().id),
        instances: rows,
        moving,
        handovers: leases.counters.handovers.load(Ordering::Relaxed),
        fencing_refusals: leases.counters.fencing_refusals.load(Ordering::Relaxed),
    }
}

/// An id for this instance, unique per start: the host (Heroku's `DYNO`
/// when set), the process id and a random part.
pub fn instance_id(host: &str) -> String {
    format!(
        "{host}-{}-{:06x}",
        std::process::id(),
        rand::random_range(0..0x100_0000u32)
    )
}

/// This machine's name for the fleet's listing: Heroku's `DYNO`, else the
/// kernel's host name; bounded and sanitised like any outside text.
pub fn host_name(dyno: Option<&str>) -> String {
    let raw = dyno.map(str::to_owned).or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
    });
    let name: String = raw
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(64)
        .collect();
    if name.is_empty() {
        "host".to_owned()
    } else {
        name
    }
}

/// `botvisor fleet`: every instance on the store at `url` with its bots
/// (lease generation and how long held), then the bots moving. Bots are
/// named by `bots` (this config's), others by their id.
///
/// # Errors
/// When the store cannot be read.
pub async fn report(url: &str, ttl: Duration, bots: &FleetBots) -> Result<String, StoreError> {
    let reader = InstanceInfo {
        id: "botvisor-fleet-report".to_owned(),
        host: String::new(),
        started_at: 0,
        weight: 0,
    };
    let leases = PgLeases::new(url, reader, ttl)?;
    let view = leases.view().await?;
    let (plan, instances) = plan_for(&view, ttl, bots);
    let status = status_of(&leases, &view, &plan, &instances, bots);
    Ok(render(&status, &view, &plan, bots))
}

fn render(status: &FleetStatus, view: &FleetView, plan: &Plan, bots: &FleetBots) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if status.instances.is_empty() {
        out.push_str("no instance is running on this store\n");
    }
    for instance in &status.instances {
        let _ = writeln!(
            out,
            "{}  host {}  weight {}  share {}  holds {}  heard {:.1}s ago",
            instance.id,
            instance.host,
            instance.weight,
            instance.share,
            instance.bots.len(),
            instance.silent_ms.max(0) as f64 / 1000.0
        );
        for (name, generation, age_ms) in &instance.bots {
            let _ = writeln!(
                out,
                "  {name:<24} generation {generation:<6} held {}s",
                age_ms / 1000
            );
        }
    }
    if status.moving.is_empty() {
        out.push_str("moving: none\n");
    } else {
        out.push_str("moving:\n");
        let moving: HashSet<&str> = status.moving.iter().map(String::as_str).collect();
        let leases: BTreeMap<&str, &LeaseRow> =
            view.leases.iter().map(|l| (l.bot_id.as_str(), l)).collect();
        for (id, name) in bots {
            if !moving.contains(name.as_str()) {
                continue;
            }
            let lease = leases.get(id.as_str()).copied();
            let now = match lease.and_then(LeaseRow::live_holder) {
                Some(holder) => format!("held by {}", shown(holder)),
                None => "free".to_owned(),
            };
            let to = plan
                .holders
                .get(id)
                .map_or_else(|| "no instance".to_owned(), |to| shown(to));
            let _ = writeln!(out, "  {name:<24} {now}, going to {to}");
        }
    }
    out
}
