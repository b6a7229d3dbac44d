//! Plots for people: labelled axes with units, legends, log scales where values span decades.
//! Each plot is drawn once per backend (PNG is the reference, SVG for papers); fonts are the
//! embedded DejaVu Sans, so a bare machine draws the same pixels.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::experiment::{ExperimentSpec, Row, distinct_by};

type Res<T> = Result<T, String>;

/// Plots an experiment can ask for (`io` is drawn once per (N, d) of an I/O curve).
pub const NAMES: [&str; 18] = [
    "attention-speedup",
    "attention-energy",
    "end-to-end-speedup",
    "end-to-end-energy",
    "attention-dram",
    "attention-utilization",
    "pareto",
    "design-space",
    "io",
    "offload-throughput",
    "flash-throughput",
    "flash-ablation",
    "flash-scaling",
    "flash-offload",
    "serving-throughput",
    "serving-scaling",
    "serving-design",
    "flash-context",
];

/// The x axis of the grouped-bar charts of attention systems.
const XL: &str = "model and sequence length";

/// A line: (label, points, thin, colour index).
type Series = (String, Vec<(f64, f64)>, bool, usize);

fn fonts() -> Res<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .map_err(|_| "invalid font bytes".to_string())?;
        plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold())
            .map_err(|_| "invalid font bytes".to_string())
    })
    .clone()
}

const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn e<E: std::fmt::Debug>(x: E) -> String {
    format!("{x:?}")
}

/// `both` with one drawing expression for both backends (the closures differ only in type).
macro_rules! both {
    ($allowed:expr, $dir:expr, $name:expr, $size:expr, |$a:ident| $body:expr) => {
        both($allowed, $dir, $name, $size, &|$a| $body, &|$a| $body)
    };
}

/// Draws `f` into `dir/name.png` and `dir/name.svg`.
fn both(
    allowed: Option<&[String]>,
    dir: &Path,
    name: &str,
    size: (u32, u32),
    f: &dyn Fn(&DrawingArea<BitMapBackend, Shift>) -> Res<()>,
    g: &dyn Fn(&DrawingArea<SVGBackend, Shift>) -> Res<()>,
) -> Res<Vec<String>> {
    // An experiment may ask for some plots only; I/O curves come one per (N, d) as `io`.
    let kind = if name.starts_with("io-") { "io" } else { name };
    if allowed.is_some_and(|a| !a.iter().any(|x| x == kind)) {
        return Ok(Vec::new());
    }
    let png = dir.join(format!("{name}.png"));
    let svg = dir.join(format!("{name}.svg"));
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        f(&root)?;
        root.present().map_err(e)?;
    }
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        g(&root)?;
        root.present().map_err(e)?;
    }
    Ok(vec![png.display().to_string(), svg.display().to_string()])
}

fn seq_label(n: f64) -> String {
    let n = n as u64;
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{}M", n >> 20)
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{}K", n >> 10)
    } else {
        n.to_string()
    }
}

/// Grouped bars: one group per (model, N), one bar per system.
fn bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    xlabel: &str,
    ylabel: &str,
    groups: &[String],
    series: &[(String, Vec<f64>)],
    log: bool,
) -> Res<()>
where
    DB::ErrorType: 'static,
{
    // Headroom for the legend, a line per series.
    let headroom = 1.4 + 0.09 * series.len().saturating_sub(4) as f64;
    let max = series.iter().flat_map(|s| s.1.iter()).cloned().filter(|v| v.is_finite()).fold(0.0, f64::max) * headroom;
    let min =
        series.iter().flat_map(|s| s.1.iter()).cloned().filter(|v| v.is_finite() && *v > 0.0).fold(f64::MAX, f64::min)
            / 2.0;
    let n = groups.len() as f64;
    let width = 0.8 / series.len().max(1) as f64;
    let mut chart = ChartBuilder::on(root);
    chart
        .caption(title, ("sans-serif", 22, FontStyle::Bold).into_font())
        .margin(12)
        .margin_right(25)
        .x_label_area_size(45)
        .y_label_area_size(85);
    let label_of = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < groups.len() {
            groups[i as usize].clone()
        } else {
            String::new()
        }
    };
    let floor = if log { min.max(1e-12) } else { 0.0 };
    macro_rules! body {
        ($c:expr, $fmt:expr) => {{
            let mut c = $c;
            c.configure_mesh()
                .x_desc(xlabel)
                .y_desc(ylabel)
                .x_labels(groups.len())
                .x_label_formatter(&label_of)
                .x_label_style(("sans-serif", 12))
                .y_label_formatter($fmt)
                .y_label_style(("sans-serif", 14))
                .disable_x_mesh()
                .draw()
                .map_err(e)?;
            for (k, (name, vals)) in series.iter().enumerate() {
                let color = COLORS[k % COLORS.len()];
                let off = -0.4 + width * k as f64;
                c.draw_series(vals.iter().enumerate().filter(|(_, v)| v.is_finite() && **v > floor).map(|(i, &v)| {
                    Rectangle::new([(i as f64 + off, floor), (i as f64 + off + width, v)], color.filled())
                }))
                .map_err(e)?
                .label(name.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
            }
            legend(&mut c, 14, SeriesLabelPosition::UpperRight)?;
        }};
    }
    if log {
        body!(
            chart.build_cartesian_2d(-0.5..n - 0.5, (floor..(max * 4.0).max(min * 10.0)).log_scale()).map_err(e)?,
            &|v: &f64| format!("{v:.0e}")
        );
    } else {
        body!(chart.build_cartesian_2d(-0.5..n - 0.5, 0.0..max.max(1e-12)).map_err(e)?, &|v: &f64| format!("{v:.1}"));
    }
    Ok(())
}

/// The legend every chart draws: upper right, on a translucent white box, in `font` points.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    c: &mut ChartContext<'a, DB, CT>,
    font: u32,
    position: SeriesLabelPosition,
) -> Res<()>
where
    DB::ErrorType: 'static,
{
    c.configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", font))
        .draw()
        .map_err(e)
}

