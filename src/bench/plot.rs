//! `ferry bench plot FILE… -o out.svg`: draws `--json` runs as one SVG —
//! throughput over time on the left, latency by percentile on the right,
//! every run in its own colour so A/B runs overlay. Hand-written SVG: a
//! plotting crate would weigh more than these two charts.

use super::record::RunRecord;
use anyhow::{Context, bail};
use clap::Args;
use std::fmt::Write;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct PlotArgs {
    /// Run files written by `ferry bench … --json FILE`.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The SVG to write.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Chart title (default: the scenarios plotted).
    #[arg(long)]
    pub title: Option<String>,
}

const COLOURS: [&str; 6] = [
    "#2f6fde", "#e0672b", "#2a9d5b", "#9b4fd1", "#c23b5a", "#7a6a1f",
];
const W: f64 = 960.0;
const H: f64 = 440.0;
/// One panel's plot area.
const PW: f64 = 380.0;
const PH: f64 = 280.0;
const TOP: f64 = 60.0;
const LEFT: [f64; 2] = [70.0, 560.0];

pub fn run(a: PlotArgs) -> anyhow::Result<()> {
    let mut runs = Vec::with_capacity(a.files.len());
    for f in &a.files {
        let mut r = RunRecord::read(f)?;
        // The file name tells A from B (same command, other server flags).
        if let Some(stem) = f.file_stem() {
            r.label = format!("{}: {}", stem.to_string_lossy(), r.label);
        }
        runs.push(r);
    }
    if runs.len() > COLOURS.len() {
        bail!("at most {} runs per plot", COLOURS.len());
    }
    let svg = render(&runs, a.title.as_deref());
    std::fs::write(&a.output, svg).with_context(|| format!("writing {}", a.output.display()))?;
    eprintln!("wrote {}", a.output.display());
    Ok(())
}

/// The whole SVG document.
pub fn render(runs: &[RunRecord], title: Option<&str>) -> String {
    let mut s = String::with_capacity(16 * 1024);
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#ffffff"/>
"##
    );
    let mut scenarios: Vec<&str> = runs.iter().map(|r| r.scenario.as_str()).collect();
    scenarios.dedup();
    let title = title.map_or_else(
        || format!("ferry bench {}", scenarios.join(", ")),
        String::from,
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" font-size="16" font-weight="bold" text-anchor="middle">{}</text>"#,
        W / 2.0,
        esc(&title)
    );
    throughput(&mut s, runs);
    latency(&mut s, runs);
    legend(&mut s, runs);
    s.push_str("</svg>\n");
    s
}

/// Left panel: rate against seconds since the start.
fn throughput(s: &mut String, runs: &[RunRecord]) {
    let x0 = LEFT[0];
    let t_max = runs
        .iter()
        .flat_map(|r| r.series.iter().map(|p| p.t))
        .fold(0.0, f64::max);
    let r_max = runs
        .iter()
        .flat_map(|r| r.series.iter().map(|p| p.rate))
        .fold(0.0, f64::max);
    let (xt, yt) = (nice(t_max.max(1.0)), nice(r_max.max(1.0)));
    let unit = runs.first().map_or("per second", |r| r.unit.as_str());
    frame(s, x0, &format!("throughput ({})", unit), "seconds");
    for i in 0..=4 {
        let v = yt * i as f64 / 4.0;
        let y = TOP + PH - PH * i as f64 / 4.0;
        grid_y(s, x0, y, &short(v));
        let tv = xt * i as f64 / 4.0;
        let x = x0 + PW * i as f64 / 4.0;
        grid_x(s, x, &short(tv));
    }
    for (i, r) in runs.iter().enumerate() {
        let pts: Vec<String> = r
            .series
            .iter()
            .map(|p| {
                format!(
                    "{:.1},{:.1}",
                    x0 + PW * p.t / xt,
                    TOP + PH - PH * p.rate / yt
                )
            })
            .collect();
        polyline(s, &pts, COLOURS[i]);
    }
}

/// Right panel: latency (log scale) against the percentile, spaced by
/// "nines" so the tail is readable: 50, 90, 99, 99.9, 99.99, max.
fn latency(s: &mut String, runs: &[RunRecord]) {
    let x0 = LEFT[1];
    let name = runs.first().map_or("", |r| r.latency_name.as_str());
    frame(
        s,
        x0,
        &format!("{name} latency (ms, log scale)"),
        "percentile",
    );
    const NINES_MAX: f64 = 5.0;
    let nines = |q: f64| {
        if q >= 1.0 {
            NINES_MAX
        } else {
            (-(1.0 - q).log10()).min(NINES_MAX - 0.5)
        }
    };
    for (q, label) in [
        (0.0, "min"),
        (0.9, "90"),
        (0.99, "99"),
        (0.999, "99.9"),
        (0.9999, "99.99"),
        (1.0, "max"),
    ] {
        grid_x(s, x0 + PW * nines(q) / NINES_MAX, label);
    }
    let all: Vec<f64> = runs
        .iter()
        .flat_map(|r| {
            r.latency
                .quantiles
                .iter()
                .map(|&(_, us)| us.max(1) as f64 / 1000.0)
        })
        .collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = all.iter().copied().fold(0.0, f64::max);
    if all.is_empty() {
        return;
    }
    let (d_lo, d_hi) = (
        lo.log10().floor(),
        hi.log10().ceil().max(lo.log10().floor() + 1.0),
    );
    let y_of = |ms: f64| TOP + PH - PH * (ms.log10() - d_lo) / (d_hi - d_lo);
    let mut d = d_lo;
    while d <= d_hi {
        let v = 10f64.powf(d);
        grid_y(s, x0, y_of(v), &short(v));
        d += 1.0;
    }
    for (i, r) in runs.iter().enumerate() {
        let pts: Vec<String> = r
            .latency
            .quantiles
            .iter()
            .map(|&(q, us)| {
                format!(
                    "{:.1},{:.1}",
                    x0 + PW * nines(q) / NINES_MAX,
                    y_of(us.max(1) as f64 / 1000.0)
                )
            })
            .collect();
        polyline(s, &pts, COLOURS[i]);
        for p in &pts {
            if let Some((x, y)) = p.split_once(',') {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{x}" cy="{y}" r="2.5" fill="{}"/>"#,
                    COLOURS[i]
                );
            }
        }
    }
}

