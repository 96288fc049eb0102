//! Charts drawn as inline SVG on the server: a DAG's graph laid out in
//! layers, a run's Gantt chart, line charts of a task's performance.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use goflow_core::{Dag, EdgeKind, TaskState};

use super::views::task_color;

/// Escapes text for SVG (XML) content and attributes.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

const FONT: &str = "font-family=\"system-ui, sans-serif\"";

/// The layer of each task: 0 for tasks without upstreams, else one more
/// than its deepest upstream.
pub(crate) fn layers(dag: &Dag) -> Vec<usize> {
    let mut layer = vec![0usize; dag.tasks().len()];
    for &i in dag.topological_order() {
        layer[i] = dag.tasks()[i]
            .upstream
            .iter()
            .map(|u| layer[u.task] + 1)
            .max()
            .unwrap_or(0);
    }
    layer
}

/// The order of tasks within each layer: topological order, then, layer
/// by layer, each task near the mean position of its upstreams (the
/// barycenter heuristic), which removes most edge crossings.
fn arrange(dag: &Dag, layer: &[usize]) -> Vec<Vec<usize>> {
    let depth = layer.iter().max().map_or(0, |m| m + 1);
    let mut columns: Vec<Vec<usize>> = vec![Vec::new(); depth];
    for &i in dag.topological_order() {
        columns[layer[i]].push(i);
    }
    let mut pos = vec![0.0f64; dag.tasks().len()];
    for col in &columns {
        for (p, &i) in col.iter().enumerate() {
            pos[i] = p as f64;
        }
    }
    for col in columns.iter_mut().skip(1) {
        let mut keyed: Vec<(f64, usize)> = col
            .iter()
            .map(|&i| {
                let ups = &dag.tasks()[i].upstream;
                let key = if ups.is_empty() {
                    pos[i]
                } else {
                    ups.iter().map(|u| pos[u.task]).sum::<f64>() / ups.len() as f64
                };
                (key, i)
            })
            .collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
        *col = keyed.into_iter().map(|(_, i)| i).collect();
        for (p, &i) in col.iter().enumerate() {
            pos[i] = p as f64;
        }
    }
    columns
}