/// `series`: (label, points, thin, colour index).
fn lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    xlabel: &str,
    ylabel: &str,
    series: &[Series],
    logy: bool,
    xfmt: &dyn Fn(&f64) -> String,
) -> Res<()>
where
    DB::ErrorType: 'static,
{
    let xs: Vec<f64> = series.iter().flat_map(|s| s.1.iter().map(|p| p.0)).collect();
    let ys: Vec<f64> =
        series.iter().flat_map(|s| s.1.iter().map(|p| p.1)).filter(|v| v.is_finite() && *v > 0.0).collect();
    let (x0, x1) =
        (xs.iter().cloned().fold(f64::MAX, f64::min) / 1.3, xs.iter().cloned().fold(f64::MIN, f64::max) * 1.3);
    let (y0, y1) = (ys.iter().cloned().fold(f64::MAX, f64::min), ys.iter().cloned().fold(f64::MIN, f64::max));
    // The legend goes to the upper corner whose third of the x range has the lower curves.
    let third = |left: bool| {
        let (lx0, lx1) = (x0.ln(), x1.ln());
        series
            .iter()
            .flat_map(|s| s.1.iter())
            .filter(|p| {
                let f = (p.0.ln() - lx0) / (lx1 - lx0);
                if left { f < 1.0 / 3.0 } else { f > 2.0 / 3.0 }
            })
            .map(|p| p.1)
            .fold(f64::MIN, f64::max)
    };
    let corner =
        if third(true) < third(false) { SeriesLabelPosition::UpperLeft } else { SeriesLabelPosition::UpperRight };
    let mut chart = ChartBuilder::on(root);
    chart
        .caption(title, ("sans-serif", 22, FontStyle::Bold).into_font())
        .margin(12)
        .margin_right(25)
        .x_label_area_size(50)
        .y_label_area_size(90);
    macro_rules! body {
        ($c:expr) => {{
            let mut c = $c;
            c.configure_mesh()
                .x_desc(xlabel)
                .y_desc(ylabel)
                .x_label_formatter(xfmt)
                .x_label_style(("sans-serif", 14))
                .y_label_formatter(&|y| match (logy, *y) {
                    (true, y) if !(1e-2..1e5).contains(&y) => format!("{y:.0e}"),
                    (true, y) if y >= 1.0 => format!("{y:.0}"),
                    (true, y) => format!("{y:.2}"),
                    (false, y) => format!("{y:.2}"),
                })
                .y_label_style(("sans-serif", 14))
                .draw()
                .map_err(e)?;
            for (name, pts, dashed, color) in series.iter() {
                let color = COLORS[*color % COLORS.len()];
                let style = color.stroke_width(if *dashed { 1 } else { 2 });
                c.draw_series(LineSeries::new(pts.clone(), style))
                    .map_err(e)?
                    .label(name.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
                if !*dashed {
                    c.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(e)?;
                }
            }
            legend(&mut c, 13, corner)?;
        }};
    }
    let x = (x0..x1).log_scale().with_key_points(log_ticks(x0, x1));
    if logy {
        // Room above the curves for the legend: about a tenth of the range's decades per entry.
        let head = (y1 / y0).powf(0.1 * series.len() as f64).max(1.5);
        let (lo, hi) = (y0 / 1.5, y1 * head);
        body!(chart.build_cartesian_2d(x, (lo..hi).log_scale().with_key_points(log_ticks(lo, hi))).map_err(e)?);
    } else {
        body!(chart.build_cartesian_2d(x, 0.0..(y1 * 1.45).max(1e-9)).map_err(e)?);
    }
    Ok(())
}

/// Labelled values of a log axis over `[lo, hi]`: 1, 2, 3 and 5 times each power of ten (1, 2
/// and 5 past two decades, powers of ten alone past four), so that a range that starts inside
/// a decade is labelled there too.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let decades = (hi / lo).log10();
    let digits: &[f64] = match decades {
        d if d < 2.0 => &[1.0, 2.0, 3.0, 5.0],
        d if d < 4.0 => &[1.0, 2.0, 5.0],
        _ => &[1.0],
    };
    let mut ticks = Vec::new();
    let mut power = 10f64.powf(lo.log10().floor());
    while power <= hi {
        ticks.extend(digits.iter().map(|d| d * power).filter(|&v| v >= lo && v <= hi));
        power *= 10.0;
    }
    ticks
}

/// A sweep over spec paths: every design point's attention latency against its area (or energy,
/// without an area model), one colour per system, with the Pareto front drawn through it.
fn design_space(spec: &ExperimentSpec, rows: &[Row], dir: &Path) -> Res<Vec<String>> {
    let att: Vec<&Row> = rows.iter().filter(|r| r.s("scope") == "attention").collect();
    let front = crate::attention_systems::pareto_front(rows);
    let systems: Vec<String> = spec.systems.iter().map(|s| s.name.clone()).collect();
    let (cost, cost_label) = crate::attention_systems::cost_of(rows);
    let pts = |f: &dyn Fn(&Row) -> bool| -> Vec<(f64, f64)> {
        att.iter().filter(|r| f(r)).map(|r| (r.f("latency_s") * 1e3, r.f(cost))).collect()
    };
    let (xs, ys): (Vec<f64>, Vec<f64>) = pts(&|_| true).into_iter().unzip();
    let range = |v: &[f64]| {
        (v.iter().cloned().fold(f64::MAX, f64::min) / 1.3, v.iter().cloned().fold(f64::MIN, f64::max) * 1.3)
    };
    let ((x0, x1), (y0, y1)) = (range(&xs), range(&ys));
    // From the decade below, so that the log axis labels the low end too.
    let x0 = 10f64.powf(x0.log10().floor());
    let title = format!(
        "{}: attention latency vs {} over {} design points",
        spec.name,
        cost_label.split(' ').next().unwrap_or_default(),
        att.len()
    );
    let ylabel = format!("{cost_label}, log scale");
    both!(spec.plots.as_deref(), dir, "design-space", (1000, 620), |a| {
        let mut c = ChartBuilder::on(a)
            .caption(&title, ("sans-serif", 22, FontStyle::Bold).into_font())
            .margin(12)
            .margin_right(25)
            .x_label_area_size(50)
            .y_label_area_size(90)
            .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
            .map_err(e)?;
        c.configure_mesh()
            .x_desc("attention latency (ms, log scale)")
            .y_desc(&ylabel)
            .x_labels(12)
            .y_labels(12)
            .x_label_formatter(&|x| if (x - x.round()).abs() < 1e-9 { format!("{x:.0}") } else { format!("{x:.1}") })
            .y_label_formatter(&|y| if *y >= 10.0 { format!("{y:.0}") } else { format!("{y:.2}") })
            .x_label_style(("sans-serif", 14))
            .y_label_style(("sans-serif", 14))
            .draw()
            .map_err(e)?;
        for (i, sys) in systems.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            c.draw_series(
                pts(&|r| r.s("system") == *sys).into_iter().map(|p| Circle::new(p, 2, color.mix(0.6).filled())),
            )
            .map_err(e)?
            .label(format!("{sys}: design points"))
            .legend(move |(x, y)| Circle::new((x + 10, y), 3, color.filled()));
        }
        let line: Vec<(f64, f64)> = front.iter().map(|r| (r.f("latency_s") * 1e3, r.f(cost))).collect();
        c.draw_series(LineSeries::new(line.clone(), BLACK.stroke_width(2)))
            .map_err(e)?
            .label(format!("Pareto front ({} points)", line.len()))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
        c.draw_series(line.iter().map(|&p| Circle::new(p, 4, BLACK.filled()))).map_err(e)?;
        legend(&mut c, 13, SeriesLabelPosition::UpperRight)
    })
}

