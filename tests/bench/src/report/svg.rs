//! The charts: horizontal bar charts as plain SVG (no external tool), labels escaped.

use std::fmt::Write as _;

/// How a bar is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// A figure within its bar.
    Pass,
    /// A figure over its bar (or missing).
    Fail,
    /// A baseline, measured to compare with.
    Baseline,
    /// A figure without a bar.
    Plain,
}

impl Style {
    pub(super) fn fill(self) -> &'static str {
        match self {
            Style::Pass => "#2e7d32",
            Style::Fail => "#c62828",
            Style::Baseline => "#90a4ae",
            Style::Plain => "#1565c0",
        }
    }
}

/// One horizontal bar.
pub struct BarRow {
    pub label: String,
    /// `None`: not measured (a missed run); drawn as text only.
    pub value: Option<f64>,
    pub value_text: String,
    /// The bar the figure must stay within, drawn as a dashed mark.
    pub limit: Option<f64>,
    pub style: Style,
}

/// Bars under one heading.
pub struct BarGroup {
    pub title: String,
    pub rows: Vec<BarRow>,
}

/// Widest label column, px; labels longer than fit are cut with "...".
pub(super) const MAX_LABEL_WIDTH: f64 = 470.0;
/// Rough advance of one character at the chart's 12 px sans-serif, px.
pub(super) const CHAR_WIDTH: f64 = 6.6;
pub(super) const PLOT_WIDTH: f64 = 400.0;
/// The column of figures, right of the plot.
pub(super) const VALUE_WIDTH: f64 = 130.0;
pub(super) const ROW_HEIGHT: f64 = 20.0;
pub(super) const GROUP_HEIGHT: f64 = 26.0;
pub(super) const TOP: f64 = 46.0;
pub(super) const AXIS_HEIGHT: f64 = 36.0;

/// A horizontal bar chart, as a standalone SVG document. The scale starts at 0 (or at
/// the most negative figure) and ends past the largest figure or limit.
pub fn bar_chart(title: &str, unit: &str, groups: &[BarGroup]) -> String {
    let all = || groups.iter().flat_map(|g| &g.rows);
    let max = all()
        .flat_map(|r| [r.value, r.limit])
        .flatten()
        .fold(0.0_f64, f64::max);
    let min = all().filter_map(|r| r.value).fold(0.0_f64, f64::min);
    let step = nice_step((max - min).max(f64::EPSILON));
    let lo = (min / step).floor() * step;
    let hi = ((max / step).floor() + 1.0) * step;
    let longest = all()
        .map(|r| r.label.chars().count())
        .chain(groups.iter().map(|g| g.title.chars().count() / 2))
        .max()
        .unwrap_or(0);
    let label_width = (longest as f64 * CHAR_WIDTH + 24.0).clamp(120.0, MAX_LABEL_WIDTH);
    let max_chars = ((label_width - 24.0) / CHAR_WIDTH) as usize;
    // Wide enough for the title at 15 px bold, too.
    let width =
        (label_width + PLOT_WIDTH + VALUE_WIDTH).max(title.chars().count() as f64 * 9.0 + 20.0);
    let x = |v: f64| label_width + (v - lo) / (hi - lo) * PLOT_WIDTH;
    let rows: usize = groups.iter().map(|g| g.rows.len()).sum();
    let height = TOP + groups.len() as f64 * GROUP_HEIGHT + rows as f64 * ROW_HEIGHT + AXIS_HEIGHT;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r##"<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#,
        xml(title)
    );
    let plot_bottom = height - AXIS_HEIGHT;
    // Grid and axis.
    let mut t = lo;
    while t <= hi + step / 2.0 {
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" y1="{TOP}" x2="{0:.1}" y2="{plot_bottom:.1}" stroke="#e0e0e0"/>"##,
            x(t)
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x(t),
            plot_bottom + 14.0,
            xml(&fmt_tick(t, step))
        );
        t += step;
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        label_width + PLOT_WIDTH / 2.0,
        plot_bottom + 30.0,
        xml(unit)
    );
    let mut y = TOP;
    for g in groups {
        let _ = writeln!(
            s,
            r#"<text x="10" y="{:.1}" font-weight="bold">{}</text>"#,
            y + 17.0,
            xml(&g.title)
        );
        y += GROUP_HEIGHT;
        for r in &g.rows {
            let mid = y + ROW_HEIGHT / 2.0;
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                label_width - 8.0,
                mid + 4.0,
                xml(&clip(&r.label, max_chars))
            );
            if let Some(v) = r.value {
                let zero = x(0.0_f64.max(lo));
                let (a, b) = (zero.min(x(v)), zero.max(x(v)));
                let _ = writeln!(
                    s,
                    r#"<rect x="{a:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"/>"#,
                    y + 3.0,
                    (b - a).max(1.0),
                    ROW_HEIGHT - 6.0,
                    r.style.fill()
                );
            }
            if let Some(l) = r.limit {
                let _ = writeln!(
                    s,
                    r##"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="#212121" stroke-width="1.5" stroke-dasharray="3,2"/>"##,
                    x(l),
                    y + 1.0,
                    y + ROW_HEIGHT - 1.0
                );
            }
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                label_width + PLOT_WIDTH + 10.0,
                mid + 4.0,
                xml(&r.value_text)
            );
            y += ROW_HEIGHT;
        }
    }
    if all().any(|r| r.limit.is_some()) {
        s.push_str(r#"<text x="10" y="38" font-size="11">dashed mark: the bar</text>"#);
        s.push('\n');
    }
    s.push_str("</svg>\n");
    s
}

/// A step of 1, 2 or 5 times a power of ten giving about five ticks over `span`.
pub(super) fn nice_step(span: f64) -> f64 {
    let raw = span / 5.0;
    let pow = 10f64.powf(raw.log10().floor());
    let m = raw / pow;
    pow * if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    }
}

pub(super) fn fmt_tick(v: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{v:.0}")
    } else {
        let digits = (-step.log10().floor()) as usize;
        format!("{v:.digits$}")
    }
}

pub(super) fn clip(s: &str, n: usize) -> String {
    if s.chars().count() > n {
        format!("{}...", s.chars().take(n - 3).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Escapes text for XML content and attribute values.
pub(super) fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}
