//! Procedural macros of goflow: `#[task]`, `#[dag]` and `main!`. Use them
//! through the `goflow` crate, whose docs show the full syntax.
//!
//! Each entry point converts to `proc_macro2`, expands, and reports every
//! mistake as a compile error pointing at the offending token.

use proc_macro::TokenStream;

mod args;
mod dag;
mod task;

/// Marks a function as a task of goflow.
///
/// ```ignore
/// use goflow::prelude::*;
///
/// #[task(retries = 3, retry_delay = "30s", backoff = "exponential", timeout = "5m")]
/// async fn extract(ctx: &TaskContext) -> anyhow::Result<Vec<u32>> {
///     goflow::tracing::info!(day = %ctx.ds(), "reading");
///     Ok(vec![1, 2, 3])
/// }
///
/// #[task]
/// fn total(values: Vec<u32>) -> u32 {
///     values.iter().sum()
/// }
/// ```
///
/// (Examples here are compiled and run in the `goflow` crate's tests.)
///
/// # The function
///
/// - `async fn` or plain `fn`; a plain one runs on tokio's blocking pool.
/// - Its arguments are the outputs of upstream tasks, as `#[dag]` wires
///   them: owned types that implement `Serialize` and `Deserialize`. One
///   argument may be `ctx: &TaskContext` (the run id, try number, logical
///   date and data interval in UTC and in the DAG's zone, `ds()`, the
///   run's conf through `ctx.param::<T>("key")`).
/// - It returns an owned serializable value, or a `Result<T, E>` (any
///   alias of it too) whose `E` is any error type: one implementing
///   `std::error::Error`, `anyhow::Error`, `Box<dyn Error (+ Send + Sync)>`,
///   `String`, `&'static str` or `TaskError`. `Err` fails the try (retried
///   while tries remain); the original error stays reachable through
///   `TaskError::downcast_ref`. `Err(TaskError::skip(..))` skips the task,
///   `Err(TaskError::fatal(..))` fails it without retries.
/// - Returning `goflow::Branch` makes a branch task: `Branch::to(["a"])`
///   runs the named direct downstreams and skips the others. Naming a task
///   that is not a direct downstream is a compile error of the `#[dag]`
///   when the ids are string literals in `Branch::to([...])`, and fails
///   the branch task when they are computed at run time.
/// - The function stays a plain function: unit-test it by calling it,
///   with `TaskContext::for_test("extract").build()` for the context.
///
/// # Options
///
/// | option | value | default |
/// |---|---|---|
/// | `retries` | tries after the first, e.g. `3` | `0` |
/// | `retry_delay` | duration literal: `"30s"`, `"5m"`, `"1h30m"` | `"5m"` |
/// | `backoff` | `"fixed"` or `"exponential"` (doubling from `retry_delay`) | `"fixed"` |
/// | `max_retry_delay` | duration: the cap of an exponential backoff | none |
/// | `timeout` | duration: a longer try fails (and is retried) | none |
/// | `trigger_rule` | `"all_success"`, `"all_failed"`, `"all_done"`, `"one_success"`, `"one_failed"`, `"one_done"`, `"none_failed"`, `"none_skipped"`, `"none_failed_min_one_success"`, `"all_skipped"`, `"always"` | `"all_success"` |
/// | `pool` | name of a pool (`pools set <name> <slots>`) that bounds concurrency | `"default_pool"` |
/// | `priority` | integer; higher runs first when slots are scarce | `1` |
/// | `executor` | `"in_process"`, `"local_process"`, `"kubernetes"` | the scheduler's `--executor` |
/// | `max_lost_tries` | tries lost to crashes before the task fails (they do not use `retries`) | `3` |
/// | `image` | Kubernetes: the container image of the task's Job | the scheduler's |
/// | `cpu`, `cpu_limit` | Kubernetes: CPU request and limit, e.g. `"500m"` | none |
/// | `memory`, `memory_limit` | Kubernetes: memory request and limit, e.g. `"512Mi"` | none |
/// | `env` | Kubernetes: `["KEY=value", ...]` | none |
/// | `service_account` | Kubernetes: the pod's service account | the namespace's default |
/// | `node_selector` | Kubernetes: `["key=value", ...]` | none |
/// | `crate` | path of goflow when your crate re-exports it, e.g. `crate = crate::flow` (a renamed dependency is found from Cargo.toml) | `::goflow` |
///
/// Every mistake (an unknown option, a bad duration, an unknown trigger
/// rule, a return type that cannot be a task's output) is a compile error
/// pointing at the offending token.
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    task::expand(attr.into(), item.into()).into()
}