/// The plots of the `attention-systems` kind: latency, energy, DRAM and utilisation per system; the Pareto front when `pe_dim` is swept.
pub fn attention_systems(spec: &ExperimentSpec, rows: &[Row], dir: &Path) -> Res<Vec<String>> {
    fonts()?;
    if spec.sweep.keys().any(|k| k.contains('.')) {
        return design_space(spec, rows, dir);
    }
    let mut written = Vec::new();
    let systems: Vec<String> = spec.systems.iter().map(|s| s.name.clone()).collect();
    let base = spec.baseline.clone().unwrap_or_else(|| systems[0].clone());
    let mut groups: Vec<(String, u64)> = Vec::new();
    for r in rows {
        let g = (r.s("model"), r.f("seq_len") as u64);
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    let labels: Vec<String> = groups.iter().map(|(m, n)| format!("{m} {}", seq_label(*n as f64))).collect();
    let size = ((70 * groups.len() as u32 + 250).max(1000), 560);
    let find = |sys: &str, g: &(String, u64), scope: &str| {
        rows.iter().find(|r| {
            r.s("system") == sys && r.s("model") == g.0 && r.f("seq_len") as u64 == g.1 && r.s("scope") == scope
        })
    };
    let per_system = |scope: &str, f: &dyn Fn(&Row, &Row) -> f64| -> Vec<(String, Vec<f64>)> {
        systems
            .iter()
            .map(|s| {
                let v = groups
                    .iter()
                    .map(|g| match (find(s, g, scope), find(&base, g, scope)) {
                        (Some(r), Some(b)) => f(r, b),
                        _ => f64::NAN,
                    })
                    .collect();
                (s.clone(), v)
            })
            .collect()
    };
    for (scope, tag) in [("attention", "attention"), ("end_to_end", "end-to-end")] {
        let speed = per_system(scope, &|r, b| b.f("latency_s") / r.f("latency_s"));
        let title = format!("{tag} speedup over {base}");
        written.extend(both!(spec.plots.as_deref(), dir, &format!("{tag}-speedup"), size, |a| bars(
            a,
            &title,
            XL,
            &format!("speedup over {base} (×)"),
            &labels,
            &speed,
            false
        ))?);
        let energy = per_system(scope, &|r, b| r.f("energy_j") / b.f("energy_j"));
        let title = format!("{tag} energy normalised to {base}");
        written.extend(both!(spec.plots.as_deref(), dir, &format!("{tag}-energy"), size, |a| bars(
            a,
            &title,
            XL,
            &format!("energy / {base} energy"),
            &labels,
            &energy,
            false
        ))?);
    }
    let dram = per_system("attention", &|r, _| r.f("dram_bytes"));
    let title = "attention DRAM traffic (log scale)";
    written.extend(both!(spec.plots.as_deref(), dir, "attention-dram", size, |a| bars(
        a,
        title,
        XL,
        "DRAM bytes per layer (B)",
        &labels,
        &dram,
        true
    ))?);
    // Utilisation of both arrays over N for the first model.
    let first = groups.first().map(|g| g.0.clone()).unwrap_or_default();
    let mut util: Vec<Series> = Vec::new();
    for (k, s) in systems.iter().enumerate() {
        for (col, tag, dashed) in [("util_2d", "2D", false), ("util_1d", "1D", true)] {
            let pts: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.s("system") == *s && r.s("model") == first && r.s("scope") == "attention")
                .map(|r| (r.f("seq_len"), r.f(col)))
                .collect();
            util.push((format!("{s} {tag}"), pts, dashed, k));
        }
    }
    let title = format!("{first} attention: array utilisation (2D solid, 1D thin)");
    written.extend(both!(spec.plots.as_deref(), dir, "attention-utilization", (1000, 560), |a| {
        lines(
            a,
            &title,
            "sequence length N (tokens, log scale)",
            "utilisation (busy PE-cycles / PE-cycles)",
            &util,
            false,
            &|x| seq_label(*x),
        )
    })?);
    // Area against latency when the sweep scales the arrays (FuseMax Fig. 12).
    if rows.iter().any(|r| r.get("pe_dim").is_some()) {
        let mut models: Vec<String> = Vec::new();
        for r in rows {
            if !models.contains(&r.s("model")) {
                models.push(r.s("model"));
            }
        }
        let mut series: Vec<Series> = Vec::new();
        for s in &systems {
            for model in &models {
                let mut pts: Vec<(f64, f64)> = rows
                    .iter()
                    .filter(|r| r.s("system") == *s && r.s("model") == *model && r.s("scope") == "attention")
                    .map(|r| (r.f("area_mm2"), r.f("latency_s")))
                    .collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                let colour = series.len();
                series.push((format!("{s} {model}"), pts, false, colour));
            }
        }
        let title = "area vs attention latency (PE_dim 16 to 512)";
        let (xl, yl) = ("area (mm², log scale)", "attention latency (s, log scale)");
        let mm = |x: &f64| format!("{x:.0}");
        written.extend(both!(spec.plots.as_deref(), dir, "pareto", (900, 560), |a| lines(
            a, title, xl, yl, &series, true, &mm
        ))?);
    }
    Ok(written)
}

