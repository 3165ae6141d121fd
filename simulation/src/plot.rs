//! SVG plots of a report, with `plotters`' SVG backend.
//!
//! The crate is built without its `ttf` feature (no font-kit, no
//! fontconfig): text sizes come from its naive estimate and labels are
//! written as SVG `<text>` elements that the viewer renders with its own
//! sans-serif font.

use std::io;
use std::path::Path;

use plotters::prelude::*;

use crate::fleet::OpKind;
use crate::report::{OpRecord, Report};

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("plotting failed: {e}"))
}

const SIZE: (u32, u32) = (900, 520);
const ALL: RGBColor = RGBColor(31, 119, 180);
const P99: RGBColor = RGBColor(214, 39, 40);
const FAULT: RGBColor = RGBColor(255, 160, 0);
const QUIET: RGBColor = RGBColor(44, 160, 44);
/// The left end of the dissemination plot's log axis: below one poll's
/// resolution, and times of 0 (the op's own node) have to land somewhere.
const FLOOR_MS: f64 = 1.0;

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

/// A kind's colour, fixed so that plots of different runs compare.
fn kind_color(kind: OpKind) -> RGBColor {
    match kind {
        OpKind::KnowledgePut => ALL,
        OpKind::AuditAppend => RGBColor(148, 103, 189),
        OpKind::RoutineAdd => QUIET,
        OpKind::Broadcast => P99,
    }
}

/// Like `cdf`, but each value counts as 1/`total` of the ops, so that ops
/// that never got that far keep the curve below 1.
fn cdf_of(values: &[f64], total: usize) -> Vec<(f64, f64)> {
    let share = values.len() as f64 / total.max(1) as f64;
    cdf(values)
        .into_iter()
        .map(|(x, y)| (x, y * share))
        .collect()
}

/// `dissemination-cdf.svg`: for each op, time until all (and 99% of) its
/// target nodes held it, as cumulative distributions, one colour per op
/// kind. The time axis is logarithmic: the kinds lie orders of magnitude
/// apart (tens of milliseconds for a pushed write, seconds for an audit
/// append seen through a checkpoint).
pub fn dissemination_cdf(report: &Report, path: &Path) -> io::Result<()> {
    let times = |kind: OpKind, pick: fn(&OpRecord) -> Option<f64>| -> Vec<f64> {
        report
            .op_records
            .iter()
            .filter(|r| r.kind == kind && r.acked_ms.is_some())
            .filter_map(pick)
            // A log axis has no zero: a time under the floor is drawn on it.
            .map(|v| v.max(FLOOR_MS))
            .collect()
    };
    let curves: Vec<(OpKind, usize, Vec<f64>, Vec<f64>)> = report
        .dissemination_by_kind
        .iter()
        .map(|(&k, d)| {
            let all = times(k, |r| r.all_ms);
            let p99 = times(k, |r| r.p99_nodes_ms);
            (k, d.acked, all, p99)
        })
        .collect();
    let xmax = curves
        .iter()
        .flat_map(|(_, _, all, p99)| all.iter().chain(p99))
        .copied()
        .fold(10.0 * FLOOR_MS, f64::max)
        * 1.2;
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
        .build_cartesian_2d((FLOOR_MS..xmax).log_scale(), 0f64..1.02)
        .map_err(io_err)?;
    chart
        .configure_mesh()
        .x_desc("time after acknowledgement (ms, log scale)")
        .y_desc("share of the kind's acked ops")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(io_err)?;
    for (kind, acked, all, p99) in &curves {
        let color = kind_color(*kind);
        // The 99% line goes first, wide and pale, so that where the two
        // agree (small fleets: 99% of the nodes is all of them) both stay
        // visible.
        chart
            .draw_series(LineSeries::new(
                steps(&cdf_of(p99, *acked)),
                color.mix(0.4).stroke_width(5),
            ))
            .map_err(io_err)?;
        let style = color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(steps(&cdf_of(all, *acked)), style))
            .map_err(io_err)?
            .label(format!("{} ({acked}), all target nodes", kind.as_str()))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    // A legend entry for the pale lines, drawn off the plot area.
    let pale = BLACK.mix(0.3).stroke_width(5);
    chart
        .draw_series(LineSeries::new(std::iter::empty::<(f64, f64)>(), pale))
        .map_err(io_err)?
        .label("pale, wide: 99% of target nodes")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], pale));
    // Upper left: a CDF climbs from the lower left to the upper right, and
    // the axis starts below what a poll can resolve.
    legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
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
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    root.present().map_err(io_err)
}

fn legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    position: SeriesLabelPosition,
) -> io::Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(io_err)
}
