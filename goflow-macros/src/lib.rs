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
