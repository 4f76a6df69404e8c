//! Pictures people look at: line charts (loss curves, recall curves) and labelled image sheets,
//! drawn with plotters into memory and written as PNG atomically.
//!
//! Text needs a TrueType font: `DASGIL_FONT`, else DejaVu Sans or Liberation Sans from the
//! system (Debian `fonts-dejavu-core`, which tools/setup.sh installs). Without one the pictures
//! are still drawn, without their words, and a warning says why.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use image::RgbImage;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::atomic::{write_atomic, PathIoError};

const FONT_CANDIDATES: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error(transparent)]
    Io(#[from] PathIoError),
    #[error("cannot draw {path}: {message}")]
    Draw { path: PathBuf, message: String },
}

/// Registers a font once; false when none was found (text is then left out).
pub fn fonts() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(p) = std::env::var_os("DASGIL_FONT") {
            candidates.push(p.into());
        }
        candidates.extend(FONT_CANDIDATES.iter().map(PathBuf::from));
        for p in candidates {
            if let Ok(bytes) = std::fs::read(&p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        tracing::warn!(
            "no TrueType font found (set DASGIL_FONT or install fonts-dejavu-core): \
             pictures are drawn without text"
        );
        false
    })
}

pub(crate) fn draw_err(path: &Path, e: impl std::fmt::Display) -> PlotError {
    PlotError::Draw {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Writes an RGB buffer as PNG, atomically.
pub fn save_png(path: &Path, img: &RgbImage) -> Result<(), PlotError> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)
        .map_err(|e| draw_err(path, e))?;
    write_atomic(path, buf.get_ref())?;
    Ok(())
}

/// One named series of (x, y) points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Distinct colours for up to 10 series (then they repeat).
pub fn palette(i: usize) -> RGBColor {
    const C: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = C[i % C.len()];
    RGBColor(r, g, b)
}

/// A chart panel: title, axis labels and series, drawn into one area of a picture.
pub struct Panel<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: &'a [Series],
    /// Log-scale y (values <= 0 are left out).
    pub log_y: bool,
    /// Fixed y range (e.g. 0..100 for percentages) instead of the data's.
    pub y_range: Option<(f64, f64)>,
}

/// Draws panels in a grid of `cols` columns into a PNG of `width` x `height` pixels.
pub fn charts(
    path: &Path,
    panels: &[Panel],
    cols: usize,
    width: u32,
    height: u32,
) -> Result<(), PlotError> {
    let text = fonts();
    let mut buf = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(path, e))?;
        let cols = cols.max(1);
        let rows = panels.len().div_ceil(cols).max(1);
        let areas = root.split_evenly((rows, cols));
        for (panel, area) in panels.iter().zip(areas.iter()) {
            draw_panel(area, panel, text).map_err(|e| draw_err(path, e))?;
        }
        root.present().map_err(|e| draw_err(path, e))?;
    }
    let img = RgbImage::from_raw(width, height, buf).ok_or_else(|| draw_err(path, "buffer"))?;
    save_png(path, &img)
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

