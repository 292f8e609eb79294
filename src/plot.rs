//! Plots as SVG text (plotters): the loss curve of a run, and a series with its forecast. The
//! caller writes the text where it belongs (atomically, and only over a file of its own).

use crate::error::{Error, Result};
use plotters::prelude::*;

/// One line of a plot: a label, a colour index and its points.
pub struct Line<'a> {
    /// The legend's text.
    pub label: &'a str,
    /// (x, y) points.
    pub points: Vec<(f64, f64)>,
}

/// Draws lines against a common x axis as an SVG, with the `marks` (whole lines, e.g. XML
/// comments that say which file it is: [`crate::owned::svg_mark`]) right after its opening tag.
pub fn svg(
    title: &str,
    x_label: &str,
    y_label: &str,
    lines: &[Line<'_>],
    marks: &[String],
) -> Result<String> {
    let err = |e: &dyn std::fmt::Display| {
        Error::config(
            format!("cannot draw the plot `{title}`: {e}"),
            "report this as a bug, with the command that drew it",
        )
    };
    let all = lines
        .iter()
        .flat_map(|l| l.points.iter())
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 == x0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    let mut text = String::new();
    let root = SVGBackend::with_string(&mut text, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()
        .map_err(|e| err(&e))?;
    for (i, line) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                line.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(line.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    drop(chart);
    drop(root);
    let split = text.find('\n').map_or(text.len(), |i| i + 1);
    let mut marked = text[..split].to_string();
    for m in marks {
        marked += m;
        marked.push('\n');
    }
    marked += &text[split..];
    Ok(marked)
}
