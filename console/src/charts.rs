//! Charts as SVG, drawn with plotters' SVG backend: line charts of time
//! series and a bar histogram. Text uses the browser's sans-serif font.

use crate::series::Point;
use crate::ConsoleError;
use plotters::prelude::*;

const W: u32 = 560;
const H: u32 = 220;
const COLORS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
];

fn err<E: std::fmt::Display>(e: E) -> ConsoleError {
    ConsoleError::Chart(e.to_string())
}

/// `HH:MM`, or `HH:MM:SS` with `seconds` (UTC), of a Unix time in ms.
fn clock(ms: u64, seconds: bool) -> String {
    let s = (ms / 1000) % 86_400;
    if seconds {
        format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
    } else {
        format!("{:02}:{:02}", s / 3600, (s / 60) % 60)
    }
}

/// A line chart of named series over time, points marked; `now_ms` is the
/// right edge when no series has a point.
pub fn line_chart(
    title: &str,
    unit: &str,
    series: &[(&str, Vec<Point>)],
    now_ms: u64,
) -> Result<String, ConsoleError> {
    let all = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y1) = (u64::MAX, 0u64, 0f64);
    for (x, y) in all {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y1 = y1.max(*y);
    }
    if x0 > x1 {
        (x0, x1) = (now_ms.saturating_sub(600_000), now_ms);
    }
    if x1 - x0 < 60_000 {
        x0 = x1.saturating_sub(60_000);
    }
    let y1 = if y1 <= 0.0 { 1.0 } else { y1 * 1.15 };
    let seconds = x1 - x0 <= 15 * 60_000;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, 0f64..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(5)
            .x_label_formatter(&|x| clock(*x, seconds))
            .y_desc(unit)
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(err)?;
        for (i, (name, points)) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(err)?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], color));
            chart
                .draw_series(points.iter().map(|p| Circle::new(*p, 2, color.filled())))
                .map_err(err)?;
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .border_style(RGBColor(200, 200, 200))
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// A bar histogram: one bar per `(label, count)`.
pub fn histogram(title: &str, bars: &[(String, u64)]) -> Result<String, ConsoleError> {
    let n = bars.len().max(1) as u32;
    let top = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1);
    let y1 = top + top / 8 + 1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(56)
            .build_cartesian_2d((0u32..n).into_segmented(), 0u64..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(bars.len().max(1))
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => bars
                    .get(*i as usize)
                    .map(|b| b.0.clone())
                    .unwrap_or_default(),
                _ => String::new(),
            })
            .y_desc("calls")
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(
                Histogram::vertical(&chart)
                    .style(COLORS[0].filled())
                    .margin(3)
                    .data(bars.iter().enumerate().map(|(i, b)| (i as u32, b.1))),
            )
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_line_chart_is_svg_with_a_mark_per_point() {
        let pts = vec![(1_000_000, 1.0), (1_010_000, 3.0), (1_020_000, 2.0)];
        let svg = line_chart("QPS", "req/s", &[("calls", pts)], 1_020_000).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("QPS"));
        // No points: still a chart, with no marks.
        let empty = line_chart("QPS", "req/s", &[("calls", vec![])], 1_020_000).unwrap();
        assert!(empty.starts_with("<svg") && !empty.contains("<circle"));
    }

    #[test]
    fn a_histogram_draws_one_bar_per_bucket() {
        let bars = vec![
            ("≤1".to_string(), 3),
            ("≤2".to_string(), 0),
            ("≤5".to_string(), 7),
        ];
        let svg = histogram("RTT", &bars).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("≤5"));
        assert!(svg.matches("<rect").count() >= 2, "{svg}");
    }
}
