//! Procedural macros of goflow: `#[task]`, `#[dag]` and `main!`. Use them
//! through the `goflow` crate, whose docs show the full syntax.
//!
//! Each entry point converts to `proc_macro2`, expands, and reports every
//! mistake as a compile error pointing at the offending token.

use proc_macro::TokenStream;

mod args;
mod dag;
mod task;

/// Marks a function as a task. See the `goflow` crate for its options.
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    task::expand(attr.into(), item.into()).into()
}

/// Declares a DAG from a function whose body wires tasks together. See
/// the `goflow` crate for the syntax and options.
#[proc_macro_attribute]
pub fn dag(attr: TokenStream, item: TokenStream) -> TokenStream {
    dag::expand(attr.into(), item.into()).into()
}

/// Expands to `fn main()` running the goflow CLI over every registered
/// DAG: `goflow::main!();`.
#[proc_macro]
pub fn main(input: TokenStream) -> TokenStream {
    let input = proc_macro2::TokenStream::from(input);
    if !input.is_empty() {
        return syn::Error::new_spanned(input, "goflow::main!() takes no arguments")
            .to_compile_error()
            .into();
    }
    quote::quote! {
        fn main() -> ::goflow::__private::std::process::ExitCode {
            ::goflow::__private::main()
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