/// The plots of the `offload` kind: tokens/s per policy and model against FlexGen's Table 2.
pub fn offload(spec: &ExperimentSpec, rows: &[Row], dir: &Path) -> Res<Vec<String>> {
    fonts()?;
    let mut written = Vec::new();
    let mut groups: Vec<(String, String)> = Vec::new();
    let mut rules: Vec<(String, String)> = Vec::new();
    for r in rows {
        let g = (r.s("model"), r.s("prompt"));
        if !groups.contains(&g) {
            groups.push(g);
        }
        let rule = (r.s("costs"), r.s("overlap"));
        if !rules.contains(&rule) {
            rules.push(rule);
        }
    }
    let labels: Vec<String> = groups.iter().map(|(m, s)| format!("{m}, s = {s}")).collect();
    let mut series: Vec<(String, Vec<f64>)> = rules
        .iter()
        .map(|(costs, rule)| {
            let v = groups
                .iter()
                .map(|g| {
                    rows.iter()
                        .find(|r| {
                            r.s("model") == g.0
                                && r.s("prompt") == g.1
                                && &r.s("costs") == costs
                                && &r.s("overlap") == rule
                        })
                        .map_or(f64::NAN, |r| r.f("tokens_per_s"))
                })
                .collect();
            (format!("Strata, {costs}, {rule} overlap"), v)
        })
        .collect();
    let paper: Vec<f64> = groups
        .iter()
        .map(|g| spec.reference_value(&[("model", &g.0), ("prompt", &g.1)], "tokens_per_s").unwrap_or(f64::NAN))
        .collect();
    if paper.iter().any(|v| v.is_finite()) {
        series.push(("paper (measured)".into(), paper));
    }
    let title = "generation throughput, FlexGen's policy search";
    let (xl, yl) = ("model and prompt length", "tokens/s (log scale)");
    let size = ((140 * groups.len() as u32 + 300).max(900), 560);
    written.extend(both!(spec.plots.as_deref(), dir, "offload-throughput", size, |a| bars(
        a, title, xl, yl, &labels, &series, true
    ))?);
    Ok(written)
}

/// The plots of the `serving` kind: throughput per system over batch, and over copies of the
/// device that holds the KV cache.
pub fn serving(spec: &ExperimentSpec, rows: &[Row], dir: &Path) -> Res<Vec<String>> {
    fonts()?;
    let mut written = Vec::new();
    let all: Vec<&Row> = rows.iter().collect();
    let systems = distinct(&all, "system");
    let curve = |sys: &str, x: &str, keep: &dyn Fn(&Row) -> bool| {
        let mut pts: Vec<(f64, f64)> =
            all.iter().filter(|r| r.s("system") == sys && keep(r)).map(|r| (r.f(x), r.f("tokens_per_s"))).collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Sweeps of what a system does not use (drives it has none on) repeat its points.
        pts.dedup_by(|a, b| a.0 == b.0);
        pts
    };
    let one: Vec<Series> = systems
        .iter()
        .enumerate()
        .map(|(i, sys)| (sys.clone(), curve(sys, "batch", &|r: &Row| r.f("kv_devices") == 1.0), false, i))
        .filter(|s| !s.1.is_empty())
        .collect();
    if !one.is_empty() {
        written.extend(both!(spec.plots.as_deref(), dir, "serving-throughput", (900, 600), |a| lines(
            a,
            "tokens/s per system and batch (one KV-cache device)",
            "batch size (log scale)",
            "tokens/s (log scale)",
            &one,
            true,
            &|x| format!("{x:.0}")
        ))?);
    }
    let top = all.iter().map(|r| r.f("batch")).fold(0.0, f64::max);
    let many: Vec<Series> = systems
        .iter()
        .enumerate()
        .map(|(i, sys)| {
            (format!("{sys}, batch {top}"), curve(sys, "kv_devices", &|r: &Row| r.f("batch") == top), false, i)
        })
        .filter(|s| s.1.len() > 1)
        .collect();
    if !many.is_empty() {
        written.extend(both!(spec.plots.as_deref(), dir, "serving-scaling", (900, 600), |a| lines(
            a,
            "decode throughput vs copies of the KV cache's device",
            "devices holding the KV cache (log scale)",
            "tokens/s (log scale)",
            &many,
            true,
            &|x| format!("{x:.0}")
        ))?);
    }
    written.extend(serving_design(spec, rows, dir)?);
    Ok(written)
}

/// The `serving` kind's design plot: tokens/s per system against the first swept spec path (a
/// drive's channels, a link's bandwidth), at the largest batch; copies of a device have their own
/// plot.
fn serving_design(spec: &ExperimentSpec, rows: &[Row], dir: &Path) -> Res<Vec<String>> {
    let first = |r: &Row| -> Option<(String, f64)> {
        let d = r.s("design");
        let (path, value) = d.split("; ").next()?.split_once('=')?;
        Some((path.to_string(), value.trim_matches('"').parse().ok()?))
    };
    let Some((path, _)) = rows.iter().find_map(first) else { return Ok(Vec::new()) };
    if path.starts_with("arch.devices.") {
        return Ok(Vec::new());
    }
    let top = rows.iter().map(|r| r.f("batch")).fold(0.0, f64::max);
    let all: Vec<&Row> = rows.iter().filter(|r| r.f("batch") == top).collect();
    let series: Vec<Series> = distinct(&all, "system")
        .iter()
        .enumerate()
        .map(|(i, sys)| {
            let mut pts: Vec<(f64, f64)> = all
                .iter()
                .filter(|r| &r.s("system") == sys)
                .filter_map(|r| first(r).map(|(_, x)| (x, r.f("tokens_per_s"))))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            pts.dedup_by(|a, b| a.0 == b.0);
            (format!("{sys}, batch {top}"), pts, false, i)
        })
        .filter(|s| s.1.len() > 1)
        .collect();
    if series.is_empty() {
        return Ok(Vec::new());
    }
    let title = format!("decode throughput vs {path}");
    both!(spec.plots.as_deref(), dir, "serving-design", (900, 600), |a| lines(
        a,
        &title,
        &format!("{path} (log scale)"),
        "tokens/s (log scale)",
        &series,
        true,
        &|x| format!("{x:.0}")
    ))
}

