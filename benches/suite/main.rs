//! `cargo bench`: botvisor's footprint and speed, measured the same way
//! every time (BENCHMARKS.md describes each scenario and holds a run).
//!
//! Drives the release build of `botvisor` against the project's fake
//! Telegram on 127.0.0.1 and prints one table: for every figure the minimum,
//! median and maximum over several runs, and the target it aims at. Each
//! run checks its own outcome (every reply arrived, once, in order; every
//! bot answered; the exit was clean) and panics otherwise; a scenario with
//! a failed run prints FAILED instead of numbers and the suite exits 1.
//!
//! - `BOTVISOR_BENCH_RUNS=N`: runs per scenario (default 3); `1` for a
//!   quick development run.
//! - `BOTVISOR_BENCH_ONLY=a,b`: only these scenarios (`capacity`, `idle`,
//!   `burst`, `steady`, `scale-1`, `scale-10`, `scale-100`, `scale-500`,
//!   `scale-1000`, `scale-10000`,
//!   `shutdown`, `shutdown-in-flight`, `reload`, `reload-10000`, `conflict`, `takeover`,
//!   `broadcast`, `startup`, `busy-group`, `deep-page`, `gateway-burst`,
//!   `gateway-capacity`, `gateway-busy-group`, `gateway-burst-limits`,
//!   `gateway-footprint`, `fleet-3`, `scale-10000-webhook`); a name also selects the scenarios named after it
//!   with a dash (`scale`: all six sizes; `gateway`: all five;
//!   `gateway-burst` also `gateway-burst-limits`). `gateway-burst-limits`
//!   (about two and a half minutes) runs once whatever the number of runs.
//! - `BOTVISOR_BENCH_DATABASE_URL=postgres://…` (or `TEST_DATABASE_URL`):
//!   the PostgreSQL server `fleet-3` creates its database on.
//! - `BOTVISOR_BENCH_BIN=path`: benchmark this `botvisor` binary instead
//!   of the one cargo built (to compare builds, e.g. other profiles).

mod broadcast;
mod busy;
mod capacity;
mod conflict;
mod daemon;
mod deep;
mod faq;
mod fleet;
mod footprint;
mod gateway;
mod instances;
mod program;
mod ptb;
// The tests' venv with python-telegram-bot; the suite uses only part of
// it.
#[allow(dead_code)]
#[path = "../../tests/common/python.rs"]
mod python;
mod reload;
mod scale;
mod shutdown;
// The tests' stand-in for the department's web site; the suite uses only
// part of it.
#[allow(dead_code)]
#[path = "../../tests/common/site.rs"]
mod site;
mod table;
mod webhooks;

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use table::{Measure, Target, measure};

type Run = Pin<Box<dyn Future<Output = Vec<f64>> + Send>>;

/// A scenario: its name (for `BOTVISOR_BENCH_ONLY`), its number in the
/// issue, the figures one run reports, how often it runs, and one run.
struct Scenario {
    name: &'static str,
    number: &'static str,
    measures: Vec<Measure>,
    /// Runs once whatever `BOTVISOR_BENCH_RUNS` says: a scenario of
    /// minutes whose figures vary little between runs.
    once: bool,
    run: Box<dyn Fn() -> Run>,
}

