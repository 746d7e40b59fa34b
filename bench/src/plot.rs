//! SVG plots, one per sweep, in the papers' style: the sweep's parameter on x, throughput on
//! y, one line per variant, min-max error bars.

use std::path::Path;

use plotters::prelude::*;

use crate::plan::{Sweep, Variant};
use crate::report::{Cell, sweep_x_name};

fn color(v: Variant) -> RGBColor {
    match v {
        Variant::Afxdp => RGBColor(200, 30, 30),
        Variant::AfxdpRst => RGBColor(240, 140, 40),
        Variant::Dpdk => RGBColor(140, 60, 170),
        Variant::Uring => RGBColor(30, 90, 200),
        Variant::Epoll => RGBColor(40, 140, 60),
        Variant::Reflect => RGBColor(120, 120, 120),
    }
}

/// Draws `sweep`'s throughput (or, for the latency sweep, its percentiles) into `path`.
pub(crate) fn draw(
    path: &Path,
    sweep: Sweep,
    variants: &[Variant],
    cells: &[Cell],
) -> Result<(), String> {
    let rows: Vec<&Cell> = cells.iter().filter(|c| c.point.sweep == sweep).collect();
    let mut xs: Vec<String> = Vec::new();
    for c in &rows {
        if !xs.contains(&c.x) {
            xs.push(c.x.clone());
        }
    }
    let latency = sweep == Sweep::Latency;
    if latency {
        xs = vec!["p50".into(), "p99".into(), "p99.9".into()];
    }
    // (x index, median, min, max) per variant.
    let series: Vec<(Variant, Points)> = variants
        .iter()
        .map(|&v| {
            let mut pts = Vec::new();
            for c in rows.iter().filter(|c| c.variant == v) {
                if latency {
                    // Latencies span decades (µs to ms): plotted as log10(µs).
                    let lg = |x: f64| x.max(0.1).log10();
                    for (i, s) in [c.p50_us, c.p99_us, c.p999_us].into_iter().enumerate() {
                        if let Some(s) = s {
                            pts.push((i, lg(s.median), lg(s.min), lg(s.max)));
                        }
                    }
                } else if let (Some(i), Some(s)) =
                    (xs.iter().position(|x| *x == c.x), c.txns_per_sec)
                {
                    pts.push((i, s.median / 1e3, s.min / 1e3, s.max / 1e3));
                }
            }
            (v, pts)
        })
        .collect();
    let named: Vec<(&str, RGBColor, Points)> = series
        .into_iter()
        .map(|(v, p)| (v.legend(), color(v), p))
        .collect();
    let (x_desc, y_desc) = if latency {
        ("percentile", "latency (µs, log scale)")
    } else {
        (sweep_x_name(sweep), "throughput (k transactions/s)")
    };
    draw_lines(path, sweep.title(), x_desc, y_desc, &xs, &named, latency)
}

/// (x index, median, min, max) of one series.
pub(crate) type Points = Vec<(usize, f64, f64, f64)>;

/// Draws one line per series over the categories `xs` into `path`, with min-max bars; with
/// `log` the values are log10 and the axis is labelled in whole decades.
pub(crate) fn draw_lines(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    xs: &[String],
    series: &[(&str, RGBColor, Points)],
    log: bool,
) -> Result<(), String> {
    let latency = log;
    let top = series
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|p| p.3))
        .fold(0.0f64, f64::max);
    // Latency: whole decades of µs, from the lowest one reached; throughput: from zero.
    let (ymin, ymax) = if latency {
        let bottom = series
            .iter()
            .flat_map(|(_, _, p)| p.iter().map(|p| p.2))
            .fold(f64::INFINITY, f64::min);
        let lo = if bottom.is_finite() {
            bottom.floor()
        } else {
            0.0
        };
        (lo, top.ceil().max(lo + 1.0))
    } else {
        (0.0, top.max(1.0) * 1.15)
    };
    let err = |e: &dyn std::fmt::Display| format!("plot {}: {e}", path.display());
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let n = xs.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), ymin..ymax)
        .map_err(|e| err(&e))?;
    let labels = xs.to_vec();
    chart
        .configure_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_labels(if latency {
            (ymax - ymin) as usize + 1
        } else {
            10
        })
        .y_label_formatter(&|y| {
            if !latency {
                format!("{y:.0}")
            } else if (y - y.round()).abs() < 1e-6 {
                format!("{}", 10f64.powf(y.round()))
            } else {
                String::new()
            }
        })
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(|e| err(&e))?;
    for (name, c, pts) in series {
        if pts.is_empty() {
            continue;
        }
        let c = *c;
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|p| (p.0 as f64, p.1)),
                c.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(
                pts.iter()
                    .map(|p| Circle::new((p.0 as f64, p.1), 4, c.filled())),
            )
            .map_err(|e| err(&e))?;
        chart
            .draw_series(pts.iter().map(|p| {
                PathElement::new(
                    vec![(p.0 as f64, p.2), (p.0 as f64, p.3)],
                    c.stroke_width(1),
                )
            }))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