/// The graph of `dag` as SVG: layers left to right, nodes coloured by
/// their state in a run (`states`), edges coloured by the state of their
/// upstream (dashed for ordering-only edges), each node a link
/// (`link(task id)`).
pub(crate) fn graph(
    dag: &Dag,
    states: &HashMap<String, TaskState>,
    link: &dyn Fn(&str) -> Option<String>,
) -> String {
    const W: f64 = 170.0;
    const H: f64 = 40.0;
    const GAP_X: f64 = 70.0;
    const GAP_Y: f64 = 18.0;
    const PAD: f64 = 16.0;
    let layer = layers(dag);
    let columns = arrange(dag, &layer);
    let rows = columns.iter().map(Vec::len).max().unwrap_or(0);
    let width = PAD * 2.0 + columns.len() as f64 * (W + GAP_X) - GAP_X;
    let height = PAD * 2.0 + rows as f64 * (H + GAP_Y) - GAP_Y;
    let mut at = vec![(0.0, 0.0); dag.tasks().len()];
    for (l, col) in columns.iter().enumerate() {
        // Center short columns vertically.
        let offset = (rows - col.len()) as f64 * (H + GAP_Y) / 2.0;
        for (p, &i) in col.iter().enumerate() {
            at[i] = (
                PAD + l as f64 * (W + GAP_X),
                PAD + offset + p as f64 * (H + GAP_Y),
            );
        }
    }
    let state_of = |i: usize| states.get(dag.tasks()[i].id.as_str()).copied();
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"graph\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" role=\"img\" aria-label=\"graph of DAG {}\" {FONT} font-size=\"12\">",
        esc(dag.id().as_str())
    );
    s.push_str("<defs>");
    for st in std::iter::once(None).chain(TaskState::ALL.into_iter().map(Some)) {
        let name = st.map_or("none", TaskState::as_str);
        let _ = write!(
            s,
            "<marker id=\"arrow-{name}\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"{}\"/></marker>",
            edge_color(st)
        );
    }
    s.push_str("</defs>");
    for (i, t) in dag.tasks().iter().enumerate() {
        for u in &t.upstream {
            let (x1, y1) = (at[u.task].0 + W, at[u.task].1 + H / 2.0);
            let (x2, y2) = (at[i].0 - 2.0, at[i].1 + H / 2.0);
            let mid = (x1 + x2) / 2.0;
            let st = state_of(u.task);
            let dash = if u.kind == EdgeKind::Order {
                " stroke-dasharray=\"5 4\""
            } else {
                ""
            };
            let _ = write!(
                s,
                "<path class=\"edge\" d=\"M{x1:.1},{y1:.1} C{mid:.1},{y1:.1} {mid:.1},{y2:.1} {x2:.1},{y2:.1}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{dash} marker-end=\"url(#arrow-{})\"><title>{} → {}{}</title></path>",
                edge_color(st),
                st.map_or("none", TaskState::as_str),
                esc(dag.tasks()[u.task].id.as_str()),
                esc(t.id.as_str()),
                if u.kind == EdgeKind::Order { " (order only)" } else { " (data)" }
            );
        }
    }
    for (i, t) in dag.tasks().iter().enumerate() {
        let (x, y) = at[i];
        let st = state_of(i);
        let href = link(t.id.as_str());
        if let Some(h) = &href {
            let _ = write!(s, "<a href=\"{}\">", esc(h));
        }
        let _ = write!(
            s,
            "<g class=\"node\" data-task=\"{id}\" data-state=\"{state}\"><title>{id}: {state}</title><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{W}\" height=\"{H}\" rx=\"6\" fill=\"#ffffff\" stroke=\"{color}\" stroke-width=\"3\"/><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"8\" height=\"{H}\" rx=\"3\" fill=\"{color}\"/><text x=\"{tx:.1}\" y=\"{ty1:.1}\" font-weight=\"600\" fill=\"#1c2430\">{label}</text><text x=\"{tx:.1}\" y=\"{ty2:.1}\" fill=\"#5f6b7a\" font-size=\"11\">{state}</text></g>",
            id = esc(t.id.as_str()),
            state = st.map_or("no status", TaskState::as_str),
            color = task_color(st),
            tx = x + 16.0,
            ty1 = y + 17.0,
            ty2 = y + 32.0,
            label = esc(&truncate(t.id.as_str(), 22)),
        );
        if href.is_some() {
            s.push_str("</a>");
        }
    }
    s.push_str("</svg>");
    s
}

fn edge_color(st: Option<TaskState>) -> &'static str {
    match st {
        None => "#9aa5b1",
        Some(s) => task_color(Some(s)),
    }
}

/// One bar of a Gantt chart.
pub(crate) struct Bar {
    /// The row's task.
    pub task: String,
    /// The try.
    pub try_number: u32,
    /// How it ended (or its current state).
    pub state: TaskState,
    /// When it was queued.
    pub queued: Option<DateTime<Utc>>,
    /// When it started.
    pub start: DateTime<Utc>,
    /// When it ended (now, for a running try).
    pub end: DateTime<Utc>,
}