fn scenarios() -> Vec<Scenario> {
    use Target::{AtLeast, AtMost, None, Ruler};
    vec![
        Scenario {
            name: "capacity",
            number: "0",
            measures: vec![measure(
                "fake Telegram's capacity: sendMessage, trivial client, 64 at once",
                "requests/s",
                Ruler,
            )],
            once: false,
            run: Box::new(|| Box::pin(capacity::run())),
        },
        Scenario {
            name: "idle",
            number: "1",
            measures: vec![
                measure("idle, shipped two bots: RSS", "MB", AtMost(15.0, "≤ 15")),
                measure(
                    "… of which file-backed (the binary's code and data pages)",
                    "MB",
                    None,
                ),
                measure(
                    "idle, shipped two bots: CPU time per idle minute (30 s measured ×2)",
                    "s/min",
                    AtMost(0.1, "≤ 0.1"),
                ),
            ],
            once: false,
            run: Box::new(|| Box::pin(footprint::idle())),
        },
        Scenario {
            name: "burst",
            number: "2",
            measures: vec![
                measure(
                    "FAQ burst: 10,000 commands from 1,000 chats, total time",
                    "s",
                    None,
                ),
                measure(
                    "FAQ burst: replies per second (durable outbox, pacing off)",
                    "replies/s",
                    AtLeast(8000.0, "≥ 8,000"),
                ),
            ],
            once: false,
            run: Box::new(|| Box::pin(faq::burst())),
        },
        Scenario {
            name: "steady",
            number: "2",
            measures: vec![
                measure("FAQ steady 200 commands/s: latency p50", "ms", None),
                measure(
                    "FAQ steady 200 commands/s: latency p99",
                    "ms",
                    AtMost(5.0, "≤ 5"),
                ),
            ],
            once: false,
            run: Box::new(|| Box::pin(faq::steady())),
        },
        scale_scenario(1),
        scale_scenario(10),
        scale_scenario(100),
        scale_scenario(500),
        scale_scenario(1_000),
        scale_scenario(10_000),
        Scenario {
            name: "shutdown",
            number: "4",
            measures: vec![measure(
                "SIGTERM to exit, shipped two bots idle",
                "ms",
                AtMost(100.0, "≤ 100"),
            )],
            once: false,
            run: Box::new(|| Box::pin(shutdown::idle())),
        },
        Scenario {
            name: "shutdown-in-flight",
            number: "4",
            measures: vec![
                measure(
                    "SIGTERM to exit, 20 handlers in flight (1 s each, all finish)",
                    "s",
                    None,
                ),
                measure("… of which after the last handler's reply", "ms", None),
            ],
            once: false,
            run: Box::new(|| Box::pin(shutdown::in_flight())),
        },
        reload_scenario(100),
        reload_scenario(10_000),
        Scenario {
            name: "conflict",
            number: "6",
            measures: vec![
                measure(
                    "409 storm (5 s): end of storm to next successful poll",
                    "s",
                    None,
                ),
                measure("409 storm: 409s botvisor received", "count", None),
            ],
            once: false,
            run: Box::new(|| Box::pin(conflict::storm())),
        },
        Scenario {
            name: "takeover",
            number: "6",
            measures: vec![
                measure(
                    "takeover, two instances on one SQLite store: SIGTERM to the other's first getUpdates (worst case)",
                    "s",
                    AtMost(2.0, "≤ 2"),
                ),
                measure("takeover: 409s", "count", AtMost(0.0, "0")),
            ],
            once: false,
            run: Box::new(|| Box::pin(conflict::takeover())),
        },
        Scenario {
            name: "scale-10000-webhook",
            number: "22",
            measures: vec![
                measure(
                    "scale, 10,000 webhook bots: start-up to every bot's setWebhook",
                    "s",
                    Target::None,
                ),
                measure("scale, 10,000 webhook bots: RSS", "MB", Target::None),
                measure(
                    "scale, 10,000 webhook bots: CPU time per idle minute",
                    "s/min",
                    AtMost(0.6, "≤ 0.6 (1 % of a core)"),
                ),
                measure(
                    "scale, 10,000 webhook bots: a command to a bot picked at random answered",
                    "ms",
                    Target::None,
                ),
            ],
            once: true,
            run: Box::new(|| Box::pin(webhooks::run())),
        },
        Scenario {
            name: "fleet-3",
            number: "22",
            measures: vec![
                measure(
                    "fleet-3, 300 bots, PostgreSQL, lease_ttl 10 s: a third instance joins → every instance within ±1 of its share",
                    "s",
                    AtMost(20.0, "≤ 20 (2 lease periods)"),
                ),
                measure(
                    "fleet-3: the longest a moved bot ran nowhere (handover gap)",
                    "s",
                    AtMost(2.0, "≤ 2"),
                ),
                measure(
                    "fleet-3: kill -9 of one → its bots running on the others",
                    "s",
                    AtMost(15.0, "≤ 15 (TTL + 5 s)"),
                ),
                measure("fleet-3: 409s", "count", AtMost(0.0, "0")),
            ],
            once: true,
            run: Box::new(|| Box::pin(instances::fleet3())),
        },
        Scenario {
            name: "broadcast",
            number: "7",
            measures: vec![
                measure(
                    "broadcast to 1,000 chats under Telegram's limits: time",
                    "s",
                    None,
                ),
                measure(
                    "broadcast: messages per second (30 allowed)",
                    "messages/s",
                    AtLeast(27.0, "≥ 27 (90 %)"),
                ),
                measure("broadcast: 429s received", "count", AtMost(0.0, "0")),
            ],
            once: false,
            run: Box::new(|| Box::pin(broadcast::run())),
        },
        Scenario {
            name: "startup",
            number: "8",
            measures: vec![
                measure(
                    "start-up: process start to Tanıtım's first getUpdates",
                    "ms",
                    AtMost(100.0, "≤ 100"),
                ),
                measure(
                    "start-up: process start to Duyuru's first getUpdates",
                    "ms",
                    AtMost(100.0, "≤ 100"),
                ),
            ],
            once: false,
            run: Box::new(|| Box::pin(footprint::startup())),
        },
        Scenario {
            name: "busy-group",
            number: "12",
            measures: vec![
                measure(
                    "busy group (40 at once) + 100 private users at 5/s, limits on: private reply p50",
                    "ms",
                    None,
                ),
                measure("busy group: private reply p99", "ms", AtMost(50.0, "≤ 50")),
                measure("busy group: private reply max", "ms", None),
                measure(
                    "busy group: all 40 group answers delivered (20/min allowed)",
                    "s",
                    AtMost(85.0, "≤ 85"),
                ),
                measure("busy group: 429s received", "count", AtMost(1.0, "≤ 1")),
            ],
            once: false,
            run: Box::new(|| Box::pin(busy::run())),
        },
        Scenario {
            name: "deep-page",
            number: "13",
            measures: vec![
                measure(
                    "FAQ at 20/s beside a relay reading a 5 MB, 1M-deep page, one async thread: p50",
                    "ms",
                    None,
                ),
                measure("deep page: FAQ p99", "ms", None),
                measure("deep page: FAQ slowest reply", "ms", AtMost(500.0, "≤ 500")),
                measure("deep page: checks of the page meanwhile", "count", None),
            ],
            once: false,
            run: Box::new(|| Box::pin(deep::run())),
        },
        Scenario {
            name: "gateway-burst",
            number: "21.1",
            measures: vec![
                measure(
                    "python-telegram-bot alone: burst of 2,000 texts from 200 users, replies per second",
                    "replies/s",
                    None,
                ),
                measure(
                    "the same bot through the gateway (pacing off): burst replies per second",
                    "replies/s",
                    None,
                ),
                measure(
                    "gateway ÷ alone: burst replies per second",
                    "ratio",
                    AtLeast(1.0, "≥ 1 (not lower)"),
                ),
                measure("alone: steady 20 texts/s, reply latency p50", "ms", None),
                measure("through the gateway: steady 20/s, latency p50", "ms", None),
                measure("gateway − alone: latency p50", "ms", AtMost(1.0, "≤ 1")),
                measure("alone: steady 20/s, latency p99", "ms", None),
                measure("through the gateway: steady 20/s, latency p99", "ms", None),
            ],
            once: false,
            run: Box::new(|| Box::pin(ptb::burst_and_steady())),
        },
        Scenario {
            name: "gateway-capacity",
            number: "21.2",
            measures: vec![
                measure(
                    "gateway capacity: 20,000 sendMessage over 1,000 chats, 128 at once, pacing off: time",
                    "s",
                    None,
                ),
                measure(
                    "gateway capacity: sends per second",
                    "sends/s",
                    AtLeast(2000.0, "≥ 2,000"),
                ),
            ],
            once: false,
            run: Box::new(|| Box::pin(gateway::capacity())),
        },
        Scenario {
            name: "gateway-busy-group",
            number: "21.3",
            measures: vec![
                measure(
                    "python-telegram-bot through the gateway, busy group (40 at once) + 100 private users at 5/s, limits on: private reply p50",
                    "ms",
                    None,
                ),
                measure(
                    "gateway busy group: private reply p99",
                    "ms",
                    AtMost(50.0, "≤ 50"),
                ),
                measure("gateway busy group: private reply max", "ms", None),
                measure(
                    "gateway busy group: all 40 group answers delivered (20/min allowed)",
                    "s",
                    None,
                ),
                measure(
                    "gateway busy group: 429s received",
                    "count",
                    AtMost(1.0, "≤ 1"),
                ),
            ],
            once: false,
            run: Box::new(|| Box::pin(ptb::busy_group())),
        },
        Scenario {
            name: "gateway-burst-limits",
            number: "21.4",
            measures: vec![
                measure(
                    "python-telegram-bot through the gateway, 3,000 texts from 1,000 users at once, limits on: delivered",
                    "count",
                    AtLeast(3000.0, "3,000"),
                ),
                measure(
                    "gateway burst under limits: first text to last reply",
                    "s",
                    None,
                ),
                measure(
                    "gateway burst under limits: replies per second (30 allowed)",
                    "replies/s",
                    AtLeast(28.5, "≥ 28.5 (95 %)"),
                ),
                measure(
                    "gateway burst under limits: 429s received",
                    "count",
                    AtMost(1.0, "≤ 1"),
                ),
                measure(
                    "python-telegram-bot alone, the same burst: delivered",
                    "count",
                    None,
                ),
                measure("python-telegram-bot alone: 429s received", "count", None),
            ],
            once: true,
            run: Box::new(|| Box::pin(ptb::burst_limits())),
        },
        Scenario {
            name: "gateway-footprint",
            number: "21.5",
            measures: vec![
                measure("botvisor with 1 probe process bot: RSS", "MB", None),
                measure("botvisor with 50 probe process bots: RSS", "MB", None),
                measure(
                    "RSS per process bot ((50 − 1) ÷ 49)",
                    "MB",
                    AtMost(2.0, "≤ 2"),
                ),
                measure(
                    "50 MB sendDocument through the gateway: RSS growth (20 ms samples)",
                    "MB",
                    AtMost(10.0, "≤ 10"),
                ),
                measure("50 MB sendDocument: time to the answer", "s", None),
            ],
            once: false,
            run: Box::new(|| Box::pin(gateway::footprint())),
        },
    ]
}

