//! `--svg`: dispatch-latency percentiles, burst and stop times per system,
//! drawn as grouped bar charts with plotters' SVG backend.

use std::error::Error;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::Results;

/// One coloured series of a grouped bar chart; `None` draws no bar.
struct Series<'a> {
    name: &'a str,
    color: RGBColor,
    values: Vec<Option<f64>>,
}

const C1: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const C2: RGBColor = RGBColor(0xff, 0x7f, 0x0e);
const C3: RGBColor = RGBColor(0xd6, 0x27, 0x28);

/// Draws one grouped bar chart; `notes[i]` is written where category `i`
/// has no bar at all (e.g. "capped"). Bars above `clip` are cut there and
/// labelled with their value.
fn bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    y_desc: &str,
    labels: &[String],
    series: &[Series<'_>],
    notes: &[Option<String>],
    clip: Option<f64>,
) -> Result<(), Box<dyn Error>>
where
    DB::ErrorType: 'static,
{
    let top = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .fold(0.0f64, |a, &b| a.max(b))
        .max(1e-3)
        .min(clip.unwrap_or(f64::INFINITY))
        * 1.15;
    let n = labels.len() as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .margin_bottom(50)
        .x_label_area_size(10)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..n - 0.5, 0.0f64..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(y_desc)
        .draw()?;
    let k = series.len() as f64;
    let w = 0.8 / k;
    let cut = top / 1.15;
    for (j, s) in series.iter().enumerate() {
        let color = s.color;
        let rects = s.values.iter().enumerate().filter_map(|(i, v)| {
            v.map(|v| {
                let x0 = i as f64 - 0.4 + j as f64 * w;
                Rectangle::new([(x0, 0.0), (x0 + w * 0.9, v.min(cut))], color.filled())
            })
        });
        chart
            .draw_series(rects)?
            .label(s.name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    let label_style = ("sans-serif", 13)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    // `backend_coord` is in the whole image's pixels, `area.draw` in the area's.
    let (bx, by) = area.get_base_pixel();
    let at = |x: f64, y: f64| {
        let (px, py) = chart.backend_coord(&(x, y));
        (px - bx, py - by)
    };
    for s in series {
        for (i, v) in s.values.iter().enumerate() {
            if let Some(v) = v.filter(|&v| v > cut) {
                let j = series.iter().position(|x| std::ptr::eq(x, s)).unwrap_or(0);
                let (px, py) = at(i as f64 - 0.4 + (j as f64 + 0.45) * w, cut);
                let st = ("sans-serif", 12)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Right, VPos::Top));
                area.draw(&Text::new(format!("{v:.0} (cut)"), (px - 4, py), st))?;
            }
        }
    }
    for (i, l) in labels.iter().enumerate() {
        let (px, py) = at(i as f64, 0.0);
        area.draw(&Text::new(l.clone(), (px, py + 6), label_style.clone()))?;
        if let Some(note) = notes.get(i).cloned().flatten() {
            let (nx, ny) = at(i as f64, top * 0.05);
            let st = ("sans-serif", 12)
                .into_font()
                .color(&C3)
                .pos(Pos::new(HPos::Center, VPos::Bottom));
            area.draw(&Text::new(note, (nx, ny), st))?;
        }
    }
    Ok(())
}

/// Writes the chart to `path`.
pub fn write_svg(results: &Results, path: &Path) -> Result<(), Box<dyn Error>> {
    let root = SVGBackend::new(path, (1400, 1000)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(500);
    let (left, right) = bottom.split_horizontally(700);

    let d = &results.dispatch;
    bars(
        &top,
        "Dispatch latency, submit -> first instruction (idle warm pool)",
        "µs",
        &d.iter().map(|r| r.short.clone()).collect::<Vec<_>>(),
        &[
            Series {
                name: "p50",
                color: C1,
                values: d.iter().map(|r| Some(r.latency.p50_us)).collect(),
            },
            Series {
                name: "p90",
                color: C2,
                values: d.iter().map(|r| Some(r.latency.p90_us)).collect(),
            },
            Series {
                name: "p99",
                color: C3,
                values: d.iter().map(|r| Some(r.latency.p99_us)).collect(),
            },
        ],
        &[],
        // A per-thread spawn's p99 can be milliseconds; keep the others visible.
        Some(3.0 * d.iter().map(|r| r.latency.p90_us).fold(0.0, f64::max)),
    )?;

    let b: Vec<_> = results.burst.iter().filter(|r| r.n == 1000).collect();
    bars(
        &left,
        "Burst of 1000 blocking jobs: ms until all run",
        "ms",
        &b.iter().map(|r| r.short.clone()).collect::<Vec<_>>(),
        &[
            Series {
                name: "cold",
                color: C1,
                values: b.iter().map(|r| r.cold_ms).collect(),
            },
            Series {
                name: "warm",
                color: C2,
                values: b.iter().map(|r| r.warm_ms).collect(),
            },
        ],
        &b.iter().map(|r| r.note.clone()).collect::<Vec<_>>(),
        None,
    )?;

    let s = &results.stop;
    let n = s.first().map_or(0, |r| r.n);
    bars(
        &right,
        &format!("Stop {n} blocked jobs: ms from the request"),
        "ms",
        &s.iter().map(|r| r.short.clone()).collect::<Vec<_>>(),
        &[
            Series {
                name: "last observed",
                color: C1,
                values: s.iter().map(|r| r.observed_ms).collect(),
            },
            Series {
                name: "call returned",
                color: C2,
                values: s.iter().map(|r| r.returned_ms).collect(),
            },
        ],
        &s.iter().map(|r| r.note.clone()).collect::<Vec<_>>(),
        None,
    )?;
    root.present()?;
    Ok(())
}