fn draw_panel(
    area: &Area,
    p: &Panel,
    text: bool,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let pts = |s: &Series| -> Vec<(f64, f64)> {
        s.points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite() && (!p.log_y || *y > 0.0))
            .collect()
    };
    let all: Vec<(f64, f64)> = p.series.iter().flat_map(pts).collect();
    let (mut x0, mut x1, mut y0, mut y1) = all.iter().fold(
        (f64::MAX, f64::MIN, f64::MAX, f64::MIN),
        |(a, b, c, d), &(x, y)| (a.min(x), b.max(x), c.min(y), d.max(y)),
    );
    if all.is_empty() {
        (x0, x1, y0, y1) = (0.0, 1.0, if p.log_y { 0.1 } else { 0.0 }, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 * 1.1 + 1e-3;
    }
    if let Some((lo, hi)) = p.y_range {
        (y0, y1) = (lo, hi);
    }
    let mut builder = ChartBuilder::on(area);
    builder.margin(12);
    if text {
        builder
            .caption(p.title, ("sans-serif", 18))
            .x_label_area_size(36)
            .y_label_area_size(56);
    }
    // A log axis only pays (and only gets tick labels) over a wide range.
    let log = p.log_y && y1 / y0 > 20.0;
    let legend_at = quietest_corner(&p.series.iter().map(pts).collect::<Vec<_>>(), |x, y| {
        let fy = if log {
            (y.ln() - y0.ln()) / (y1.ln() - y0.ln())
        } else {
            (y - y0) / (y1 - y0)
        };
        ((x - x0) / (x1 - x0), fy)
    });
    // Labels as fine as the axis's span needs, so neighbours differ (a loss between 2.67 and
    // 2.72 is not labelled 2.71, 2.71, 2.71); whole-number x (steps, epochs) only at whole
    // ticks.
    let y_linear = move |v: &f64| span_tick_label(*v, y1 - y0);
    let y_label: &dyn Fn(&f64) -> String = if log { &log_tick_label } else { &y_linear };
    let x_whole = !all.is_empty() && all.iter().all(|(x, _)| x.fract() == 0.0);
    let x_linear = move |v: &f64| {
        if x_whole && (v - v.round()).abs() > 1e-9 * v.abs().max(1.0) {
            String::new()
        } else {
            span_tick_label(*v, x1 - x0)
        }
    };
    // The legend's font: 12 px, smaller (down to 7) where the longest name would not fit the
    // plot's width at 12 (about 0.45 em a character; the line sample and padding ~40 px).
    let longest = p
        .series
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0);
    let plot_width = f64::from(area.dim_in_pixel().0) - 56.0 - 24.0;
    let legend_font = ((plot_width - 40.0) / (0.45 * longest.max(1) as f64)).clamp(7.0, 12.0);
    macro_rules! finish {
        ($chart:expr) => {{
            let mut chart = $chart;
            let mut mesh = chart.configure_mesh();
            mesh.light_line_style(RGBColor(248, 248, 248));
            if text {
                mesh.x_desc(p.x_label)
                    .y_desc(p.y_label)
                    .label_style(("sans-serif", 12))
                    .x_label_formatter(&x_linear)
                    .y_label_formatter(y_label);
            } else {
                mesh.disable_x_axis().disable_y_axis();
            }
            mesh.draw()?;
            for (i, s) in p.series.iter().enumerate() {
                let c = palette(i);
                let drawn = chart.draw_series(LineSeries::new(pts(s), c.stroke_width(2)))?;
                if text {
                    drawn.label(s.name.as_str()).legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 16, y)], c.stroke_width(2))
                    });
                }
            }
            if text && !p.series.is_empty() {
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .label_font(("sans-serif", legend_font))
                    .position(legend_at)
                    .draw()?;
            }
        }};
    }
    if log {
        finish!(builder.build_cartesian_2d(x0..x1, (y0 * 0.9..y1 * 1.1).log_scale())?);
    } else {
        let pad = if p.y_range.is_some() {
            0.0
        } else {
            (y1 - y0) * 0.05
        };
        finish!(builder.build_cartesian_2d(x0..x1, y0 - pad..y1 + pad)?);
    }
    Ok(())
}

/// The corner of a chart whose legend box (45% of the width, 30% of the height) would hide
/// the least of the curves: each curve's segments sampled finely, `unit` mapping a point to
/// the chart's [0, 1] x [0, 1]. Upper right when several tie (none hidden).
fn quietest_corner(
    curves: &[Vec<(f64, f64)>],
    unit: impl Fn(f64, f64) -> (f64, f64),
) -> SeriesLabelPosition {
    let mut under = [0usize; 4];
    let corners = [
        SeriesLabelPosition::UpperRight,
        SeriesLabelPosition::LowerRight,
        SeriesLabelPosition::UpperLeft,
        SeriesLabelPosition::LowerLeft,
    ];
    for c in curves {
        // Each segment at 17 points, ends included (a lone point is a segment to itself).
        let segments = c.windows(2).map(|w| (w[0], w[1]));
        let lone = (c.len() == 1).then(|| (c[0], c[0]));
        for (a, b) in segments.chain(lone) {
            for k in 0..=16 {
                let t = k as f64 / 16.0;
                let (fx, fy) = unit(a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1));
                let (right, left) = (fx > 0.55, fx < 0.45);
                let (top, bottom) = (fy > 0.7, fy < 0.3);
                for (i, hit) in [right && top, right && bottom, left && top, left && bottom]
                    .into_iter()
                    .enumerate()
                {
                    under[i] += hit as usize;
                }
            }
        }
    }
    let best = (0..4).min_by_key(|&i| under[i]).unwrap_or(0);
    corners[best].clone()
}