fn reload_scenario(n: usize) -> Scenario {
    use Target::{AtMost, None};
    let (polls, after) = if n > 100 {
        (AtMost(20.0, "≤ 20"), AtMost(100.0, "≤ 100 (no pause)"))
    } else {
        (AtMost(500.0, "≤ 500"), AtMost(100.0, "≤ 100 (no pause)"))
    };
    let others = n - 1;
    Scenario {
        name: if n > 100 { "reload-10000" } else { "reload" },
        number: if n > 100 { "22" } else { "5" },
        measures: vec![
            measure(
                format!("SIGHUP, 1 of {n} bots changed: it polls again"),
                "ms",
                polls,
            ),
            measure(
                format!("SIGHUP: reconnects or dropped polls of the other {others}"),
                "count",
                AtMost(0.0, "0"),
            ),
            measure(
                format!("SIGHUP: other {others}, slowest reply in the 0.5 s before"),
                "ms",
                None,
            ),
            measure(
                format!("SIGHUP: other {others}, slowest reply in the 1.5 s after"),
                "ms",
                after,
            ),
        ],
        once: n > 100,
        run: Box::new(move || Box::pin(reload::run(n))),
    }
}

fn scale_scenario(n: usize) -> Scenario {
    let (startup, rss, cpu, stop) = match n {
        500 => (
            Target::AtMost(2.0, "≤ 2"),
            Target::AtMost(40.0, "≤ 40"),
            Target::None,
            Target::None,
        ),
        // Issue 22's targets: 20 % of a core is 12 s of CPU a minute.
        10_000 => (
            Target::AtMost(15.0, "≤ 15"),
            Target::AtMost(400.0, "≤ 400"),
            Target::AtMost(12.0, "≤ 12"),
            Target::AtMost(15_000.0, "≤ 15000"),
        ),
        _ => (Target::None, Target::None, Target::None, Target::None),
    };
    let polls = if n >= 1_000 {
        "25 s polls"
    } else {
        "10 s polls"
    };
    let bots = if n == 1 {
        "1 bot".to_owned()
    } else {
        format!("{n} bots")
    };
    let name = match n {
        1 => "scale-1",
        10 => "scale-10",
        100 => "scale-100",
        500 => "scale-500",
        1_000 => "scale-1000",
        _ => "scale-10000",
    };
    let mut measures = vec![
        measure(
            format!("scale, {bots}: start-up to every bot's first getUpdates"),
            "s",
            startup,
        ),
        measure(format!("scale, {bots}: RSS"), "MB", rss),
        measure(
            format!("scale, {bots}: CPU time per idle minute ({polls})"),
            "s/min",
            cpu,
        ),
        measure(format!("scale, {bots}: SIGTERM to exit"), "ms", stop),
    ];
    if n >= 1_000 {
        measures.push(measure(
            format!("scale, {bots}: a command to a bot picked at random answered, median of 20"),
            "ms",
            Target::None,
        ));
    }
    Scenario {
        name,
        number: if n >= 1_000 { "22" } else { "3" },
        measures,
        once: n >= 1_000,
        run: Box::new(move || Box::pin(scale::run(n))),
    }
}

