//! What every bench shares: which benches to run, quick runs, the final table
//! of results and the formats of its figures.

use std::time::Duration;

/// One line of the final table.
pub struct Row {
    pub bench: &'static str,
    pub metric: String,
    pub value: String,
    pub target: String,
    /// Whether the target was met; `None` for a figure without a target.
    pub met: Option<bool>,
}

impl Row {
    /// A figure without a target.
    pub fn info(bench: &'static str, metric: impl Into<String>, value: impl Into<String>) -> Row {
        Row {
            bench,
            metric: metric.into(),
            value: value.into(),
            target: String::new(),
            met: None,
        }
    }

    /// A figure measured against a target.
    pub fn target(
        bench: &'static str,
        metric: impl Into<String>,
        value: impl Into<String>,
        target: impl Into<String>,
        met: bool,
    ) -> Row {
        Row {
            bench,
            metric: metric.into(),
            value: value.into(),
            target: target.into(),
            met: Some(met),
        }
    }
}

/// Prints `rows` as a Markdown table, each column as wide as its widest cell;
/// `value` names the column of figures.
pub fn print_table(value: &str, rows: &[Row]) {
    let headers = ["bench", "metric", value, "target", "met"];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.bench.to_owned(),
                r.metric.clone(),
                r.value.clone(),
                r.target.clone(),
                match r.met {
                    Some(true) => "yes".to_owned(),
                    Some(false) => "NO".to_owned(),
                    None => String::new(),
                },
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    println!();
    line(headers);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    println!("|-{}-|", rule.join("-|-"));
    for row in &cells {
        line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
}

/// The benches named on the command line (all of `benches` when none is);
/// `Err` with a message naming the choices for an unknown one. `cargo bench`
/// passes `--bench`: words starting with `-` are not names.
pub fn selected(benches: &[&'static str]) -> Result<Vec<&'static str>, String> {
    let words: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    if let Some(unknown) = words.iter().find(|w| !benches.contains(&w.as_str())) {
        return Err(format!(
            "unknown bench `{unknown}`; choose among {} (none: all)",
            benches.join(", ")
        ));
    }
    Ok(benches
        .iter()
        .copied()
        .filter(|b| words.is_empty() || words.iter().any(|w| w == b))
        .collect())
}

/// Whether `SLIPWAY_BENCH_QUICK` asks for a quick run (set, not empty, not `0`).
pub fn quick() -> bool {
    std::env::var_os("SLIPWAY_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0")
}

/// The line a bench starts with: what it measures on, and whether the
/// figures mean anything.
pub fn banner(what: &str, quick: bool) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{what} benchmarks: {cores} cores, {} counts{}",
        if quick { "quick (1/10)" } else { "full" },
        if cfg!(debug_assertions) {
            " — DEBUG BUILD, figures are meaningless"
        } else {
            ""
        }
    )
}

/// The `q` quantile of `sorted` (nearest rank); zero when empty.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The median of `samples` (the mean of the middle two for an even count);
/// zero when empty.
pub fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    match sorted.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

/// The median of `values`, as [`median`] for plain numbers; NaN when empty.
pub fn median_of(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// `d` in milliseconds with two decimals: `1.23 ms`.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// `d` in milliseconds, fewer decimals the longer it is: `123 ms`, `12.3 ms`,
/// `0.12 ms`.
pub fn ms_rounded(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 1.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

/// `d` in seconds with two decimals: `1.23 s`.
pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// `bytes` in MiB with one decimal: `12.3 MiB`.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// `n` rounded, with thousands separated: `12,345`.
pub fn thousands(n: f64) -> String {
    let digits = (n.round() as u64).to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
