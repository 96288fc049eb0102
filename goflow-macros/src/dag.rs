//! `#[dag]`: parses the DAG's body, a small DSL of task calls and ordering
//! edges, validates it, and replaces the function with one that builds
//! the `Dag`, registered through `inventory`.
//!
//! ```text
//! let rows = load();            // a task with id `rows`
//! let total = sum(rows);        // `sum` takes `load`'s output: checked by rustc
//! notify("done");               // id `notify`; a literal argument is a constant
//! total >> notify;              // ordering only; `a >> [b, c]` and chains work too
//! ```
//!
//! What the macro can see, it checks here and reports with
//! `syn::Error`s on the user's tokens: statements a DAG body cannot hold,
//! arguments naming a value rather than a task's output, tasks declared
//! further down, unknown tasks in edges, cycles. What only the type
//! checker knows (a task's inputs, defined elsewhere) it checks in the
//! generated code through `goflow_core::authoring`, whose module docs
//! tell how each message stays goflow's and stays on the user's call.

use std::collections::HashMap;

use proc_macro2::{Delimiter, Group, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Expr, ExprLit, ItemFn, Lit, Meta, Pat, Stmt};

use crate::args::{self, Errors, TaskOptionArgs};

const DAG_OPTIONS: &str = "id, schedule, tz, start, end, catchup, max_active_runs, \
    max_active_tasks, namespace, tags, description, defaults(...), alerts(...), crate";

const ALERT_OPTIONS: &str = "enabled, task_failed, task_retry, run_failed, recovery, \
    missed_schedule, missed_grace, deadline, stop_at_deadline, channels";

struct Node {
    id: String,
    /// The task function, as written.
    path: syn::Path,
    /// The call, for spans: its first token and its parentheses.
    call_start: Span,
    parens: Span,
    args: Vec<Arg>,
}

enum Arg {
    /// The output of the node at this index.
    Upstream { node: usize, span: Span },
    /// An expression evaluated when the task runs.
    Const(Expr),
}

struct OrderEdge {
    from: usize,
    to: usize,
    /// The whole `a >> b` statement, for error spans.
    tokens: TokenStream,
}

#[derive(Default)]
struct DagArgs {
    id: Option<(String, Span)>,
    schedule: Option<(String, Span)>,
    tz: Option<(String, Span)>,
    start: Option<(String, Span)>,
    end: Option<(String, Span)>,
    catchup: Option<bool>,
    max_active_runs: Option<u32>,
    max_active_tasks: Option<u32>,
    namespace: Option<(String, Span)>,
    tags: Vec<String>,
    description: Option<String>,
    defaults: TaskOptionArgs,
    alerts: Option<AlertArgs>,
    /// `crate = path`: where goflow is, when renamed or re-exported.
    krate: Option<syn::Path>,
}

/// `alerts(task_retry = true, deadline = "2h", channels = ["slack"])`.
#[derive(Default)]
struct AlertArgs {
    enabled: Option<bool>,
    task_failed: Option<bool>,
    task_retry: Option<bool>,
    run_failed: Option<bool>,
    recovery: Option<bool>,
    missed_schedule: Option<bool>,
    missed_grace: Option<std::time::Duration>,
    deadline: Option<std::time::Duration>,
    stop_at_deadline: Option<bool>,
    channels: Option<Vec<String>>,
}

fn parse_alerts(meta: &Meta, errors: &mut Errors) -> AlertArgs {
    let mut a = AlertArgs::default();
    let Meta::List(list) = meta else {
        errors.at(
            meta.span(),
            "`alerts` takes alert options: `alerts(task_retry = true, deadline = \"2h\")`",
        );
        return a;
    };
    let inner = match args::parse_metas(list.tokens.clone()) {
        Ok(inner) => inner,
        Err(e) => {
            errors.push(e);
            return a;
        }
    };
    for m in &inner {
        match args::meta_name(m).as_str() {
            "enabled" => a.enabled = args::boolean(m, errors),
            "task_failed" => a.task_failed = args::boolean(m, errors),
            "task_retry" => a.task_retry = args::boolean(m, errors),
            "run_failed" => a.run_failed = args::boolean(m, errors),
            "recovery" => a.recovery = args::boolean(m, errors),
            "missed_schedule" => a.missed_schedule = args::boolean(m, errors),
            "missed_grace" => a.missed_grace = args::duration(m, errors),
            "deadline" => a.deadline = args::duration(m, errors),
            "stop_at_deadline" => a.stop_at_deadline = args::boolean(m, errors),
            "channels" => {
                let mut names = Vec::new();
                for (name, span) in args::string_list(m, errors).unwrap_or_default() {
                    match goflow_syntax::words::check_channel(&name) {
                        Ok(()) => names.push(name),
                        Err(reason) => errors.at(span, reason),
                    }
                }
                a.channels = Some(names);
            }
            other => errors.at(
                m.path().span(),
                format!("unknown alert option `{other}`; expected one of: {ALERT_OPTIONS}"),
            ),
        }
    }
    a
}