/// A tick's label: whole numbers without decimals (`200`, not `200.0`), others with up to
/// three significant digits.
pub fn tick_label(v: &f64) -> String {
    let a = v.abs();
    if a < 1e-12 {
        // Zero, also -0 and rounding noise around it.
        "0".to_string()
    } else if !(1e-3..1e7).contains(&a) {
        format!("{v:.2e}")
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let digits = (2 - a.log10().floor() as i32).clamp(0, 6) as usize;
        let s = format!("{v:.digits$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    }
}

/// [`tick_label`] with at least as many decimals as ticks about a tenth of `span` apart need
/// (plotters puts about ten on an axis) to differ from each other.
pub fn span_tick_label(v: f64, span: f64) -> String {
    let a = v.abs();
    // One format for the whole axis: fixed decimals wherever a tenth of the span needs six or
    // fewer (an axis from 0 to 0.001 reads 0.0002, not 2.00e-4 beside 0.001).
    let needed = (-(span / 10.0).log10()).ceil().max(0.0);
    if !(span.is_finite() && span > 0.0 && (1e-12..1e7).contains(&a)) || needed > 6.0 {
        return tick_label(&v);
    }
    let needed = needed as usize;
    let own = if v.fract() == 0.0 || a < 1e-3 {
        0
    } else {
        (2 - a.log10().floor() as i32).clamp(0, 6) as usize
    };
    let digits = needed.max(own);
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A log axis's tick label: only at 1, 2 and 5 times a power of ten (the others, 3-9, crowd
/// each other near the top of a decade), blank elsewhere.
fn log_tick_label(v: &f64) -> String {
    if !(v.is_finite() && *v > 0.0) {
        return String::new();
    }
    // v / m a power of ten, to rounding (log10 of an exact power of ten may be off by an ulp).
    if [1.0, 2.0, 5.0].iter().any(|m| {
        let e = (v / m).log10();
        (e - e.round()).abs() < 1e-9
    }) {
        tick_label(v)
    } else {
        String::new()
    }
}

/// A grid of equally sized images with a caption above each, and a title line, as a PNG.
pub fn image_sheet(
    path: &Path,
    title: &str,
    rows: &[Vec<(String, RgbImage)>],
    cell_w: u32,
) -> Result<(), PlotError> {
    let sheet = sheet_image(path, title, rows, cell_w)?;
    save_png(path, &sheet)
}

/// [`image_sheet`]'s picture (`path` only names it in errors).
pub fn sheet_image(
    path: &Path,
    title: &str,
    rows: &[Vec<(String, RgbImage)>],
    cell_w: u32,
) -> Result<RgbImage, PlotError> {
    let text = fonts();
    let caption_h = if text { 20 } else { 4 };
    let cols = rows.iter().map(Vec::len).max().unwrap_or(1).max(1) as u32;
    // The title wraps at word boundaries to the sheet's width.
    let title_lines = if text {
        wrap(title, (cols * (cell_w + 6)).saturating_sub(10), |s| {
            ("sans-serif", 18)
                .into_font()
                .box_size(s)
                .map_or(0, |(w, _)| w)
        })
    } else {
        Vec::new()
    };
    let title_h = if text {
        22 * title_lines.len() as u32 + 8
    } else {
        4
    };
    let cell_h = rows
        .iter()
        .flatten()
        .map(|(_, im)| (im.height() as f64 * cell_w as f64 / im.width().max(1) as f64) as u32)
        .max()
        .unwrap_or(1)
        .max(1);
    let (w, h) = (
        cols * (cell_w + 6) + 6,
        title_h + rows.len() as u32 * (cell_h + caption_h + 6) + 6,
    );
    let mut sheet = RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    let mut labels = Vec::new();
    for (r, row) in rows.iter().enumerate() {
        for (c, (caption, im)) in row.iter().enumerate() {
            let x = 6 + c as u32 * (cell_w + 6);
            let y = title_h + r as u32 * (cell_h + caption_h + 6);
            let th = (im.height() as f64 * cell_w as f64 / im.width().max(1) as f64) as u32;
            let thumb = image::imageops::resize(
                im,
                cell_w,
                th.max(1),
                image::imageops::FilterType::Triangle,
            );
            image::imageops::overlay(&mut sheet, &thumb, x as i64, (y + caption_h) as i64);
            labels.push((caption.clone(), x, y + 2));
        }
    }
    if text {
        let mut buf = sheet.into_raw();
        {
            let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
            let style = ("sans-serif", 18).into_font().color(&BLACK);
            for (i, line) in title_lines.iter().enumerate() {
                root.draw_text(line, &style, (8, 6 + 22 * i as i32))
                    .map_err(|e| draw_err(path, e))?;
            }
            let small = ("sans-serif", 14).into_font().color(&BLACK);
            // A caption wider than its image (a recording's long frame names) would run into
            // the next one: it loses its middle instead.
            let fits = |s: &str| {
                root.estimate_text_size(s, &small)
                    .map_or(true, |(tw, _)| tw + 4 <= cell_w)
            };
            for (t, x, y) in &labels {
                root.draw_text(&fit_caption(t, fits), &small, (*x as i32, *y as i32))
                    .map_err(|e| draw_err(path, e))?;
            }
            root.present().map_err(|e| draw_err(path, e))?;
        }
        sheet = RgbImage::from_raw(w, h, buf).ok_or_else(|| draw_err(path, "buffer"))?;
    }
    Ok(sheet)
}

/// `text` in lines of whole words no wider than `width` by `measure` (a word wider than that
/// gets a line of its own).
fn wrap(text: &str, width: u32, measure: impl Fn(&str) -> u32) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if measure(&format!("{line} {word}")) <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

/// `text` as it is when `fits` says so, else with its middle replaced by "..." (keeping as much
/// of both ends as fits: a name's start and its condition and camera at the end).
fn fit_caption(text: &str, fits: impl Fn(&str) -> bool) -> String {
    if fits(text) {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    let part = |from: usize, to: usize| chars[from..to].iter().collect::<String>();
    for keep in (2..chars.len()).rev() {
        let head = keep / 2;
        let s = format!(
            "{}...{}",
            part(0, head),
            part(chars.len() - (keep - head), chars.len())
        );
        if fits(&s) {
            return s;
        }
    }
    "...".to_string()
}

/// Pictures stacked top to bottom on white, each centred.
pub fn stack(parts: &[RgbImage]) -> RgbImage {
    let w = parts.iter().map(RgbImage::width).max().unwrap_or(1);
    let h = parts.iter().map(RgbImage::height).sum::<u32>().max(1);
    let mut out = RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    let mut y = 0;
    for p in parts {
        image::imageops::overlay(&mut out, p, ((w - p.width()) / 2) as i64, y as i64);
        y += p.height();
    }
    out
}

#[cfg(test)]
mod tick_tests {
    use super::*;

    #[test]
    fn tick_labels_drop_needless_decimals_and_log_axes_label_1_2_5_only() {
        assert_eq!(tick_label(&200.0), "200");
        assert_eq!(tick_label(&0.0), "0");
        assert_eq!(tick_label(&-5.0), "-5");
        assert_eq!(tick_label(&0.25), "0.25");
        assert_eq!(tick_label(&37.5), "37.5");
        assert_eq!(tick_label(&0.65), "0.65");
        assert_eq!(tick_label(&1234.7), "1235");
        assert_eq!(log_tick_label(&1000.0), "1000");
        assert_eq!(log_tick_label(&2000.0), "2000");
        assert_eq!(log_tick_label(&5000.0), "5000");
        assert_eq!(log_tick_label(&0.2), "0.2");
        assert_eq!(log_tick_label(&9000.0), "");
        assert_eq!(log_tick_label(&3000.0), "");
        assert_eq!(log_tick_label(&0.0), "");
        assert_eq!(log_tick_label(&1e-3), "0.001");
        assert_eq!(log_tick_label(&0.05), "0.05");
        assert_eq!(tick_label(&-0.0), "0");
        assert_eq!(tick_label(&1e-14), "0");
        assert_eq!(tick_label(&2e-6), "2.00e-6");
        assert_eq!(tick_label(&1.5e-6), "1.50e-6");
        assert_eq!(tick_label(&2.5e7), "2.50e7");
        assert_eq!(tick_label(&0.001), "0.001");
        // On a narrow span, neighbouring ticks differ; on a wide one, as tick_label.
        let ticks: Vec<String> = (0..6)
            .map(|i| span_tick_label(2.67 + 0.01 * i as f64, 0.05))
            .collect();
        assert_eq!(ticks, ["2.67", "2.68", "2.69", "2.7", "2.71", "2.72"]);
        let ticks: Vec<String> = (0..5)
            .map(|i| span_tick_label(2.670 + 0.005 * i as f64, 0.02))
            .collect();
        assert_eq!(ticks, ["2.67", "2.675", "2.68", "2.685", "2.69"]);
        assert_eq!(span_tick_label(1234.7, 5000.0), "1235");
        assert_eq!(span_tick_label(200.0, 1000.0), "200");
        assert_eq!(span_tick_label(0.25, 1.0), "0.25");
        // An axis from 0 to 0.001 (an all-zero loss): fixed decimals throughout.
        let ticks: Vec<String> = (0..=5)
            .map(|i| span_tick_label(0.0002 * i as f64, 0.001))
            .collect();
        assert_eq!(
            ticks,
            ["0", "0.0002", "0.0004", "0.0006", "0.0008", "0.001"]
        );
        assert_eq!(span_tick_label(-0.5, 2.0), "-0.5");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legend_goes_where_it_hides_least() {
        let unit = |x: f64, y: f64| (x / 50.0, y / 100.0);
        let corner = |c: &[Vec<(f64, f64)>]| format!("{:?}", quietest_corner(c, unit));
        // A recall curve near 100% along the top: the legend goes below it.
        let recall = vec![(5.0, 95.0), (10.0, 97.0), (50.0, 100.0)];
        assert_eq!(corner(std::slice::from_ref(&recall)), "LowerRight");
        // A falling loss curve: high on the left, low on the right.
        let loss = vec![(0.0, 100.0), (5.0, 20.0), (50.0, 5.0)];
        assert_eq!(corner(&[loss]), "UpperRight");
        // With a second curve low on the right: the lower left.
        let low = vec![(25.0, 5.0), (50.0, 5.0)];
        assert_eq!(corner(&[low, recall]), "LowerLeft");
        assert_eq!(corner(&[]), "UpperRight");
        // A single point counts too: one in the upper right sends the legend elsewhere.
        assert_ne!(corner(&[vec![(45.0, 95.0)]]), "UpperRight");
    }

    #[test]
    fn a_title_wraps_at_words() {
        let chars = |s: &str| s.chars().count() as u32;
        assert_eq!(
            wrap("the quick brown fox jumps", 10, chars),
            ["the quick", "brown fox", "jumps"]
        );
        assert_eq!(wrap("short", 10, chars), ["short"]);
        assert_eq!(
            wrap("averyveryverylongword x", 5, chars),
            ["averyveryverylongword", "x"]
        );
        assert!(wrap("", 10, chars).is_empty());
    }

    #[test]
    fn a_long_caption_loses_its_middle_and_keeps_both_ends() {
        let fits = |s: &str| s.chars().count() <= 20;
        assert_eq!(fit_caption("short (snow, c0)", fits), "short (snow, c0)");
        let long = "query 1700000012345678901.png (day 14950; c0)";
        let fitted = fit_caption(long, fits);
        assert_eq!(fitted.chars().count(), 20, "{fitted}");
        assert!(
            fitted.starts_with("query 1") && fitted.ends_with("c0)"),
            "{fitted}"
        );
        assert!(fitted.contains("..."), "{fitted}");
        assert_eq!(fit_caption(long, |_| false), "...");
    }
}
