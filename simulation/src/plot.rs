//! SVG plots of a report, with `plotters`' SVG backend.
//!
//! The crate is built without its `ttf` feature (no font-kit, no
//! fontconfig): text sizes come from its naive estimate and labels are
//! written as SVG `<text>` elements that the viewer renders with its own
//! sans-serif font.

use std::io;
use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::report::Report;

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("plotting failed: {e}"))
}

const SIZE: (u32, u32) = (900, 520);
const ALL: RGBColor = RGBColor(31, 119, 180);
const P99: RGBColor = RGBColor(214, 39, 40);
const FAULT: RGBColor = RGBColor(255, 160, 0);
const QUIET: RGBColor = RGBColor(44, 160, 44);

/// Points of an empirical CDF: (value, share of values at or below it).
pub fn cdf(values: &[f64]) -> Vec<(f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    v.iter()
        .enumerate()
        .map(|(i, &x)| (x, (i + 1) as f64 / n))
        .collect()
}

/// A CDF as a staircase: it rises at each value and stays flat between.
fn steps(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len() * 2 + 1);
    let mut level = 0.0;
    for &(x, y) in points {
        out.push((x, level));
        out.push((x, y));
        level = y;
    }
    out
}

/// `dissemination-cdf.svg`: for each op, time until all (and 99% of) its
/// target nodes held it, as cumulative distributions.
pub fn dissemination_cdf(report: &Report, path: &Path) -> io::Result<()> {
    let all: Vec<f64> = report.op_records.iter().filter_map(|r| r.all_ms).collect();
    let p99: Vec<f64> = report
        .op_records
        .iter()
        .filter_map(|r| r.p99_nodes_ms)
        .collect();
    let xmax = all.iter().chain(&p99).copied().fold(1.0, f64::max) * 1.05;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(io_err)?;
    let title = format!(
        "{}: dissemination ({} acked ops)",
        report.scenario, report.ops.acked
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..xmax, 0f64..1.02)
        .map_err(io_err)?;
    chart
        .configure_mesh()
        .x_desc("time after acknowledgement (ms)")
        .y_desc("share of ops")
        .draw()
        .map_err(io_err)?;
    // The 99% line goes first, wide and pale, so that where the two agree
    // (small fleets: 99% of the nodes is all of them) both stay visible.
    for (values, style, label) in [
        (&p99, P99.mix(0.45).stroke_width(5), "99% of target nodes"),
        (&all, ALL.stroke_width(2), "all target nodes"),
    ] {
        chart
            .draw_series(LineSeries::new(steps(&cdf(values)), style))
            .map_err(io_err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    legend(&mut chart)?;
    root.present().map_err(io_err)
}

/// `convergence.svg`: the share of live nodes in the largest group with
/// equal digests over time; fault windows shaded orange, quiescence green.
pub fn convergence(report: &Report, path: &Path) -> io::Result<()> {
    let end = (report.duration_ms + report.quiescence_ms).max(report.wall_ms) / 1e3;
    let xmax = end.max(0.001);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(io_err)?;
    let title = format!("{}: agreement between nodes", report.scenario);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..xmax, 0f64..1.05)
        .map_err(io_err)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("share of live nodes agreeing")
        .draw()
        .map_err(io_err)?;
    let q0 = report.duration_ms / 1e3;
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(q0, 0.0), (xmax, 1.05)],
            QUIET.mix(0.12).filled(),
        )))
        .map_err(io_err)?
        .label("quiescence")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], QUIET.mix(0.3).filled()));
    let windows: Vec<(f64, f64)> = report
        .convergence
        .iter()
        .filter(|c| c.fault.is_some())
        .filter_map(|c| Some((c.start_ms? / 1e3, c.end_ms? / 1e3)))
        .collect();
    // A fault that ends where it starts (a join, a permanent link change)
    // still gets a visible sliver.
    let sliver = xmax / 300.0;
    chart
        .draw_series(windows.iter().map(|&(a, b)| {
            Rectangle::new(
                [(a, 0.0), (b.max(a + sliver), 1.05)],
                FAULT.mix(0.25).filled(),
            )
        }))
        .map_err(io_err)?
        .label("fault in force")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], FAULT.mix(0.4).filled()));
    let mut steps = Vec::new();
    for (i, p) in report.agreement.iter().enumerate() {
        let next = report.agreement.get(i + 1).map_or(end, |q| q.t_ms / 1e3);
        steps.push((p.t_ms / 1e3, p.fraction));
        steps.push((next, p.fraction));
    }
    chart
        .draw_series(LineSeries::new(steps, ALL.stroke_width(2)))
        .map_err(io_err)?
        .label("largest agreeing group")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], ALL.stroke_width(2)));
    legend(&mut chart)?;
    root.present().map_err(io_err)
}

type Chart<'a> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

fn legend(chart: &mut Chart<'_>) -> io::Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(io_err)
}