fn legend(s: &mut String, runs: &[RunRecord]) {
    for (i, r) in runs.iter().enumerate() {
        let y = TOP + PH + 50.0 + 16.0 * i as f64;
        let summary = headline(r);
        let _ = writeln!(
            s,
            r#"<rect x="{}" y="{}" width="14" height="4" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            LEFT[0],
            y - 4.0,
            COLOURS[i],
            LEFT[0] + 20.0,
            y,
            esc(&format!("{}{summary}", r.label))
        );
    }
}

/// `  — 12,345 msgs/s, p99 3.1 ms` from the run's summary and latency.
fn headline(r: &RunRecord) -> String {
    let mut out = String::new();
    if let Some(tp) = r.summary.get("throughput").and_then(|v| v.as_f64()) {
        let _ = write!(out, " — {} {}", short(tp), r.unit);
    }
    if let Some(&(_, p99)) = r.latency.quantiles.iter().find(|(q, _)| *q == 0.99) {
        let _ = write!(out, ", p99 {:.2} ms", p99 as f64 / 1000.0);
    }
    out
}

fn frame(s: &mut String, x0: f64, title: &str, x_label: &str) {
    let _ = writeln!(
        s,
        r##"<rect x="{x0}" y="{TOP}" width="{PW}" height="{PH}" fill="none" stroke="#9aa3b5"/>
<text x="{}" y="{}" font-weight="bold" text-anchor="middle">{}</text>
<text x="{}" y="{}" fill="#555" text-anchor="middle">{}</text>"##,
        x0 + PW / 2.0,
        TOP - 10.0,
        esc(title),
        x0 + PW / 2.0,
        TOP + PH + 34.0,
        esc(x_label)
    );
}

fn grid_y(s: &mut String, x0: f64, y: f64, label: &str) {
    let _ = writeln!(
        s,
        r##"<line x1="{x0}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#e4e7ec"/><text x="{}" y="{:.1}" fill="#555" text-anchor="end">{}</text>"##,
        x0 + PW,
        x0 - 6.0,
        y + 4.0,
        esc(label)
    );
}

fn grid_x(s: &mut String, x: f64, label: &str) {
    let _ = writeln!(
        s,
        r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{}" stroke="#e4e7ec"/><text x="{x:.1}" y="{}" fill="#555" text-anchor="middle">{}</text>"##,
        TOP + PH,
        TOP + PH + 16.0,
        esc(label)
    );
}

fn polyline(s: &mut String, pts: &[String], colour: &str) {
    if pts.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
        pts.join(" ")
    );
}

/// A round number at or above `v` (1, 2, 2.5, 5 × 10^k).
fn nice(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|&x| x >= v)
        .unwrap_or(10.0 * p)
}

/// 12.5k, 3M, 0.25.
fn short(v: f64) -> String {
    let trim = |x: f64| {
        let s = format!("{x:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    if v >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if v >= 1e4 {
        format!("{}k", trim(v / 1e3))
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        trim(v)
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::record::{Latency, Point};

    fn run(label: &str, rate: f64, p99_us: u64) -> RunRecord {
        RunRecord {
            scenario: "peer".into(),
            label: label.into(),
            started: 0,
            config: serde_json::json!({}),
            unit: "msgs/s".into(),
            series: (1..=5).map(|t| Point { t: t as f64, rate }).collect(),
            latency_name: "ack".into(),
            latency: Latency {
                samples: 100,
                mean_us: 500.0,
                quantiles: vec![(0.5, 400), (0.99, p99_us), (1.0, p99_us * 2)],
                histogram: vec![],
            },
            summary: serde_json::json!({ "throughput": rate }),
        }
    }

    #[test]
    fn two_runs_overlay_with_their_own_colours() {
        let svg = render(
            &[run("A <fjall>", 20_000.0, 3_000), run("B", 15_000.0, 9_000)],
            None,
        );
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
        // One throughput line and one latency line per run.
        assert_eq!(svg.matches("<polyline").count(), 4, "{svg}");
        assert!(svg.contains(COLOURS[0]) && svg.contains(COLOURS[1]));
        // Labels are escaped, figures summarised in the legend.
        assert!(
            svg.contains("A &lt;fjall&gt; — 20k msgs/s, p99 3.00 ms"),
            "{svg}"
        );
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    #[test]
    fn round_axis_maxima() {
        assert_eq!(nice(7.0), 10.0);
        assert_eq!(nice(21_000.0), 25_000.0);
        assert_eq!(short(25_000.0), "25k");
        assert_eq!(short(0.25), "0.25");
    }
}