/// Declares a DAG from a function whose body wires tasks together.
///
/// ```ignore
/// use goflow::prelude::*;
///
/// /// Daily sales (the doc comment is the DAG's description).
/// #[dag(schedule = "0 6 * * *", tz = "Europe/Paris", start = "2026-01-01", tags = ["sales"])]
/// fn daily_sales() {
///     let sales = extract();          // task id `sales`
///     let sum = total(sales);         // `total` takes `extract`'s output: checked by rustc
///     notify();                       // task id `notify`
///     sum >> notify;                  // an ordering-only edge
/// }
/// ```
///
/// (Examples here are compiled and run in the `goflow` crate's tests.)
///
/// # The body
///
/// - `let id = task(args);` adds a task whose id is the binding's name;
///   `task(args);` uses the function's name.
/// - An argument that names an earlier task is that task's output (its
///   type must match the parameter's: checked at compile time); a literal
///   is a constant (string literals convert into `String`).
/// - `a >> b;`, `a >> [b, c];` and `a >> b >> c;` add ordering-only edges.
///
/// # Options
///
/// | option | value | default |
/// |---|---|---|
/// | `id` | a DNS-1123 label | the function's name with `-` for `_` |
/// | `schedule` | 5-field cron (day of month and day of week OR-ed, as in Vixie cron and Airflow), `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`, `@every 15m`, `@once`, `@manual` | `@manual` (runs only when triggered) |
/// | `tz` | IANA zone the schedule and dates are read in, e.g. `"Europe/Paris"` | `"UTC"` |
/// | `start` | first logical date, `"2026-01-01"` or `"2026-01-01T06:00"` (in `tz`) | required with a schedule |
/// | `end` | last logical date | none |
/// | `catchup` | `true` runs every missed interval, `false` only the latest | `false` |
/// | `max_active_runs` | runs of this DAG at once | `16` |
/// | `max_active_tasks` | tasks of one run at once | `16` |
/// | `namespace` | Kubernetes namespace of the DAG's Jobs (a DNS-1123 label) | the scheduler's |
/// | `tags` | `["sales", ...]` for filtering in the UI | none |
/// | `description` | text | the doc comment |
/// | `defaults(...)` | task options every task of the DAG inherits, e.g. `defaults(retries = 2)` | none |
/// | `alerts(...)` | who hears of failures, retries, SLA misses (see the README) | none |
/// | `crate` | path of goflow when your crate re-exports it, e.g. `crate = crate::flow` (a renamed dependency is found from Cargo.toml) | `::goflow` |
///
/// # Checked at compile time
///
/// Invalid cron expressions and zones, unknown options, bad durations and
/// dates, duplicate task ids, cycles, tasks that do not exist, the number
/// and types of the outputs passed to each task, ids and namespaces that
/// are not DNS-1123 labels: each is a compile error pointing at the
/// offending token.
#[proc_macro_attribute]
pub fn dag(attr: TokenStream, item: TokenStream) -> TokenStream {
    dag::expand(attr.into(), item.into()).into()
}

/// Expands to `fn main()` running the goflow CLI over every registered
/// DAG: `goflow::main!();`. A crate that reaches goflow through a
/// re-export names it: `flow::main!(crate = flow);` (a renamed dependency
/// is found from Cargo.toml without it).
#[proc_macro]
pub fn main(input: TokenStream) -> TokenStream {
    let input = proc_macro2::TokenStream::from(input);
    let mut errors = args::Errors::default();
    let mut explicit = None;
    match args::parse_metas(input) {
        Ok(metas) => {
            for meta in &metas {
                if meta.path().is_ident("crate") {
                    explicit = args::crate_path(meta, &mut errors);
                } else {
                    errors.at(
                        syn::spanned::Spanned::span(meta),
                        "goflow::main!() takes no arguments but `crate = path`",
                    );
                }
            }
        }
        Err(e) => errors.push(e),
    }
    if !errors.is_empty() {
        // With a `main` still, so that the mistake is the only error.
        let err = errors.to_compile_error();
        return quote::quote!(#err fn main() {}).into();
    }
    let krate = args::goflow_path(explicit.as_ref());
    quote::quote! {
        fn main() -> #krate::__private::std::process::ExitCode {
            #krate::__private::main()
        }
    }
    .into()
}

/// Expansion snapshots: what `#[task]` and `#[dag]` generate, pinned so a
/// change to the generated code is seen in review.
#[cfg(test)]
mod snapshots {
    use quote::quote;

    fn pretty(tokens: proc_macro2::TokenStream) -> String {
        match syn::parse2::<syn::File>(tokens.clone()) {
            Ok(file) => prettyplease::unparse(&file),
            Err(_) => tokens.to_string(),
        }
    }

    #[test]
    fn task_expansion() {
        let out = crate::task::expand(
            quote!(retries = 2, retry_delay = "30s", trigger_rule = "all_done"),
            quote! {
                async fn total(ctx: &TaskContext, sales: Vec<Sale>) -> Result<f64, MyError> {
                    Ok(sales.iter().map(|s| s.amount).sum())
                }
            },
        );
        insta::assert_snapshot!(pretty(out));
    }

    #[test]
    fn sync_branch_task_expansion() {
        let out = crate::task::expand(
            quote!(),
            quote! {
                fn route(total: f64) -> Branch {
                    Branch::to(["big"])
                }
            },
        );
        insta::assert_snapshot!(pretty(out));
    }

    #[test]
    fn dag_expansion() {
        let out = crate::dag::expand(
            quote!(
                schedule = "0 6 * * *",
                tz = "Europe/Paris",
                start = "2026-01-01",
                tags = ["sales"]
            ),
            quote! {
                /// Daily sales.
                fn daily_sales() {
                    let sales = extract();
                    let sum = total(sales, "north");
                    notify();
                    sum >> notify;
                }
            },
        );
        insta::assert_snapshot!(pretty(out));
    }
}