/// The plots of the `flash-offload` kind: I/O and total latency per configuration against Tables 2 and 3,
/// one plot per model (the first `flash-offload`, the others `flash-offload-MODEL`), a series per
/// architecture.
pub fn flash_offload(spec: &ExperimentSpec, rows: &[Row], dir: &Path) -> Res<Vec<String>> {
    fonts()?;
    let mut written = Vec::new();
    let all: Vec<&Row> = rows.iter().collect();
    let configs = distinct(&all, "system");
    let archs = distinct(&all, "arch");
    for (i, model) in distinct(&all, "model").iter().enumerate() {
        let value = |arch: &str, system: &str, key: &str| {
            all.iter()
                .find(|r| r.s("arch") == arch && r.s("model") == *model && r.s("system") == system)
                .map_or(f64::NAN, |r| r.f(key))
        };
        let paper = |arch: &str, system: &str, key: &str| {
            spec.reference_value(&[("arch", arch), ("model", model), ("system", system)], key).unwrap_or(f64::NAN)
        };
        let mut series: Vec<(String, Vec<f64>)> = Vec::new();
        for arch in &archs {
            for (key, what) in [("total_ms", "total"), ("io_ms", "flash I/O")] {
                series.push((format!("Strata {what}, {arch}"), configs.iter().map(|c| value(arch, c, key)).collect()));
                let p: Vec<f64> = configs.iter().map(|c| paper(arch, c, key)).collect();
                if p.iter().any(|v| v.is_finite()) {
                    series.push((format!("paper {what}, {arch}"), p));
                }
            }
        }
        let size = ((40 * configs.len() as u32 * series.len().max(1) as u32 + 300).clamp(1000, 1500), 600);
        let name = if i == 0 { "flash-offload".to_string() } else { format!("flash-offload-{model}") };
        let title = format!("{model}: per-token decode latency (total and flash I/O), weights on flash");
        written.extend(both!(spec.plots.as_deref(), dir, &name, size, |a| bars(
            a,
            &title,
            "system (techniques added left to right)",
            "ms per token (log scale)",
            &configs,
            &series,
            true
        ))?);
    }
    Ok(written)
}

/// The plots of the `io-curve` kind: off-chip traffic against on-chip memory with the bounds.
pub fn io_curve(spec: &ExperimentSpec, rows: &[Row], dir: &Path) -> Res<Vec<String>> {
    fonts()?;
    let mut written = Vec::new();
    let keys = distinct_by(rows, |r| (r.f("seq_len") as u64, r.f("head_dim") as u64));
    for (n, d) in keys {
        let sel: Vec<&Row> =
            rows.iter().filter(|r| r.f("seq_len") as u64 == n && r.f("head_dim") as u64 == d).collect();
        let pts = |col: &str| sel.iter().map(|r| (r.f("memory_words"), r.f(col))).collect::<Vec<_>>();
        let series = vec![
            ("Strata: best 1-pass mapping".to_string(), pts("strata_words"), false, 0),
            ("FlashAttention Algorithm 1 (count)".to_string(), pts("flash_alg1_words"), true, 1),
            ("N²d²/M (Θ bound)".to_string(), pts("bound_n2d2_over_m"), true, 2),
            ("4Nd floor (read Q, K, V; write O)".to_string(), pts("floor_4nd"), true, 3),
        ];
        let title = format!("attention I/O, N = {}, d = {d}", seq_label(n as f64));
        let name = format!("io-n{n}-d{d}");
        written.extend(both!(spec.plots.as_deref(), dir, &name, (900, 560), |a| {
            lines(
                a,
                &title,
                "on-chip memory M (words, log scale)",
                "off-chip traffic (words, log scale)",
                &series,
                true,
                &|x| seq_label(*x),
            )
        })?);
    }
    Ok(written)
}

/// Predicted against measured kernel times, log–log, one colour per kernel family, with the line
/// y = x and dashed ±20% lines (issue 20's bound on the largest error).
pub fn predicted_vs_measured(points: &[(String, f64, f64)], device: &str, dir: &Path) -> Res<Vec<String>> {
    fonts()?;
    let mut kinds: Vec<&str> = points.iter().map(|p| p.0.as_str()).collect();
    kinds.sort();
    kinds.dedup();
    let lo = points.iter().flat_map(|p| [p.1, p.2]).fold(f64::MAX, f64::min) / 1.5;
    let hi = points.iter().flat_map(|p| [p.1, p.2]).fold(f64::MIN, f64::max) * 1.5;
    fn draw<DB: DrawingBackend>(
        root: &DrawingArea<DB, Shift>,
        points: &[(String, f64, f64)],
        kinds: &[&str],
        (lo, hi): (f64, f64),
        device: &str,
    ) -> Res<()>
    where
        DB::ErrorType: 'static,
    {
        let mut c = ChartBuilder::on(root)
            .caption(
                format!("{device}: Strata's prediction vs measured kernel time"),
                ("sans-serif", 22, FontStyle::Bold).into_font(),
            )
            .margin(12)
            .margin_right(25)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d((lo..hi).log_scale(), (lo..hi).log_scale())
            .map_err(e)?;
        c.configure_mesh()
            .x_desc("measured time (µs)")
            .y_desc("predicted time (µs)")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .x_label_style(("sans-serif", 14))
            .y_label_style(("sans-serif", 14))
            .draw()
            .map_err(e)?;
        let line = |k: f64| (0..=40).map(move |i| lo * (hi / lo).powf(i as f64 / 40.0)).map(move |x| (x, x * k));
        c.draw_series(LineSeries::new(line(1.0), BLACK.stroke_width(1)))
            .map_err(e)?
            .label("y = x")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(1)));
        for k in [0.8, 1.2] {
            let grey = RGBColor(150, 150, 150);
            let pts: Vec<(f64, f64)> = line(k).collect();
            let dashes = pts.windows(2).step_by(2).map(|w| PathElement::new(vec![w[0], w[1]], grey.stroke_width(1)));
            let s = c.draw_series(dashes).map_err(e)?;
            if k > 1.0 {
                s.label("±20%").legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey.stroke_width(1)));
            }
        }
        for (i, kind) in kinds.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            c.draw_series(points.iter().filter(|p| p.0 == *kind).map(|p| Circle::new((p.1, p.2), 4, color.filled())))
                .map_err(e)?
                .label(kind.to_string())
                .legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(e)
    }
    both!(None, dir, "predicted-vs-measured", (900, 800), |r| draw(r, points, &kinds, (lo, hi), device))
}

