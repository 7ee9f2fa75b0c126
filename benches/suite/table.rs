//! The one table the suite prints: a row per measured figure with its
//! minimum, median and maximum over the runs, its unit, the target
//! and whether every run met it.

/// What a figure aims at.
#[derive(Clone, Copy)]
pub enum Target {
    /// No target in the issue; reported for the record.
    None,
    /// The yardstick other figures are read against.
    Ruler,
    /// Met when every run is at most this.
    AtMost(f64, &'static str),
    /// Met when every run is at least this.
    AtLeast(f64, &'static str),
}

/// One figure a scenario reports per run.
pub struct Measure {
    pub name: String,
    pub unit: &'static str,
    pub target: Target,
}

pub fn measure(name: impl Into<String>, unit: &'static str, target: Target) -> Measure {
    Measure {
        name: name.into(),
        unit,
        target,
    }
}

pub fn header(runs: usize) {
    println!(
        "\nbotvisor benchmarks ({runs} run(s) per scenario; release build; fake Telegram on 127.0.0.1)\n"
    );
    println!("| # | figure | min | median | max | unit | target | |");
    println!("|---|---|---|---|---|---|---|---|");
}

/// Prints one row; `values` holds one figure per run.
pub fn row(number: &str, measure: &Measure, values: &[f64]) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (min, median, max) = (
        sorted[0],
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1],
    );
    let (target, verdict) = match measure.target {
        Target::None => ("", ""),
        Target::Ruler => ("(ruler)", ""),
        Target::AtMost(limit, text) => (text, if max <= limit { "met" } else { "missed" }),
        Target::AtLeast(limit, text) => (text, if min >= limit { "met" } else { "missed" }),
    };
    println!(
        "| {number} | {} | {} | {} | {} | {} | {target} | {verdict} |",
        measure.name,
        figure(min),
        figure(median),
        figure(max),
        measure.unit
    );
}

/// Prints a row for a scenario that failed its own checks: no number.
pub fn failed(number: &str, measure: &Measure, why: &str) {
    let why = why.lines().next().unwrap_or("").replace('|', "/");
    println!(
        "| {number} | {} | FAILED | FAILED | FAILED | {} | {} | failed: {why} |",
        measure.name,
        measure.unit,
        match measure.target {
            Target::AtMost(_, text) | Target::AtLeast(_, text) => text,
            Target::None | Target::Ruler => "",
        }
    );
}

/// A figure with as many decimals as its size deserves.
fn figure(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".to_owned()
    } else if a >= 1000.0 {
        let whole = format!("{v:.0}");
        // Thousands separators, as the issue writes its targets.
        let (sign, digits) = whole.split_at(usize::from(whole.starts_with('-')));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}