/// A Gantt chart of `bars`, one row per task of `rows`, over the time
/// from the earliest start to the latest end.
pub(crate) fn gantt(rows: &[String], bars: &[Bar], link: &dyn Fn(&str) -> String) -> String {
    const LABEL: f64 = 190.0;
    const CHART: f64 = 720.0;
    const ROW: f64 = 26.0;
    const TOP: f64 = 28.0;
    let height = TOP + rows.len() as f64 * ROW + 8.0;
    let width = LABEL + CHART + 20.0;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"gantt\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" role=\"img\" aria-label=\"Gantt chart of the run\" {FONT} font-size=\"12\">"
    );
    let t0 = bars
        .iter()
        .map(|b| b.queued.unwrap_or(b.start).min(b.start))
        .min();
    let t1 = bars.iter().map(|b| b.end).max();
    let (Some(t0), Some(t1)) = (t0, t1) else {
        let _ = write!(
            s,
            "<text x=\"{LABEL}\" y=\"20\" fill=\"#5f6b7a\">no task has started yet</text></svg>"
        );
        return s;
    };
    let span_ms = ((t1 - t0).num_milliseconds()).max(1) as f64;
    let x_of = |t: DateTime<Utc>| LABEL + (t - t0).num_milliseconds() as f64 / span_ms * CHART;
    for k in 0..=4 {
        let x = LABEL + CHART * f64::from(k) / 4.0;
        let ms = (span_ms * f64::from(k) / 4.0) as i64;
        let _ = write!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{y1}\" x2=\"{x:.1}\" y2=\"{height:.0}\" stroke=\"#e3e8ee\"/><text x=\"{x:.1}\" y=\"16\" text-anchor=\"middle\" fill=\"#5f6b7a\" font-size=\"11\">+{}</text>",
            super::views::duration_ms(ms),
            y1 = TOP - 6.0,
        );
    }
    for (r, task) in rows.iter().enumerate() {
        let y = TOP + r as f64 * ROW;
        let _ = write!(
            s,
            "<a href=\"{}\"><text x=\"4\" y=\"{:.1}\" fill=\"#1c2430\">{}</text></a>",
            esc(&link(task)),
            y + 17.0,
            esc(&truncate(task, 26))
        );
        for b in bars.iter().filter(|b| &b.task == task) {
            if let Some(q) = b.queued.filter(|q| *q < b.start) {
                let (xq, xs) = (x_of(q), x_of(b.start));
                let _ = write!(
                    s,
                    "<rect x=\"{xq:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"8\" fill=\"{}\" opacity=\"0.5\"><title>queued</title></rect>",
                    y + 9.0,
                    (xs - xq).max(1.0),
                    task_color(Some(TaskState::Queued))
                );
            }
            let (xs, xe) = (x_of(b.start), x_of(b.end));
            let _ = write!(
                s,
                "<rect class=\"bar\" data-task=\"{}\" x=\"{xs:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"18\" rx=\"3\" fill=\"{}\"><title>{} try {}: {}, {} from {}</title></rect>",
                esc(task),
                y + 4.0,
                (xe - xs).max(2.0),
                task_color(Some(b.state)),
                esc(task),
                b.try_number,
                b.state,
                super::views::duration_ms((b.end - b.start).num_milliseconds()),
                super::views::time(b.start),
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// One point of a line chart.
pub(crate) struct Point {
    /// The x label (a run id).
    pub label: String,
    /// The value, if measured.
    pub value: Option<f64>,
    /// The try's state (colours the dot).
    pub state: TaskState,
}

/// A dashed line drawn under a chart's measurements, one value per point
/// (e.g. what each try's pod requested), so that use and reservation can
/// be compared at a glance.
pub(crate) struct Reference {
    /// Its name in the legend.
    pub label: &'static str,
    /// Its colour.
    pub color: &'static str,
    /// One value per point; `None` leaves a gap.
    pub values: Vec<Option<f64>>,
}

/// A line chart of `points` (left to right) over optional `references`,
/// values shown by `fmt`. References without a value are left out, with
/// their legend.
pub(crate) fn line_chart(
    title: &str,
    points: &[Point],
    references: &[Reference],
    fmt: &dyn Fn(f64) -> String,
) -> String {
    const W: f64 = 760.0;
    const H: f64 = 180.0;
    const LEFT: f64 = 70.0;
    const TOP: f64 = 24.0;
    const BOTTOM: f64 = 20.0;
    let plot_w = W - LEFT - 16.0;
    let plot_h = H - TOP - BOTTOM;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{t}\" {FONT} font-size=\"11\"><text x=\"4\" y=\"14\" font-size=\"13\" font-weight=\"600\" fill=\"#1c2430\">{t}</text>",
        t = esc(title)
    );
    let references: Vec<&Reference> = references
        .iter()
        .filter(|r| r.values.iter().any(Option::is_some))
        .collect();
    let max = points
        .iter()
        .filter_map(|p| p.value)
        .chain(
            references
                .iter()
                .flat_map(|r| r.values.iter().flatten().copied()),
        )
        .fold(0.0f64, f64::max);
    if points.iter().all(|p| p.value.is_none()) {
        let _ = write!(
            s,
            "<text x=\"{LEFT}\" y=\"{}\" fill=\"#5f6b7a\">not measured</text></svg>",
            TOP + 30.0
        );
        return s;
    }
    let max = if max <= 0.0 { 1.0 } else { max * 1.1 };
    for k in 0..=3 {
        let v = max * f64::from(k) / 3.0;
        let y = TOP + plot_h - plot_h * f64::from(k) / 3.0;
        let _ = write!(
            s,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e3e8ee\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#5f6b7a\">{}</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            esc(&fmt(v))
        );
    }
    let n = points.len();
    let x_of = |i: usize| {
        if n <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (n - 1) as f64
        }
    };
    let y_of = |v: f64| TOP + plot_h - plot_h * v / max;
    let mut legend_x = W - 16.0;
    for r in references.iter().rev() {
        // Runs of consecutive values, so a try without one leaves a gap.
        for run in r
            .values
            .iter()
            .enumerate()
            .collect::<Vec<_>>()
            .split(|(_, v)| v.is_none())
        {
            let path: Vec<String> = run
                .iter()
                .filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x_of(*i), y_of(v))))
                .collect();
            if path.len() == 1 {
                // A lone value still shows, as a short dash.
                let (i, v) = run[0];
                let (x, y) = (x_of(i), y_of(v.unwrap_or_default()));
                let _ = write!(
                    s,
                    "<line class=\"reference\" x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{c}\" stroke-width=\"2\" stroke-dasharray=\"4 3\"/>",
                    x - 8.0,
                    x + 8.0,
                    c = r.color
                );
            } else if !path.is_empty() {
                let _ = write!(
                    s,
                    "<polyline class=\"reference\" points=\"{}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" stroke-dasharray=\"4 3\"/>",
                    path.join(" "),
                    c = r.color
                );
            }
        }
        let text_w = 7.0 * r.label.chars().count() as f64;
        legend_x -= text_w;
        let _ = write!(
            s,
            "<line x1=\"{:.1}\" y1=\"10\" x2=\"{:.1}\" y2=\"10\" stroke=\"{c}\" stroke-width=\"2\" stroke-dasharray=\"4 3\"/><text x=\"{legend_x:.1}\" y=\"14\" fill=\"#5f6b7a\">{}</text>",
            legend_x - 22.0,
            legend_x - 4.0,
            esc(r.label),
            c = r.color
        );
        legend_x -= 34.0;
    }
    let path: Vec<String> = points
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.value.map(|v| format!("{:.1},{:.1}", x_of(i), y_of(v))))
        .collect();
    let _ = write!(
        s,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#3c5a99\" stroke-width=\"2\"/>",
        path.join(" ")
    );
    for (i, p) in points.iter().enumerate() {
        if let Some(v) = p.value {
            let _ = write!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{}\"><title>{}: {}</title></circle>",
                x_of(i),
                y_of(v),
                task_color(Some(p.state)),
                esc(&p.label),
                esc(&fmt(v))
            );
        }
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use goflow_core::{DagBuilder, TaskOptions, TaskSpec};

    fn noop(_: goflow_core::TaskContext, _: &goflow_core::Inputs) -> goflow_core::TaskFuture {
        Box::pin(async { Err(goflow_core::TaskError::msg("unused")) })
    }

    fn spec(id: &str, data: &[&str]) -> TaskSpec {
        TaskSpec {
            id: id.into(),
            function: "f",
            options: TaskOptions::default(),
            data_upstream: data.iter().map(|s| s.to_string()).collect(),
            run: noop,
        }
    }

    fn diamond() -> Dag {
        DagBuilder::new("diamond")
            .task(spec("extract", &[]))
            .task(spec("left", &["extract"]))
            .task(spec("right", &["extract"]))
            .task(spec("merge", &["left", "right"]))
            .task(spec("notify", &[]))
            .order("merge", "notify")
            .build()
            .unwrap()
    }

    #[test]
    fn layers_follow_the_longest_path() {
        let dag = diamond();
        let l = layers(&dag);
        let of = |id: &str| l[dag.index_of(id).unwrap()];
        assert_eq!(
            (
                of("extract"),
                of("left"),
                of("right"),
                of("merge"),
                of("notify")
            ),
            (0, 1, 1, 2, 3)
        );
    }

    #[test]
    fn the_graph_draws_every_node_and_edge_in_its_state() {
        let dag = diamond();
        let states = HashMap::from([
            ("extract".to_owned(), TaskState::Success),
            ("left".to_owned(), TaskState::Failed),
        ]);
        let svg = graph(&dag, &states, &|t| Some(format!("/t/{t}")));
        assert_eq!(svg.matches("<g class=\"node\"").count(), 5);
        assert_eq!(svg.matches("<path class=\"edge\"").count(), 5);
        assert!(svg.contains("data-task=\"left\" data-state=\"failed\""));
        // Edges out of `extract` are green; the ordering edge is dashed.
        assert_eq!(
            svg.matches("stroke=\"#2e7d32\" stroke-width=\"2\"").count(),
            2
        );
        assert_eq!(svg.matches("stroke-dasharray").count(), 1);
        assert!(svg.contains("href=\"/t/merge\""));
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn gantt_bars_span_the_run() {
        let t0 = DateTime::from_timestamp(1_000, 0).unwrap();
        let bars = vec![
            Bar {
                task: "a".into(),
                try_number: 1,
                state: TaskState::Success,
                queued: None,
                start: t0,
                end: t0 + chrono::Duration::seconds(10),
            },
            Bar {
                task: "b".into(),
                try_number: 1,
                state: TaskState::Running,
                queued: None,
                start: t0 + chrono::Duration::seconds(10),
                end: t0 + chrono::Duration::seconds(20),
            },
        ];
        let svg = gantt(&["a".into(), "b".into()], &bars, &|t| format!("/{t}"));
        assert_eq!(svg.matches("class=\"bar\"").count(), 2);
        // `b` starts half way: 190 + 720 / 2.
        assert!(svg.contains("data-task=\"b\" x=\"550.0\""), "{svg}");
        assert!(gantt(&[], &[], &|t| t.to_owned()).contains("no task has started"));
    }

    #[test]
    fn charts_plot_measured_points() {
        let pts = vec![
            Point {
                label: "r1".into(),
                value: Some(1.0),
                state: TaskState::Success,
            },
            Point {
                label: "r2".into(),
                value: None,
                state: TaskState::Failed,
            },
            Point {
                label: "r3".into(),
                value: Some(3.0),
                state: TaskState::Success,
            },
        ];
        let svg = line_chart("duration", &pts, &[], &|v| format!("{v:.1}s"));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(!svg.contains("stroke-dasharray"), "no reference, no legend");
        assert!(line_chart("cpu", &pts[1..2], &[], &|v| v.to_string()).contains("not measured"));

        let requested = Reference {
            label: "requested",
            color: "#888",
            values: vec![Some(8.0), Some(8.0), Some(8.0)],
        };
        let unset = Reference {
            label: "limit",
            color: "#888",
            values: vec![None, None, None],
        };
        let svg = line_chart("memory", &pts, &[requested, unset], &|v| format!("{v:.1}"));
        assert_eq!(svg.matches("class=\"reference\"").count(), 1);
        assert!(svg.contains(">requested</text>"), "{svg}");
        assert!(
            !svg.contains(">limit</text>"),
            "a reference never set is left out"
        );
        // The axis reaches the reference, above every measurement: 8 * 1.1.
        assert!(svg.contains(">8.8</text>"), "{svg}");
    }
}