/// Throughput (GB/s) against request size (bytes, log scale), one line per series, with the
/// closed-form ceiling dashed.
pub fn throughput_curves(
    dir: &Path,
    name: &str,
    title: &str,
    series: &[(String, Vec<(f64, f64)>)],
    ceiling: &[(f64, f64)],
) -> Res<Vec<String>> {
    fonts()?;
    let mut all: Vec<Series> = series.iter().enumerate().map(|(i, s)| (s.0.clone(), s.1.clone(), false, i)).collect();
    all.push(("closed-form ceiling".to_string(), ceiling.to_vec(), true, 7));
    both!(None, dir, name, (900, 560), |a| {
        lines(a, title, "request size (bytes, log scale)", "throughput (GB/s)", &all, false, &|x| {
            if *x >= 1e6 { format!("{:.0} MB", x / 1e6) } else { format!("{:.0} kB", x / 1e3) }
        })
    })
}

/// Write amplification against the spare share (`nand-wa`): the translation layer's, and the
/// greedy-GC curve it is checked against.
pub fn write_amplification(
    dir: &Path,
    title: &str,
    simulated: &[(f64, f64)],
    curve: &[(f64, f64)],
) -> Res<Vec<String>> {
    fonts()?;
    let all: Vec<Series> = vec![
        ("simulated (greedy GC, this drive's blocks)".into(), simulated.to_vec(), false, 0),
        ("greedy curve A = α / (α + W₀(−α e^−α))".into(), curve.to_vec(), true, 7),
    ];
    both!(None, dir, "nand-wa", (900, 560), |a| {
        lines(a, title, "spare share of the pages (log scale)", "write amplification (log scale)", &all, true, &|x| {
            format!("{:.0}%", 100.0 * x)
        })
    })
}

/// Distinct values of `key` in row order.
fn distinct(rows: &[&Row], key: &str) -> Vec<String> {
    distinct_by(rows.iter().copied(), |r| r.s(key))
}

/// The plots of the `flash-compute` kind: tokens/s per model and architecture (with the
/// paper's numbers), the ablations with channel utilisation, and channel × chip scaling.
pub fn flash_compute(spec: &ExperimentSpec, rows: &[Row], dir: &Path) -> Res<Vec<String>> {
    fonts()?;
    let mut written = Vec::new();
    let allowed = spec.plots.as_deref();
    let full: Vec<&Row> = rows.iter().filter(|r| r.s("system") == "full").collect();
    let archs = distinct(&full, "arch");
    let models = distinct(&full, "model");
    let scaling = spec.sweep.contains_key("channels") || spec.sweep.contains_key("chips_per_channel");
    let mut contexts: Vec<u64> = full.iter().map(|r| r.f("context") as u64).collect();
    contexts.sort_unstable();
    contexts.dedup();
    if contexts.len() > 1 {
        // Throughput against the context: one line per (arch, model, design).
        let keys = distinct_by(full.iter().copied(), |r| (r.s("arch"), r.s("model"), r.opt("design")));
        let series: Vec<Series> = keys
            .iter()
            .enumerate()
            .map(|(i, (arch, model, design))| {
                let mut pts: Vec<(f64, f64)> = full
                    .iter()
                    .filter(|r| &r.s("arch") == arch && &r.s("model") == model && &r.opt("design") == design)
                    .map(|r| (r.f("context"), r.f("tokens_per_s")))
                    .collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                // The design's values only: the paths are in the experiment file.
                let values: Vec<&str> =
                    design.split("; ").filter_map(|kv| kv.split_once('=')).map(|(_, v)| v.trim_matches('"')).collect();
                let label = if design.is_empty() {
                    format!("{arch}, {model}")
                } else {
                    format!("{arch}, {model}, {}", values.join(", "))
                };
                (label, pts, false, i)
            })
            .collect();
        written.extend(both!(allowed, dir, "flash-context", (900, 600), |a| lines(
            a,
            "decode throughput vs context (in-flash compute)",
            "context, tokens (log scale)",
            "tokens/s (log scale)",
            &series,
            true,
            &|x| format!("{x:.0}")
        ))?);
    }
    if !scaling && contexts.len() == 1 && !full.is_empty() {
        let tps = |arch: &str, model: &str| {
            full.iter().find(|r| r.s("arch") == arch && r.s("model") == model).map_or(f64::NAN, |r| r.f("tokens_per_s"))
        };
        let mut series: Vec<(String, Vec<f64>)> =
            archs.iter().map(|a| (format!("Strata, {a}"), models.iter().map(|m| tps(a, m)).collect())).collect();
        for a in &archs {
            let paper: Vec<f64> = models
                .iter()
                .map(|m| spec.reference_value(&[("arch", a), ("model", m)], "tokens_per_s").unwrap_or(f64::NAN))
                .collect();
            if paper.iter().any(|v| v.is_finite()) {
                series.push((format!("paper, {a}"), paper));
            }
        }
        let flexgen: Vec<f64> = models
            .iter()
            .map(|m| full.iter().find(|r| &r.s("model") == m).map_or(f64::NAN, |r| r.f("flexgen_ssd_tokens_per_s")))
            .collect();
        series.push(("FlexGen-SSD (A100 + NVMe, modelled)".into(), flexgen));
        let size = ((160 * models.len() as u32 + 300).max(900), 560);
        written.extend(both!(allowed, dir, "flash-throughput", size, |a| bars(
            a,
            "decode throughput, INT8, ~1K context",
            "model",
            "tokens/s (log scale)",
            &models,
            &series,
            true
        ))?);
    }
    // Ablations: every variant of each (arch, model) that has more than the full design.
    let ablated: Vec<&Row> = rows.iter().collect();
    let variants = distinct(&ablated, "system");
    if variants.len() > 1 && !scaling {
        let groups = distinct_by(ablated.iter().copied(), |r| (r.s("arch"), r.s("model")));
        let one_arch = groups.iter().all(|g| g.0 == groups[0].0);
        let labels: Vec<String> =
            groups.iter().map(|g| if one_arch { g.1.clone() } else { format!("{} {}", g.0, g.1) }).collect();
        let value = |g: &(String, String), v: &str, key: &str| {
            ablated
                .iter()
                .find(|r| r.s("arch") == g.0 && r.s("model") == g.1 && r.s("system") == v)
                .map_or(f64::NAN, |r| r.f(key))
        };
        // Speed relative to the full design: the ablation ratios the paper reports, read directly
        // across models whose speeds span decades.
        let tps: Vec<(String, Vec<f64>)> = variants
            .iter()
            .map(|v| {
                let rel = groups.iter().map(|g| value(g, v, "tokens_per_s") / value(g, "full", "tokens_per_s"));
                (v.clone(), rel.collect())
            })
            .collect();
        let xlabel = if one_arch { format!("model on {}", groups[0].0) } else { "configuration".into() };
        let util: Vec<(String, Vec<f64>)> = variants
            .iter()
            .map(|v| (v.clone(), groups.iter().map(|g| 100.0 * value(g, v, "channel_data_utilisation")).collect()))
            .collect();
        let size = ((220 * groups.len() as u32 + 400).max(900), 560);
        written.extend(both!(allowed, dir, "flash-ablation", size, |a| {
            let (l, r) = a.split_horizontally(a.dim_in_pixel().0 / 2);
            bars(
                &l,
                "ablations: decode speed",
                &xlabel,
                "tokens/s relative to the full design (×)",
                &labels,
                &tps,
                false,
            )?;
            bars(
                &r,
                "ablations: channel data utilisation",
                &xlabel,
                "channel busy with data (%)",
                &labels,
                &util,
                false,
            )
        })?);
    }
    if scaling {
        let chips = distinct(&full, "chips_per_channel");
        let series: Vec<Series> = chips
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut pts: Vec<(f64, f64)> = full
                    .iter()
                    .filter(|r| &r.s("chips_per_channel") == c)
                    .map(|r| (r.f("channels"), r.f("tokens_per_s")))
                    .collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                (format!("chips per channel: {c}"), pts, false, i)
            })
            .collect();
        let title = format!("scaling {}: {}", archs.join(", "), models.join(", "));
        written.extend(both!(allowed, dir, "flash-scaling", (900, 600), |a| lines(
            a,
            &title,
            "flash channels (log scale)",
            "tokens/s (log scale)",
            &series,
            true,
            &|x| format!("{x:.0}")
        ))?);
    }
    Ok(written)
}