/// What a scenario's runs came to.
enum Outcome {
    /// One figure per measure per run.
    Figures(Vec<Vec<f64>>),
    /// A run failed its checks (the panic message).
    Failed(String),
}

fn panic_text(err: tokio::task::JoinError) -> String {
    match err.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic".to_owned()),
        Err(err) => err.to_string(),
    }
}

#[tokio::main]
async fn main() {
    let runs: usize = match std::env::var("BOTVISOR_BENCH_RUNS") {
        Ok(text) => text
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .expect("BOTVISOR_BENCH_RUNS is a number of runs, at least 1"),
        Err(_) => 3,
    };
    let only: Vec<String> = std::env::var("BOTVISOR_BENCH_ONLY")
        .map(|text| {
            text.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let selected: Vec<Scenario> = scenarios()
        .into_iter()
        .filter(|s| {
            only.is_empty()
                || only
                    .iter()
                    .any(|o| s.name == o || s.name.starts_with(&format!("{o}-")))
        })
        .collect();
    assert!(
        !selected.is_empty(),
        "BOTVISOR_BENCH_ONLY={only:?} selects no scenario"
    );
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for scenario in &selected {
        let mut figures = Vec::new();
        let mut failure = None;
        let runs = if scenario.once { 1 } else { runs };
        for run in 1..=runs {
            eprintln!(
                "[{:>5.1} s] {} run {run}/{runs}",
                started.elapsed().as_secs_f64(),
                scenario.name
            );
            match tokio::spawn((scenario.run)()).await {
                Ok(values) => {
                    assert_eq!(values.len(), scenario.measures.len(), "{}", scenario.name);
                    figures.push(values);
                }
                Err(err) => {
                    failure = Some(panic_text(err));
                    break;
                }
            }
        }
        outcomes.push(match failure {
            Some(why) => Outcome::Failed(why),
            None => Outcome::Figures(figures),
        });
    }
    let elapsed = started.elapsed();
    table::header(runs);
    let mut failed = false;
    for (scenario, outcome) in selected.iter().zip(&outcomes) {
        for (i, measure) in scenario.measures.iter().enumerate() {
            match outcome {
                Outcome::Figures(runs) => {
                    let values: Vec<f64> = runs.iter().map(|r| r[i]).collect();
                    table::row(scenario.number, measure, &values);
                }
                Outcome::Failed(why) => {
                    failed = true;
                    table::failed(scenario.number, measure, why);
                }
            }
        }
    }
    let once: Vec<&str> = selected
        .iter()
        .filter(|s| s.once && runs > 1)
        .map(|s| s.name)
        .collect();
    if !once.is_empty() {
        println!(
            "\nRun once whatever BOTVISOR_BENCH_RUNS says: {}.",
            once.join(", ")
        );
    }
    println!(
        "\nThe whole suite took {:.0} s. Targets are met when every run meets them.",
        elapsed.as_secs_f64()
    );
    if failed {
        std::process::exit(1);
    }
}
