//! The report's plots, as SVG (plotters' SVG backend: text stays SVG text,
//! so no font is needed to draw them).

use std::error::Error;
use std::path::Path;

use plotters::prelude::*;

use crate::model::{Bench, MAP_WAYS, TRANSFER_WAYS};

/// The colour and legend of each way.
const COLOURS: [RGBColor; 3] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
];

/// What the legend says for a way of the map sweep.
pub fn map_label(way: &str) -> &'static str {
    match way {
        "populate" => "ours: populate, 2 MiB entries",
        "per-page" => "ours: one fault per page, as FreeBSD",
        _ => "Linux dom0 gntdev (libxengnttab)",
    }
}

/// What the legend says for a way of the transfer.
pub fn transfer_label(way: &str) -> &'static str {
    match way {
        "mapped" => "grant-mapped (map, copy, unmap)",
        "grant-copy" => "GRANT_COPY",
        _ => "in-domain memcpy",
    }
}

/// `map-sweep.svg`: ns per page against N, both axes logarithmic, one
/// line per way with its rounds' min-max as error bars.
pub fn map_sweep(b: &Bench, path: &Path) -> Result<(), Box<dyn Error>> {
    let all = || b.map.iter();
    let n_max = all().map(|p| p.n).max().ok_or("no map sweep to plot")? as f64;
    let y_min = all()
        .map(|p| p.ns_per_page.min)
        .fold(f64::INFINITY, f64::min);
    let y_max = all().map(|p| p.ns_per_page.max).fold(0.0, f64::max);
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Map + touch + unmap of N grants: ns per page",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (0.7f64..n_max * 1.5).log_scale(),
            (y_min / 1.5..y_max * 1.5).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("N, grants in one mapping (log)")
        .y_desc("ns per page (log), median of the rounds")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    for (i, way) in MAP_WAYS.iter().enumerate() {
        let pts = b.series(way);
        if pts.is_empty() {
            continue;
        }
        let c = COLOURS[i];
        let line: Vec<(f64, f64)> = pts
            .iter()
            .map(|p| (p.n as f64, p.ns_per_page.median))
            .collect();
        chart
            .draw_series(LineSeries::new(line.clone(), c.stroke_width(2)))?
            .label(map_label(way))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(2)));
        chart.draw_series(line.iter().map(|&p| Circle::new(p, 4, c.filled())))?;
        chart.draw_series(pts.iter().map(|p| {
            let s = p.ns_per_page;
            ErrorBar::new_vertical(p.n as f64, s.min, s.median, s.max, c.stroke_width(1), 8)
        }))?;
    }
    legend_and_write(&mut chart, &root)
}

/// `transfer.svg`: MB/s of each way of the transfer, one bar each, with
/// its rounds' min-max.
pub fn transfer(b: &Bench, path: &Path) -> Result<(), Box<dyn Error>> {
    let top = b.transfer.iter().map(|p| p.mb_s.max).fold(0.0, f64::max);
    if b.transfer.is_empty() {
        return Err("no transfer to plot".into());
    }
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mib = b.transfer[0].bytes >> 20;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Transfer of {mib} MiB from domain A to B: MB/s"),
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(20)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..TRANSFER_WAYS.len() as f64, 0f64..top * 1.35)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("MB/s, median of the rounds")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    for (i, way) in TRANSFER_WAYS.iter().enumerate() {
        let Some(p) = b.transfer_of(way) else {
            continue;
        };
        let (c, x) = (COLOURS[i], i as f64);
        chart
            .draw_series([Rectangle::new(
                [(x + 0.2, 0.0), (x + 0.8, p.mb_s.median)],
                c.filled(),
            )])?
            .label(format!(
                "{}: {:.0} MB/s",
                transfer_label(way),
                p.mb_s.median
            ))
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], c.filled()));
        chart.draw_series([ErrorBar::new_vertical(
            x + 0.5,
            p.mb_s.min,
            p.mb_s.median,
            p.mb_s.max,
            BLACK.stroke_width(1),
            12,
        )])?;
    }
    legend_and_write(&mut chart, &root)
}

/// Draws `chart`'s legend (upper right, on a white box) and writes the
/// file behind `root`: the end of both plots.
fn legend_and_write<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    root: &DrawingArea<SVGBackend<'a>, plotters::coord::Shift>,
) -> Result<(), Box<dyn Error>> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