/// A token count in thousands where it is one (axis ticks of log-scaled contexts).
fn thousands(x: &f64) -> String {
    if *x >= 1000.0 { format!("{}K", (x / 1000.0).round()) } else { format!("{x:.0}") }
}

/// The plots of the `double-sparsity` kind, per architecture and model: the attention speedup
/// of Double Sparsity over dense decode attention on the GPU kernel model against the context,
/// one line per batch; and each system's decode step on the system model against the context,
/// log–log, one plot per batch.
pub fn double_sparsity(spec: &ExperimentSpec, rows: &[Row], dir: &Path) -> Res<Vec<String>> {
    fonts()?;
    let mut written = Vec::new();
    let on_gpu = |r: &Row| r.f("kv_gpu_gb") >= r.f("kv_gb") * (1.0 - 1e-9);
    for (arch, model) in distinct_by(rows, |r| (r.s("arch"), r.s("model"))) {
        let here: Vec<&Row> = rows.iter().filter(|r| r.s("arch") == arch && r.s("model") == model).collect();
        let batches = distinct_by(rows, |r| r.f("batch") as u64);
        // One line per sparse system on the GPU and batch: colour by batch, the second and
        // later sparse systems (other label formats) thin.
        let sparse_systems =
            distinct_by(here.iter().copied(), |r| (r.s("attention") == "sparse" && on_gpu(r)).then(|| r.s("system")));
        let mut speedups: Vec<Series> = Vec::new();
        for (k, system) in sparse_systems.iter().flatten().enumerate() {
            for (i, &b) in batches.iter().enumerate() {
                let at = |sparse: bool, context: f64| {
                    here.iter()
                        .find(|r| {
                            r.f("batch") as u64 == b
                                && r.f("context") == context
                                && if sparse { r.s("system") == *system } else { r.s("attention") == "dense" }
                                && on_gpu(r)
                        })
                        .map(|r| r.f("attention_us"))
                };
                let pts: Vec<(f64, f64)> = distinct_by(rows, |r| r.f("context") as u64)
                    .into_iter()
                    .filter_map(|c| Some((c as f64, at(false, c as f64)? / at(true, c as f64)?)))
                    .filter(|p| p.1.is_finite())
                    .collect();
                if !pts.is_empty() {
                    speedups.push((format!("{system}, batch {b}"), pts, k > 0, i));
                }
            }
        }
        if !speedups.is_empty() {
            let name = format!("ds-attention-{arch}-{model}");
            let title = format!("{model} on {arch}: sparse over dense decode attention (GPU kernels)");
            written.extend(both!(spec.plots.as_deref(), dir, &name, (1000, 600), |a| lines(
                a,
                &title,
                "context (tokens, log scale)",
                "speedup: dense attention time / Double Sparsity's (×)",
                &speedups,
                false,
                &thousands
            ))?);
        }
        for &b in &batches {
            let series: Vec<Series> = distinct_by(rows, |r| r.s("system"))
                .into_iter()
                .enumerate()
                .filter_map(|(i, system)| {
                    let pts: Vec<(f64, f64)> = here
                        .iter()
                        .filter(|r| r.f("batch") as u64 == b && r.s("system") == system)
                        .map(|r| (r.f("context"), r.f("step_ms")))
                        .collect();
                    (!pts.is_empty()).then_some((system, pts, false, i))
                })
                .collect();
            if series.is_empty() {
                continue;
            }
            let name = format!("ds-step-{arch}-{model}-b{b}");
            let title = format!("{model} on {arch}, batch {b}: decode step per system (system model)");
            written.extend(both!(spec.plots.as_deref(), dir, &name, (1000, 600), |a| lines(
                a,
                &title,
                "context (tokens, log scale)",
                "decode step (ms, log scale)",
                &series,
                true,
                &thousands
            ))?);
        }
    }
    Ok(written)
}

