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

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ItemFn, Lit, Meta, Pat, Stmt};

use crate::args::{self, Errors, TaskOptionArgs};

const DAG_OPTIONS: &str = "id, schedule, tz, start, end, catchup, max_active_runs, \
    max_active_tasks, namespace, tags, description, defaults(...), alerts(...)";

const ALERT_OPTIONS: &str = "enabled, task_failed, task_retry, run_failed, recovery, \
    missed_schedule, missed_grace, deadline, stop_at_deadline, channels";

struct Node {
    id: String,
    path: syn::Path,
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
                    match goflow_core::alerts::check_channel(&name) {
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
    fn to_tokens(&self) -> TokenStream {
        let p = quote!(::goflow::__private);
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
            let d = args::duration_tokens(d);
            sets.push(quote!(__goflow_alerts.missed_grace = #d;));
        }
        if let Some(d) = self.deadline {
            let d = args::duration_tokens(d);
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

/// Checks every literal with goflow-core's own parsers.
fn validate_args(a: &DagArgs, fn_name: &str, fn_span: Span, errors: &mut Errors) -> String {
    let id = match &a.id {
        Some((id, span)) => {
            if let Err(reason) = goflow_core::id::check_dns1123_label(id) {
                errors.at(
                    *span,
                    format!("DAG id {id:?} is not a valid Kubernetes DNS-1123 label: it {reason}"),
                );
            }
            id.clone()
        }
        None => {
            let id = goflow_core::id::dag_id_from_fn_name(fn_name);
            if let Err(reason) = goflow_core::id::check_dns1123_label(&id) {
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
        if let Err(reason) = goflow_core::id::check_dns1123_label(ns) {
            errors.at(
                *span,
                format!("namespace {ns:?} is not a valid Kubernetes DNS-1123 label: it {reason}"),
            );
        }
    }
    let tz_name = a.tz.as_ref().map(|(s, _)| s.as_str()).unwrap_or("UTC");
    let tz = match goflow_core::schedule::parse_tz(tz_name) {
        Ok(tz) => Some(tz),
        Err(e) => {
            errors.at(a.tz.as_ref().map(|t| t.1).unwrap_or(fn_span), e);
            None
        }
    };
    let mut scheduled = false;
    if let Some((s, span)) = &a.schedule {
        match goflow_core::Schedule::parse(s, "UTC") {
            Ok(sched) => scheduled = !matches!(sched, goflow_core::Schedule::Manual),
            Err(e) => errors.at(*span, e),
        }
    }
    if let Some(tz) = tz {
        let mut dates = Vec::new();
        for (what, d) in [("start", &a.start), ("end", &a.end)] {
            if let Some((s, span)) = d {
                match goflow_core::schedule::parse_datetime(s, tz) {
                    Ok(t) => dates.push((t, *span)),
                    Err(e) => errors.at(*span, format!("bad `{what}` date: {e}")),
                }
            }
        }
        if let [(start, _), (end, span)] = dates.as_slice() {
            if end < start {
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

fn parse_body(func: &ItemFn, errors: &mut Errors) -> (Vec<Node>, Vec<OrderEdge>) {
    let mut nodes: Vec<Node> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut pending_edges: Vec<Expr> = Vec::new();
    // All binding names first, so that a data argument naming a task bound
    // later gets a clear message instead of "cannot find value".
    let declared_later: Vec<String> = func
        .block
        .stmts
        .iter()
        .filter_map(|s| match s {
            Stmt::Local(l) => match &l.pat {
                Pat::Ident(p) => Some(p.ident.unraw().to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect();

    for stmt in &func.block.stmts {
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
                    errors.at(
                        init.expr.span(),
                        "expected a task call such as `extract()` or `total(rows)`",
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
                errors.at(
                    other.span(),
                    "a DAG body holds only task calls (`let name = task(args);` or `task(args);`) and ordering edges (`a >> b;`)",
                );
                continue;
            }
        };
        let Expr::Path(func_path) = &*call.func else {
            errors.at(call.func.span(), "expected the name of a #[task] function");
            continue;
        };
        if let Err(reason) = goflow_core::id::check_task_id(&id) {
            errors.at(id_span, format!("task id {id:?} is not valid: it {reason}"));
        }
        if index.contains_key(&id) {
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
            match single_ident(arg) {
                Some(name) if index.contains_key(&name) => args_out.push(Arg::Upstream {
                    node: index[&name],
                    span: arg.span(),
                }),
                Some(name) if declared_later.contains(&name) => errors.at(
                    arg.span(),
                    format!(
                        "`{name}` is a task declared further down; a task can only take the outputs of tasks declared before it"
                    ),
                ),
                _ => args_out.push(Arg::Const(arg.clone())),
            }
        }
        index.insert(id.clone(), nodes.len());
        nodes.push(Node {
            id,
            path: func_path.path.clone(),
            args: args_out,
        });
    }

    let mut edges = Vec::new();
    for expr in pending_edges {
        let tokens = expr.to_token_stream();
        let groups: Vec<Vec<usize>> = shr_operands(&expr)
            .into_iter()
            .map(|operand| resolve_group(operand, &index, errors))
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
    (nodes, edges)
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

fn resolve_group(e: &Expr, index: &HashMap<String, usize>, errors: &mut Errors) -> Vec<usize> {
    let items: Vec<&Expr> = match e {
        Expr::Array(a) => a.elems.iter().collect(),
        other => vec![other],
    };
    let mut out = Vec::new();
    for item in items {
        match single_ident(item) {
            Some(name) => match index.get(&name) {
                Some(i) => out.push(*i),
                None => {
                    let mut known: Vec<&str> = index.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    errors.at(
                        item.span(),
                        format!(
                            "unknown task `{name}` in an ordering edge; the tasks of this DAG are: {}",
                            known.join(", ")
                        ),
                    )
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

fn dummy(_: goflow_core::TaskContext, _: &goflow_core::Inputs) -> goflow_core::TaskFuture {
    Box::pin(async { Err(goflow_core::TaskError::msg("compile-time check only")) })
}

/// Runs goflow-core's own validation (cycles, ids) on the parsed graph.
fn check_graph(id: &str, nodes: &[Node], edges: &[OrderEdge], errors: &mut Errors) {
    let mut b = goflow_core::DagBuilder::new(id.to_owned());
    for n in nodes {
        b = b.task(goflow_core::TaskSpec {
            id: n.id.clone(),
            function: "",
            options: Default::default(),
            data_upstream: n
                .args
                .iter()
                .filter_map(|a| match a {
                    Arg::Upstream { node, .. } => Some(nodes[*node].id.clone()),
                    Arg::Const(_) => None,
                })
                .collect(),
            run: dummy,
        });
    }
    for e in edges {
        b = b.order(nodes[e.from].id.clone(), nodes[e.to].id.clone());
    }
    if let Err(goflow_core::Error::Cycle { cycle, .. }) = b.build() {
        let pos = |name: &str| nodes.iter().position(|n| n.id == name);
        let on_cycle: Vec<(usize, usize)> = cycle
            .windows(2)
            .filter_map(|w| Some((pos(&w[0])?, pos(&w[1])?)))
            .collect();
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
        check_graph(&id, &nodes, &edges, &mut errors);
    }

    let p = quote!(::goflow::__private);
    let name = &sig.ident;
    let vis = &func.vis;
    let attrs = &func.attrs;
    if !errors.is_empty() {
        let err = errors.to_compile_error();
        return quote! {
            #err
            #(#attrs)*
            #vis fn #name() -> #p::Dag {
                #p::std::unreachable!("this DAG did not compile")
            }
        };
    }

    const EXPECT: &str = "goflow: #[dag] validated this at compile time; please report a bug";
    let runners = nodes.iter().map(|n| runner(n, &nodes));
    let tasks = nodes.iter().map(|n| {
        let runner = runner_ident(n);
        let tid = &n.id;
        let path = &n.path;
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
    let defaults = dag_args.defaults.to_tokens();
    let alerts = dag_args.alerts.as_ref().map(|a| {
        let a = a.to_tokens();
        quote!(.alerts(#a))
    });

    quote! {
        #(#attrs)*
        #vis fn #name() -> #p::Dag {
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

/// The node's entry point: read each upstream output as that upstream's
/// declared output type, then call the task. Handing a `Vec<Sale>` to a
/// parameter of type `Summary` is then a type error at the argument.
fn runner(n: &Node, nodes: &[Node]) -> TokenStream {
    let p = quote!(::goflow::__private);
    let ident = runner_ident(n);
    let path = &n.path;
    let mut lets = Vec::new();
    let mut call_args = Vec::new();
    for (k, arg) in n.args.iter().enumerate() {
        let var = format_ident!("__goflow_in{}", k);
        match arg {
            Arg::Upstream { node, span } => {
                let up = &nodes[*node];
                let up_path = &up.path;
                let up_id = &up.id;
                lets.push(quote! {
                    let #var = match __goflow_inputs.read::<<#up_path as #p::TaskDef>::Output>(#up_id) {
                        #p::std::result::Result::Ok(v) => v,
                        #p::std::result::Result::Err(e) => {
                            return #p::std::boxed::Box::pin(async move { #p::std::result::Result::Err(e) });
                        }
                    };
                });
                call_args.push(syn::Ident::new(&var.to_string(), *span).into_token_stream());
            }
            Arg::Const(expr) => {
                // String literals become whatever string type the task takes.
                let value = match expr {
                    Expr::Lit(ExprLit {
                        lit: Lit::Str(_), ..
                    }) => {
                        quote_spanned!(expr.span()=> #p::std::convert::Into::into(#expr))
                    }
                    _ => quote!(#expr),
                };
                lets.push(quote!(let #var = #value;));
                call_args.push(syn::Ident::new(&var.to_string(), expr.span()).into_token_stream());
            }
        }
    }
    let invoke = quote_spanned!(path.span()=> #path::__goflow_invoke);
    quote! {
        #[allow(non_snake_case, clippy::let_unit_value)]
        fn #ident(
            __goflow_ctx: #p::TaskContext,
            __goflow_inputs: &#p::Inputs,
        ) -> #p::TaskFuture {
            #(#lets)*
            #p::std::boxed::Box::pin(async move {
                let __goflow_out = #invoke(__goflow_ctx, #(#call_args),*).await?;
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