impl AlertArgs {
    /// An `AlertSettings` expression: the defaults, with what was set.
    fn to_tokens(&self, p: &TokenStream) -> TokenStream {
        let mut sets = Vec::new();
        for (field, v) in [
            ("enabled", self.enabled),
            ("task_failed", self.task_failed),
            ("task_retry", self.task_retry),
            ("run_failed", self.run_failed),
            ("recovery", self.recovery),
            ("missed_schedule", self.missed_schedule),
            ("stop_at_deadline", self.stop_at_deadline),
        ] {
            if let Some(v) = v {
                let f = format_ident!("{}", field);
                sets.push(quote!(__goflow_alerts.#f = #v;));
            }
        }
        if let Some(d) = self.missed_grace {
            let d = args::duration_tokens(p, d);
            sets.push(quote!(__goflow_alerts.missed_grace = #d;));
        }
        if let Some(d) = self.deadline {
            let d = args::duration_tokens(p, d);
            sets.push(quote!(__goflow_alerts.deadline = #p::std::option::Option::Some(#d);));
        }
        if let Some(c) = &self.channels {
            sets.push(quote! {
                __goflow_alerts.channels = #p::std::option::Option::Some(
                    #p::std::vec![#(#p::std::string::String::from(#c)),*]
                );
            });
        }
        quote! {{
            #[allow(unused_mut)]
            let mut __goflow_alerts = <#p::AlertSettings as #p::std::default::Default>::default();
            #(#sets)*
            __goflow_alerts
        }}
    }
}

fn parse_args(attr: TokenStream, errors: &mut Errors) -> DagArgs {
    let mut a = DagArgs::default();
    let metas = match args::parse_metas(attr) {
        Ok(m) => m,
        Err(e) => {
            errors.push(e);
            return a;
        }
    };
    for meta in &metas {
        match args::meta_name(meta).as_str() {
            "id" => a.id = args::string(meta, errors),
            "schedule" => a.schedule = args::string(meta, errors),
            "tz" => a.tz = args::string(meta, errors),
            "start" => a.start = args::string(meta, errors),
            "end" => a.end = args::string(meta, errors),
            "catchup" => a.catchup = args::boolean(meta, errors),
            "max_active_runs" => {
                a.max_active_runs = args::integer(meta, 1, 100_000, errors).map(|v| v as u32)
            }
            "max_active_tasks" => {
                a.max_active_tasks = args::integer(meta, 1, 1_000_000, errors).map(|v| v as u32)
            }
            "namespace" => a.namespace = args::string(meta, errors),
            "tags" => {
                a.tags = args::string_list(meta, errors)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(s, _)| s)
                    .collect()
            }
            "description" => a.description = args::string(meta, errors).map(|(s, _)| s),
            "alerts" => a.alerts = Some(parse_alerts(meta, errors)),
            "crate" => a.krate = args::crate_path(meta, errors),
            "defaults" => match meta {
                Meta::List(list) => match args::parse_metas(list.tokens.clone()) {
                    Ok(inner) => {
                        for m in &inner {
                            if !a.defaults.accept(m, errors) {
                                errors.at(
                                    m.path().span(),
                                    format!(
                                        "unknown task option `{}` in `defaults`; expected one of: {}",
                                        args::meta_name(m),
                                        args::TASK_OPTIONS
                                    ),
                                );
                            }
                        }
                    }
                    Err(e) => errors.push(e),
                },
                _ => errors.at(
                    meta.span(),
                    "`defaults` takes task options: `defaults(retries = 2, timeout = \"10m\")`",
                ),
            },
            other => errors.at(
                meta.path().span(),
                format!("unknown DAG option `{other}`; expected one of: {DAG_OPTIONS}"),
            ),
        }
    }
    a
}

/// Checks every literal with goflow-syntax, the grammar goflow-core
/// parses with.
fn validate_args(a: &DagArgs, fn_name: &str, fn_span: Span, errors: &mut Errors) -> String {
    let id = match &a.id {
        Some((id, span)) => {
            if let Err(reason) = goflow_syntax::id::check_dns1123_label(id) {
                errors.at(
                    *span,
                    format!("DAG id {id:?} is not a valid Kubernetes DNS-1123 label: it {reason}"),
                );
            }
            id.clone()
        }
        None => {
            let id = goflow_syntax::id::dag_id_from_fn_name(fn_name);
            if let Err(reason) = goflow_syntax::id::check_dns1123_label(&id) {
                errors.at(
                    fn_span,
                    format!(
                        "the DAG id derived from the function name, {id:?}, is not a valid Kubernetes DNS-1123 label: it {reason}; \
                         set one with #[dag(id = \"...\")]"
                    ),
                );
            }
            id
        }
    };
    if let Some((ns, span)) = &a.namespace {
        if let Err(reason) = goflow_syntax::id::check_dns1123_label(ns) {
            errors.at(
                *span,
                format!("namespace {ns:?} is not a valid Kubernetes DNS-1123 label: it {reason}"),
            );
        }
    }
    let tz_name = a.tz.as_ref().map(|(s, _)| s.as_str()).unwrap_or("UTC");
    let tz_ok = match goflow_syntax::tz::check(tz_name) {
        Ok(()) => true,
        Err(e) => {
            errors.at(a.tz.as_ref().map(|t| t.1).unwrap_or(fn_span), e);
            false
        }
    };
    let mut scheduled = false;
    if let Some((s, span)) = &a.schedule {
        match goflow_syntax::schedule::parse(s) {
            Ok(spec) => scheduled = spec.is_scheduled(),
            Err(e) => errors.at(*span, e),
        }
    }
    // Dates are read in the DAG's time zone. Without its rules here (the
    // tz database is goflow-core's), a local time skipped by a DST change
    // is found when the DAG is built, at start-up.
    if tz_ok {
        let mut dates = Vec::new();
        for (what, d) in [("start", &a.start), ("end", &a.end)] {
            if let Some((s, span)) = d {
                match goflow_syntax::date::parse(s) {
                    Ok(t) => dates.push((t, *span)),
                    Err(e) => errors.at(*span, format!("bad `{what}` date: {e}")),
                }
            }
        }
        if let [(start, _), (end, span)] = dates.as_slice() {
            if end.is_before(start) == Some(true) {
                errors.at(*span, "`end` is before `start`");
            }
        }
    }
    if scheduled && a.start.is_none() {
        errors.at(
            a.schedule.as_ref().map(|s| s.1).unwrap_or(fn_span),
            "a scheduled DAG needs a start date: add `start = \"YYYY-MM-DD\"`",
        );
    }
    id
}

/// What a DAG body may hold, for the messages about what it may not.
const ALLOWED: &str = "a DAG body only wires tasks: `let name = task(args);`, `task(args);` \
    and ordering edges `a >> b;`";

/// Why: the body is not run as written.
const NOT_RUN: &str = "#[dag] reads the body when compiling; it does not run with the DAG";

/// What a statement of the body names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Named {
    /// A task, by its id: `let rows = extract();` or `notify();`.
    Task,
    /// Anything else bound by a `let`: `let limit = 10;` (an error).
    Value,
}

/// The name a statement defines, if any.
fn statement_name(stmt: &Stmt) -> Option<(String, Named)> {
    match stmt {
        Stmt::Local(local) => {
            let Pat::Ident(pat) = &local.pat else {
                return None;
            };
            let named = match local.init.as_ref().map(|init| &*init.expr) {
                Some(Expr::Call(call)) if matches!(&*call.func, Expr::Path(_)) => Named::Task,
                Some(_) => Named::Value,
                None => return None,
            };
            Some((pat.ident.unraw().to_string(), named))
        }
        Stmt::Expr(Expr::Call(call), _) => match &*call.func {
            Expr::Path(p) => p
                .path
                .segments
                .last()
                .map(|s| (s.ident.unraw().to_string(), Named::Task)),
            _ => None,
        },
        _ => None,
    }
}

/// `name` of a run parameter or a value in a DAG body: what to do instead.
fn not_an_output(name: &str) -> String {
    format!(
        "`{name}` is not a task's output: a DAG body only wires tasks together, it holds no values; \
         pass a run parameter through the run's conf and read it in the task with \
         `ctx.param(\"{name}\")`, write a constant in the call itself (`task(10)`), \
         or make a task return it"
    )
}

/// The body being read: every name its statements define, and the tasks
/// found so far.
struct Body {
    /// Each statement's name, by position.
    names: Vec<Option<(String, Named)>>,
    nodes: Vec<Node>,
    /// Task id -> index in `nodes`.
    index: HashMap<String, usize>,
}

impl Body {
    fn named(&self, name: &str) -> Option<(Named, usize)> {
        self.names.iter().enumerate().find_map(|(pos, n)| match n {
            Some((n, named)) if n == name => Some((*named, pos)),
            _ => None,
        })
    }

    /// The task ids of the whole body, declared before or after.
    fn task_ids(&self) -> impl Iterator<Item = &str> {
        self.names.iter().filter_map(|n| match n {
            Some((name, Named::Task)) => Some(name.as_str()),
            _ => None,
        })
    }

    /// One argument of the call in statement `pos`.
    fn argument(&self, arg: &Expr, pos: usize, errors: &mut Errors) -> Option<Arg> {
        let Some(name) = single_ident(arg) else {
            // A constant: it must not compute with outputs or values.
            let mut names = IdentPaths::default();
            names.visit_expr(arg);
            for (name, span) in names.0 {
                match self.named(&name) {
                    Some((Named::Task, _)) => {
                        errors.at(
                            span,
                            format!(
                                "`{name}` is a task's output, which a DAG body can only pass on as it is \
                                 (`task({name})`): outputs exist only when tasks run; \
                                 to compute with it, do so in a task"
                            ),
                        );
                        return None;
                    }
                    Some((Named::Value, _)) => {
                        errors.at(span, not_an_output(&name));
                        return None;
                    }
                    None => {}
                }
            }
            return Some(Arg::Const(arg.clone()));
        };
        if let Some(&node) = self.index.get(&name) {
            return Some(Arg::Upstream {
                node,
                span: arg.span(),
            });
        }
        match self.named(&name) {
            Some((Named::Value, _)) => {
                errors.at(arg.span(), not_an_output(&name));
                return None;
            }
            Some((Named::Task, at)) if at == pos => {
                errors.at(
                    arg.span(),
                    format!("`{name}` is this task's own id; a task cannot take its own output"),
                );
                return None;
            }
            Some((Named::Task, later)) if later > pos => {
                errors.at(
                    arg.span(),
                    format!(
                        "`{name}` is a task declared further down; a task can only take the outputs of tasks declared before it"
                    ),
                );
                return None;
            }
            _ => {}
        }
        // The function of a task bound to another name: `total(extract)`
        // after `let sales = extract();`.
        let bound: Vec<&str> = self
            .nodes
            .iter()
            .filter(|n| n.path.segments.last().is_some_and(|s| s.ident == name))
            .map(|n| n.id.as_str())
            .collect();
        if !bound.is_empty() {
            errors.at(
                arg.span(),
                format!(
                    "`{name}` is a task function; pass its output by the name its call is bound to: `{}`",
                    bound.join("` or `")
                ),
            );
            return None;
        }
        // Not a task: a constant (`LIMIT`, `Mode::Fast`), unless it looks
        // like a misspelt task id; constants are not lowercase.
        if name.starts_with(|c: char| c.is_lowercase()) {
            if let Some(near) = closest(&name, self.task_ids()) {
                errors.at(
                    arg.span(),
                    format!("`{name}` is not a task of this DAG; did you mean `{near}`?"),
                );
                return None;
            }
        }
        Some(Arg::Const(arg.clone()))
    }
}

/// The single-identifier paths in an expression: the names it uses.
#[derive(Default)]
struct IdentPaths(Vec<(String, Span)>);

impl<'ast> Visit<'ast> for IdentPaths {
    fn visit_expr_path(&mut self, e: &'ast syn::ExprPath) {
        if let Some(name) = single_ident(&Expr::Path(e.clone())) {
            self.0.push((name, e.span()));
        }
    }
}

/// The name among `known` nearest to `name`, if near enough to be a typo.
fn closest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    known
        .filter(|k| *k != name)
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The message for a statement a DAG body cannot hold: what it is, then
/// what a body holds.
fn unsupported(stmt: &Stmt, body: &Body) -> (Span, String) {
    let macro_name = |mac: &syn::Macro| {
        mac.path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default()
    };
    let control = |what: &str| {
        format!(
            "`{what}` cannot be used here: {ALLOWED}. {NOT_RUN}: to choose between tasks \
             when it runs, return a `Branch` from a task, or use trigger rules"
        )
    };
    let work = |what: String| {
        format!(
            "{what} cannot be used here: {ALLOWED}. {NOT_RUN}: do this work in a #[task] function"
        )
    };
    match stmt {
        Stmt::Macro(m) => (
            m.mac.path.span(),
            work(format!("`{}!`", macro_name(&m.mac))),
        ),
        Stmt::Item(item) => (
            item.span(),
            format!(
                "an item cannot be declared here: {ALLOWED}; declare it outside the #[dag] function"
            ),
        ),
        Stmt::Local(_) => (stmt.span(), ALLOWED.to_owned()),
        Stmt::Expr(e, _) => {
            let message = match e {
                Expr::If(_) => control("if"),
                Expr::Match(_) => control("match"),
                Expr::ForLoop(_) => control("for"),
                Expr::While(_) => control("while"),
                Expr::Loop(_) => control("loop"),
                Expr::Macro(m) => work(format!("`{}!`", macro_name(&m.mac))),
                Expr::Path(p) if p.path.get_ident().is_some() => {
                    let name = p
                        .path
                        .get_ident()
                        .map(|i| i.unraw().to_string())
                        .unwrap_or_default();
                    if body.named(&name).is_some() {
                        format!("`{name};` does nothing: {ALLOWED}")
                    } else {
                        format!(
                            "`{name};` does nothing: {ALLOWED}; to add the task, call it: `{name}();`"
                        )
                    }
                }
                Expr::Binary(b) => format!(
                    "`{}` cannot be used here: {ALLOWED}; only `>>` orders tasks",
                    b.op.to_token_stream()
                ),
                Expr::MethodCall(_) => format!(
                    "a method call cannot be used here: {ALLOWED}. Task options go in \
                     `#[task(...)]`, or for every task of the DAG in `#[dag(defaults(...))]`"
                ),
                Expr::Assign(_) => format!("an assignment cannot be used here: {ALLOWED}"),
                Expr::Block(_) | Expr::Unsafe(_) => {
                    format!("a block cannot be used here: {ALLOWED}")
                }
                _ => format!("this cannot be used here: {ALLOWED}"),
            };
            (e.span(), message)
        }
    }
}

fn parse_body(func: &ItemFn, errors: &mut Errors) -> (Vec<Node>, Vec<OrderEdge>) {
    let mut body = Body {
        names: func.block.stmts.iter().map(statement_name).collect(),
        nodes: Vec::new(),
        index: HashMap::new(),
    };
    let mut pending_edges: Vec<Expr> = Vec::new();

    for (pos, stmt) in func.block.stmts.iter().enumerate() {
        let (id, id_span, call) = match stmt {
            Stmt::Local(local) => {
                let Pat::Ident(pat) = &local.pat else {
                    errors.at(
                        local.pat.span(),
                        "bind a task to a plain name: `let name = task(...);`",
                    );
                    continue;
                };
                if pat.mutability.is_some() || pat.by_ref.is_some() || pat.subpat.is_some() {
                    errors.at(
                        local.pat.span(),
                        "bind a task to a plain name: `let name = task(...);`",
                    );
                    continue;
                }
                let Some(init) = &local.init else {
                    errors.at(
                        local.span(),
                        "a task binding needs a task call: `let name = task(...);`",
                    );
                    continue;
                };
                let Expr::Call(call) = &*init.expr else {
                    let name = pat.ident.unraw();
                    errors.at(
                        init.expr.span(),
                        format!(
                            "`let {name} = ...` must bind a task call, as in `let rows = extract();`: \
                             a DAG body only wires tasks, it holds no values; to give a task a \
                             constant, write it in the call: `task(10)`"
                        ),
                    );
                    continue;
                };
                (pat.ident.unraw().to_string(), pat.ident.span(), call)
            }
            Stmt::Expr(Expr::Call(call), _) => {
                let Expr::Path(p) = &*call.func else {
                    errors.at(call.func.span(), "expected the name of a #[task] function");
                    continue;
                };
                let Some(last) = p.path.segments.last() else {
                    continue;
                };
                (last.ident.unraw().to_string(), last.ident.span(), call)
            }
            Stmt::Expr(e @ Expr::Binary(b), _) if matches!(b.op, syn::BinOp::Shr(_)) => {
                pending_edges.push(e.clone());
                continue;
            }
            other => {
                let (span, message) = unsupported(other, &body);
                errors.at(span, message);
                continue;
            }
        };
        let Expr::Path(func_path) = &*call.func else {
            errors.at(call.func.span(), "expected the name of a #[task] function");
            continue;
        };
        if func_path.qself.is_some() {
            errors.at(call.func.span(), "expected the name of a #[task] function");
            continue;
        }
        if let Err(reason) = goflow_syntax::id::check_task_id(&id) {
            errors.at(id_span, format!("task id {id:?} is not valid: it {reason}"));
        }
        if body.index.contains_key(&id) {
            errors.at(
                id_span,
                format!(
                    "duplicate task id `{id}`: every task in a DAG needs its own id; bind this one to another name, e.g. `let {id}_2 = ...;`"
                ),
            );
            continue;
        }
        let mut args_out = Vec::new();
        for arg in &call.args {
            if let Some(arg) = body.argument(arg, pos, errors) {
                args_out.push(arg);
            }
        }
        body.index.insert(id.clone(), body.nodes.len());
        body.nodes.push(Node {
            id,
            path: func_path.path.clone(),
            call_start: func_path
                .path
                .segments
                .first()
                .map(|s| s.ident.span())
                .unwrap_or_else(|| call.span()),
            parens: call.paren_token.span.join(),
            args: args_out,
        });
    }

    let mut edges = Vec::new();
    for expr in pending_edges {
        let tokens = expr.to_token_stream();
        let groups: Vec<Vec<usize>> = shr_operands(&expr)
            .into_iter()
            .map(|operand| resolve_group(operand, &body, errors))
            .collect();
        for pair in groups.windows(2) {
            for &from in &pair[0] {
                for &to in &pair[1] {
                    edges.push(OrderEdge {
                        from,
                        to,
                        tokens: tokens.clone(),
                    });
                }
            }
        }
    }
    (body.nodes, edges)
}

fn single_ident(e: &Expr) -> Option<String> {
    match e {
        Expr::Path(p) if p.qself.is_none() => p.path.get_ident().map(|i| i.unraw().to_string()),
        _ => None,
    }
}

/// `a >> b >> c` parses as `(a >> b) >> c`; this returns `[a, b, c]`.
fn shr_operands(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::Binary(b) if matches!(b.op, syn::BinOp::Shr(_)) => {
            let mut v = shr_operands(&b.left);
            v.push(&b.right);
            v
        }
        Expr::Paren(p) => shr_operands(&p.expr),
        other => vec![other],
    }
}

fn resolve_group(e: &Expr, body: &Body, errors: &mut Errors) -> Vec<usize> {
    let items: Vec<&Expr> = match e {
        Expr::Array(a) => a.elems.iter().collect(),
        other => vec![other],
    };
    let mut out = Vec::new();
    for item in items {
        match single_ident(item) {
            Some(name) => match body.index.get(&name) {
                Some(i) => out.push(*i),
                None if matches!(body.named(&name), Some((Named::Value, _))) => errors.at(
                    item.span(),
                    format!("`{name}` is not a task: ordering edges link the tasks of this DAG"),
                ),
                None => {
                    let mut known: Vec<&str> = body.index.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    let known_list = known.join(", ");
                    let message = match closest(&name, known.iter().copied()) {
                        Some(near) => format!(
                            "unknown task `{name}` in an ordering edge; did you mean `{near}`? \
                             The tasks of this DAG are: {known_list}"
                        ),
                        None => format!(
                            "unknown task `{name}` in an ordering edge; the tasks of this DAG are: {known_list}"
                        ),
                    };
                    errors.at(item.span(), message)
                }
            },
            None => errors.at(
                item.span(),
                "expected a task id or a list of task ids `[a, b]`",
            ),
        }
    }
    out
}

/// Checks the parsed graph for cycles, with the order goflow-core builds
/// DAGs in (goflow-syntax's `topological_order`).
fn check_graph(nodes: &[Node], edges: &[OrderEdge], errors: &mut Errors) {
    // Upstreams as `DagBuilder::build` lists them: data inputs, then
    // ordering edges, each once.
    let mut upstream: Vec<Vec<usize>> = nodes
        .iter()
        .map(|n| {
            let mut ups = Vec::new();
            for a in &n.args {
                if let Arg::Upstream { node, .. } = a {
                    if !ups.contains(node) {
                        ups.push(*node);
                    }
                }
            }
            ups
        })
        .collect();
    for e in edges {
        if !upstream[e.to].contains(&e.from) {
            upstream[e.to].push(e.from);
        }
    }
    if let Err(cycle) = goflow_syntax::graph::topological_order(&upstream) {
        let on_cycle: Vec<(usize, usize)> = cycle.windows(2).map(|w| (w[0], w[1])).collect();
        let cycle: Vec<&str> = cycle.iter().map(|i| nodes[*i].id.as_str()).collect();
        // Blame the edge declared last: it is the one that closed the cycle.
        let closing = edges
            .iter()
            .rev()
            .find(|e| on_cycle.contains(&(e.from, e.to)));
        let msg = format!(
            "these dependencies form a cycle: {}; a DAG must not depend on itself",
            cycle.join(" -> ")
        );
        match closing {
            Some(e) => errors.push(syn::Error::new_spanned(&e.tokens, msg)),
            None => errors.at(Span::call_site(), msg),
        }
    }
}

fn doc_description(func: &ItemFn) -> Option<String> {
    let lines: Vec<String> = func
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            Meta::NameValue(nv) => match &nv.value {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                }) => Some(s.value().trim().to_owned()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    let text = lines.join(" ").trim().to_owned();
    (!text.is_empty()).then_some(text)
}

pub fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(e) => return e.to_compile_error(),
    };
    let sig = &func.sig;
    if !sig.inputs.is_empty() {
        errors.at(sig.inputs.span(), "a #[dag] function takes no arguments");
    }
    if let syn::ReturnType::Type(_, ty) = &sig.output {
        errors.at(
            ty.span(),
            "a #[dag] function returns nothing; #[dag] makes it return the `Dag`",
        );
    }
    if sig.asyncness.is_some() || !sig.generics.params.is_empty() {
        errors.at(sig.span(), "a #[dag] function must be a plain `fn name()`");
    }