/// The plot of the `flashsvd` kind, per model, batch and rank: peak memory against the sequence
/// length for the dense model, plain SVD inference and FlashSVD's streaming kernels, log–log.
pub fn flashsvd(spec: &ExperimentSpec, rows: &[Row], dir: &Path) -> Res<Vec<String>> {
    fonts()?;
    let mut written = Vec::new();
    for (model, batch, rank) in distinct_by(rows, |r| (r.s("model"), r.f("batch") as u64, r.f("rank") as u64)) {
        let here: Vec<&Row> = rows
            .iter()
            .filter(|r| r.s("model") == model && r.f("batch") as u64 == batch && r.f("rank") as u64 == rank)
            .collect();
        let series: Vec<Series> = [("dense", "dense model"), ("svd", "plain SVD inference"), ("flashsvd", "FlashSVD")]
            .iter()
            .enumerate()
            .map(|(i, (variant, label))| {
                let pts =
                    here.iter().filter(|r| r.s("variant") == *variant).map(|r| (r.f("seq"), r.f("peak_mb"))).collect();
                (label.to_string(), pts, false, i)
            })
            .collect();
        if here.iter().map(|r| r.f("seq") as u64).collect::<std::collections::BTreeSet<_>>().len() < 2 {
            continue;
        }
        let name = format!("flashsvd-{model}-b{batch}-r{rank}");
        let title = format!("{model}, batch {batch}, rank {rank}: peak memory (weights + live activations)");
        written.extend(both!(spec.plots.as_deref(), dir, &name, (1000, 600), |a| lines(
            a,
            &title,
            "sequence length (tokens, log scale)",
            "peak memory (MB, log scale)",
            &series,
            true,
            &thousands
        ))?);
    }
    // The FFN's time against the rank, plain SVD inference and the fused kernel, per GPU.
    let timed: Vec<&Row> = rows.iter().filter(|r| r.get("ffn_ms").is_some()).collect();
    for (model, batch, seq) in
        distinct_by(timed.iter().copied(), |r| (r.s("model"), r.f("batch") as u64, r.f("seq") as u64))
    {
        let here: Vec<&Row> = timed
            .iter()
            .copied()
            .filter(|r| r.s("model") == model && r.f("batch") as u64 == batch && r.f("seq") as u64 == seq)
            .collect();
        let mut series: Vec<Series> = Vec::new();
        for (g, gpu) in distinct(&here, "gpu").iter().enumerate() {
            for (v, (variant, label)) in [("svd", "plain SVD"), ("flashsvd", "FlashSVD fused")].iter().enumerate() {
                let pts: Vec<(f64, f64)> = here
                    .iter()
                    .filter(|r| &r.s("gpu") == gpu && r.s("variant") == *variant)
                    .map(|r| (r.f("rank"), r.f("ffn_ms")))
                    .collect();
                series.push((format!("{label}, {gpu}"), pts, false, 2 * g + v));
            }
        }
        if here.iter().map(|r| r.f("rank") as u64).collect::<std::collections::BTreeSet<_>>().len() < 2 {
            continue;
        }
        let name = format!("flashsvd-ffn-{model}-b{batch}-s{seq}");
        let title = format!("{model} FFN, batch {batch}, {seq} tokens: time per layer vs rank (kernel model)");
        written.extend(both!(spec.plots.as_deref(), dir, &name, (1000, 600), |a| lines(
            a,
            &title,
            "rank of every factorised projection (log scale)",
            "FFN time per layer (ms, log scale)",
            &series,
            true,
            &thousands
        ))?);
    }
    Ok(written)
}

/// Latency against offered load (`strata dram|nand --load-sweep`): one line per latency
/// statistic (mean, p50, p99), offered load on a linear axis, latency in `unit` on a log axis (it
/// spans decades near saturation), and a grey reference line (an unloaded request).
pub fn latency_curves(
    dir: &Path,
    name: &str,
    title: &str,
    series: &[(String, Vec<(f64, f64)>)],
    unit: &str,
    (unloaded, reference): (f64, &str),
) -> Res<Vec<String>> {
    fonts()?;
    let xs: Vec<f64> = series.iter().flat_map(|s| s.1.iter().map(|p| p.0)).collect();
    let ys: Vec<f64> = series.iter().flat_map(|s| s.1.iter().map(|p| p.1)).chain([unloaded]).collect();
    let x1 = xs.iter().cloned().fold(0.0, f64::max) * 1.05;
    let (y0, y1) = (ys.iter().cloned().fold(f64::MAX, f64::min) / 1.5, ys.iter().cloned().fold(0.0, f64::max) * 3.0);
    both!(None, dir, name, (900, 560), |a| {
        let mut c = ChartBuilder::on(a)
            .caption(title, ("sans-serif", 22, FontStyle::Bold).into_font())
            .margin(12)
            .margin_right(25)
            .x_label_area_size(50)
            .y_label_area_size(90)
            .build_cartesian_2d(0.0..x1, (y0..y1).log_scale().with_key_points(log_ticks(y0, y1)))
            .map_err(e)?;
        c.configure_mesh()
            .x_desc("offered load (GB/s)")
            .y_desc(format!("latency ({unit}, log scale)"))
            .x_label_formatter(&|x| format!("{x:.1}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .x_label_style(("sans-serif", 14))
            .y_label_style(("sans-serif", 14))
            .draw()
            .map_err(e)?;
        for (i, (label, pts)) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            c.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(e)?
                .label(label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            c.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(e)?;
        }
        let grey = COLORS[7];
        c.draw_series(LineSeries::new(vec![(0.0, unloaded), (x1, unloaded)], grey.stroke_width(1)))
            .map_err(e)?
            .label(reference)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey.stroke_width(1)));
        legend(&mut c, 13, SeriesLabelPosition::UpperLeft)
    })
}