    let dag_args = parse_args(attr, &mut errors);
    let fn_name = sig.ident.unraw().to_string();
    let id = validate_args(&dag_args, &fn_name, sig.ident.span(), &mut errors);
    let (nodes, edges) = parse_body(&func, &mut errors);
    if nodes.is_empty() && errors.is_empty() {
        errors.at(
            func.block.span(),
            "this DAG has no tasks; call #[task] functions in its body",
        );
    }
    if errors.is_empty() {
        check_graph(&nodes, &edges, &mut errors);
    }

    let krate = args::goflow_path(dag_args.krate.as_ref());
    let name = &sig.ident;
    let vis = &func.vis;
    let attrs = &func.attrs;
    // Everything generated names goflow through one import, next to the
    // function (its signature names `Dag`): a wrong `crate = path` is one
    // error, on that path.
    let p = format_ident!("__goflow_private_{}", fn_name);
    let import = quote! {
        #[allow(unused_imports)]
        use #krate::__private as #p;
    };
    if !errors.is_empty() {
        let err = errors.to_compile_error();
        return quote! {
            #err
            #import
            #(#attrs)*
            #vis fn #name() -> #p::Dag {
                #p::std::unreachable!("this DAG did not compile")
            }
        };
    }
    let p = p.into_token_stream();

    const EXPECT: &str = "goflow: #[dag] validated this at compile time; please report a bug";
    let checks = nodes.iter().enumerate().map(|(index, n)| {
        let count = input_count_check(index, n, &p);
        let branch = branch_check(index, n, &downstream_ids(index, &nodes, &edges), &p);
        quote!(#count #branch)
    });
    let runners = nodes
        .iter()
        .enumerate()
        .map(|(index, n)| runner(index, n, &nodes, &p));
    let tasks = nodes.iter().enumerate().map(|(index, n)| {
        let runner = runner_ident(n);
        let tid = &n.id;
        let path = task_alias(index);
        let data: Vec<&str> = n
            .args
            .iter()
            .filter_map(|a| match a {
                Arg::Upstream { node, .. } => Some(nodes[*node].id.as_str()),
                Arg::Const(_) => None,
            })
            .collect();
        quote! {
            .task(#p::TaskSpec {
                id: #p::std::string::String::from(#tid),
                function: <#path as #p::TaskDef>::NAME,
                options: <#path as #p::TaskDef>::options(),
                data_upstream: #p::std::vec![#(#p::std::string::String::from(#data)),*],
                run: #runner,
            })
        }
    });
    let orders = edges.iter().map(|e| {
        let (from, to) = (&nodes[e.from].id, &nodes[e.to].id);
        quote!(.order(#from, #to))
    });
    let tz = dag_args
        .tz
        .as_ref()
        .map(|t| t.0.clone())
        .unwrap_or_else(|| "UTC".into());
    let schedule = dag_args
        .schedule
        .as_ref()
        .map(|s| s.0.clone())
        .unwrap_or_default();
    let start = dag_args.start.as_ref().map(|s| {
        let s = &s.0;
        quote!(.start_date(#p::schedule::parse_datetime(#s, __goflow_tz).expect(#EXPECT)))
    });
    let end = dag_args.end.as_ref().map(|s| {
        let s = &s.0;
        quote!(.end_date(#p::std::option::Option::Some(#p::schedule::parse_datetime(#s, __goflow_tz).expect(#EXPECT))))
    });
    let catchup = dag_args.catchup.map(|c| quote!(.catchup(#c)));
    let max_runs = dag_args
        .max_active_runs
        .map(|n| quote!(.max_active_runs(#n)));
    let max_tasks = dag_args
        .max_active_tasks
        .map(|n| quote!(.max_active_tasks(#n)));
    let namespace = dag_args.namespace.as_ref().map(|n| {
        let n = &n.0;
        quote!(.namespace(#n))
    });
    let tags = &dag_args.tags;
    let tags = (!tags.is_empty()).then(|| quote!(.tags([#(#tags),*])));
    let description = dag_args
        .description
        .clone()
        .or_else(|| doc_description(&func))
        .map(|d| quote!(.description(#d)));
    let defaults = dag_args.defaults.to_tokens_in(&p);
    let alerts = dag_args.alerts.as_ref().map(|a| {
        let a = a.to_tokens(&p);
        quote!(.alerts(#a))
    });

    quote! {
        #import
        #(#attrs)*
        #vis fn #name() -> #p::Dag {
            #(#checks)*
            #(#runners)*
            let __goflow_tz = #p::schedule::parse_tz(#tz).expect(#EXPECT);
            #p::DagBuilder::new(#id)
                .schedule(#p::Schedule::parse(#schedule, #tz).expect(#EXPECT), __goflow_tz)
                #start
                #end
                #catchup
                #max_runs
                #max_tasks
                #namespace
                #description
                #tags
                .default_options(#defaults)
                #alerts
                .source(#p::std::file!(), #p::std::line!())
                #(#tasks)*
                #(#orders)*
                .build()
                .expect(#EXPECT)
        }

        const _: () = {
            #p::inventory::submit! {
                #p::DagRegistration {
                    build: #name,
                    file: #p::std::file!(),
                    line: #p::std::line!(),
                }
            }
        };
    }
}

fn runner_ident(n: &Node) -> syn::Ident {
    format_ident!("__goflow_task_{}", n.id)
}

/// The task function's name as written, `total` or `more::finish`.
fn written(path: &syn::Path) -> String {
    path.segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}

/// The name, in the generated function, of the task of node `k`: the task
/// function's path is looked up in the type namespace once, here, so a
/// name that is not a task is reported once.
fn task_alias(k: usize) -> syn::Ident {
    format_ident!("__GoflowTask{}", k)
}

/// What stands for node `k`'s task in the generated function, and the
/// checks of what only the type checker knows about its call, all spanned
/// on the user's call:
///
/// - the task function, named in the value namespace, where it is a
///   function: a name that is none gets rustc's "cannot find value", with
///   its suggestion of a function with a similar name;
/// - the alias of the task's hidden type (see `task_alias`);
/// - in a constant, that the task takes as many inputs as the call gives:
///   the constant panics with "`ping` takes 0 upstream outputs, 1 given".
///   The constant is named like the task function, so that rustc's label
///   reads "evaluation of `pipeline::ping` failed here".
fn input_count_check(index: usize, n: &Node, p: &TokenStream) -> TokenStream {
    let path = &n.path;
    let alias = task_alias(index);
    let a = quote!(#p::authoring);
    let given = n.args.len();
    let task = written(path);
    let plural = |k: usize| if k == 1 { "" } else { "s" };
    let message = |takes: usize| {
        format!(
            "`{task}` takes {takes} upstream output{}, {given} given",
            plural(takes)
        )
    };
    // `::core::panic!(...)` spanned from the call's first token to its
    // closing parenthesis: the error underlines the whole call.
    let panic = |message: String| {
        let mut args = Group::new(Delimiter::Parenthesis, quote!(#message));
        args.set_span(n.parens);
        quote_spanned!(n.call_start=> ::core::panic! #args)
    };
    let arms = (0..=goflow_syntax::MAX_INPUTS)
        .filter(|&k| k != given)
        .map(|k| {
            let panic = panic(message(k));
            quote!(#k => #panic,)
        });
    let other = panic(format!(
        "`{task}` takes more than {} upstream outputs, {given} given",
        goflow_syntax::MAX_INPUTS
    ));
    let constant = path
        .segments
        .last()
        .map(|s| s.ident.clone())
        .unwrap_or_else(|| format_ident!("task"));
    quote! {
        let _ = #path;
        #[allow(non_camel_case_types)]
        type #alias = #path;
        {
            #[allow(non_upper_case_globals)]
            const #constant: () = match <#alias as #a::Signature>::INPUTS {
                #given => {}
                #(#arms)*
                _ => #other,
            };
        }
    }
}

/// The ids of the direct downstreams of node `index`: the tasks that take
/// its output and those ordered after it.
fn downstream_ids(index: usize, nodes: &[Node], edges: &[OrderEdge]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    let data = nodes.iter().filter(|n| {
        n.args
            .iter()
            .any(|a| matches!(a, Arg::Upstream { node, .. } if *node == index))
    });
    let ordered = edges
        .iter()
        .filter(|e| e.from == index)
        .map(|e| &nodes[e.to]);
    for n in data.chain(ordered) {
        if !ids.contains(&n.id) {
            ids.push(n.id.clone());
        }
    }
    ids
}

/// In a constant, that every task id a branch task names in its body's
/// `Branch::to([...])` literals is a direct downstream of it in this DAG:
/// a typo would otherwise skip every downstream and let runs succeed. The
/// message (assembled by `authoring::branch_message`, since constants
/// cannot format) underlines the task's call.
fn branch_check(index: usize, n: &Node, downstream: &[String], p: &TokenStream) -> TokenStream {
    let alias = task_alias(index);
    let a = quote!(#p::authoring);
    let tid = &n.id;
    let len = format_ident!("__GOFLOW_BRANCH_LEN_{}", index);
    let bytes = format_ident!("__GOFLOW_BRANCH_MESSAGE_{}", index);
    let mut args = Group::new(Delimiter::Parenthesis, quote!("{}", message));
    args.set_span(n.parens);
    let panic = quote_spanned!(n.call_start=> ::core::panic! #args);
    quote! {
        {
            const #len: usize = #a::branch_message_len(
                #tid,
                <#alias as #a::Signature>::BRANCH_TARGETS,
                &[#(#downstream),*],
            );
            const #bytes: [u8; #len] = #a::branch_message::<#len>(
                #tid,
                <#alias as #a::Signature>::BRANCH_TARGETS,
                &[#(#downstream),*],
            );
            const _: () = if #len > 0 {
                if let ::core::result::Result::Ok(message) = ::core::str::from_utf8(&#bytes) {
                    #panic
                }
            };
        }
    }
}

/// The node's entry point: read each upstream output as that upstream's
/// declared output type and check it is the task's parameter type, then
/// call the task. Handing a `Vec<Sale>` to a parameter of type `Summary`
/// is then a type error at the argument.
///
/// When the call gives the task more or fewer inputs than it takes,
/// `input_count_check` reports it; the entry point then still type-checks
/// (`Given<false>`: see `goflow_core::authoring`), so that rustc does not
/// report the mistake a second time.
fn runner(index: usize, n: &Node, nodes: &[Node], p: &TokenStream) -> TokenStream {
    let a = quote!(#p::authoring);
    let ident = runner_ident(n);
    let given = n.args.len();
    // Spans "expected due to this" on the task's name in the call.
    let name_span = n
        .path
        .segments
        .last()
        .map(|s| s.ident.span())
        .unwrap_or(n.call_start);
    let path = task_alias(index);
    let path = quote_spanned!(name_span=> #path);
    let mut lets = Vec::new();
    let mut call_args = Vec::new();
    for (k, arg) in n.args.iter().enumerate() {
        let var = format_ident!("__goflow_in{}", k);
        match arg {
            Arg::Upstream { node, span } => {
                let up_path = task_alias(*node);
                let up_path = quote_spanned!(name_span=> #up_path);
                let up_id = &nodes[*node].id;
                let out = format_ident!("__goflow_out{}", k);
                let found = syn::Ident::new(&out.to_string(), *span);
                let expected = quote_spanned!(name_span=>
                    <__GoflowGiven as #a::Input<#path, <#up_path as #p::TaskDef>::Output, #k>>::Type
                );
                lets.push(quote! {
                    let #out = match __goflow_inputs.read::<<#up_path as #p::TaskDef>::Output>(#up_id) {
                        #p::std::result::Result::Ok(v) => v,
                        #p::std::result::Result::Err(e) => {
                            return #p::std::boxed::Box::pin(async move { #p::std::result::Result::Err(e) });
                        }
                    };
                    let #var: #expected = #found;
                });
            }
            Arg::Const(expr) => {
                // String literals become whatever string type the task takes.
                let own = format_ident!("__goflow_const{}", k);
                let found = syn::Ident::new(&own.to_string(), expr.span());
                let value = match expr {
                    Expr::Lit(ExprLit {
                        lit: Lit::Str(_), ..
                    }) => {
                        quote_spanned!(expr.span()=> #p::std::convert::Into::into(#found))
                    }
                    _ => quote!(#found),
                };
                lets.push(quote! {
                    let #own = #expr;
                    let #var = #a::constant::<__GoflowGiven, #path, _, _, #k>(
                        #a::witness(&#own),
                        move || #value,
                    );
                });
            }
        }
        call_args.push(var);
    }
    quote! {
        #[allow(non_snake_case, clippy::let_unit_value)]
        fn #ident(
            __goflow_ctx: #p::TaskContext,
            __goflow_inputs: &#p::Inputs,
        ) -> #p::TaskFuture {
            type __GoflowGiven = #a::Given<{ #given == <#path as #a::Signature>::INPUTS }>;
            #(#lets)*
            #p::std::boxed::Box::pin(async move {
                let __goflow_out = <__GoflowGiven as #a::Call<#path, _>>::call(
                    __goflow_ctx,
                    (#(#call_args,)*),
                )
                .await?;
                let __goflow_follow = <#path as #p::TaskDef>::follow(&__goflow_out);
                let __goflow_value = #p::serde_json::to_value(&__goflow_out)
                    .map_err(<#p::TaskError as #p::std::convert::From<_>>::from)?;
                #p::std::result::Result::Ok(#p::TaskOutput {
                    value: __goflow_value,
                    follow: __goflow_follow,
                })
            })
        }
    }
}
