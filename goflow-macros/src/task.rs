//! `#[task]`: keeps the function as written (so it can be unit-tested by
//! calling it) and adds, under the same name in the type namespace, a
//! hidden struct with the function's visibility implementing `TaskDef`
//! (options, output type, chosen downstreams) and
//! `goflow_core::authoring::Signature` (inputs, and the call `#[dag]`
//! makes with them).
//!
//! The return type is read by the type system, not by its name (see
//! `goflow_core::task::returns`): an alias of `Result` is a `Result`, a
//! user's type named `Result` or `Branch` is data, and any error type of
//! `goflow_core::task::IntoTaskError` fails the task. What the macro can
//! see is wrong with a signature (`impl Trait`, borrowed outputs, generic
//! or method tasks, borrowed inputs) it reports on the user's tokens.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, ItemFn, Pat, PathArguments, ReturnType, Type};

use crate::args::{self, Errors, TaskOptionArgs};

pub fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(e) => {
            let mut out = e.to_compile_error();
            out.extend(item);
            return out;
        }
    };

    let mut options = TaskOptionArgs::default();
    let mut explicit_crate = None;
    match args::parse_metas(attr) {
        Ok(metas) => {
            for meta in &metas {
                if meta.path().is_ident("crate") {
                    explicit_crate = args::crate_path(meta, &mut errors);
                } else if !options.accept(meta, &mut errors) {
                    errors.at(
                        meta.path().span(),
                        format!(
                            "unknown task option `{}`; expected one of: {}",
                            args::meta_name(meta),
                            args::TASK_OPTIONS
                        ),
                    );
                }
            }
        }
        Err(e) => errors.push(e),
    }

    let sig = &func.sig;
    // A generic task or a method cannot get an adapter at all: report it
    // and emit the function alone.
    let mut fatal = Errors::default();
    if !sig.generics.params.is_empty() {
        fatal.at(
            sig.generics.span(),
            "task functions cannot be generic: inputs and outputs must be concrete types so they can be stored and passed between tasks",
        );
    }
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(r) => fatal.at(r.span(), "a task cannot take `self`; write a free function"),
            FnArg::Typed(pt) if matches!(&*pt.ty, Type::ImplTrait(_)) => {
                fatal.at(pt.ty.span(), "task inputs must be concrete types, not `impl Trait`")
            }
            FnArg::Typed(pt) if matches!(&*pt.ty, Type::Reference(_)) && !is_context(&pt.ty) => fatal.at(
                pt.ty.span(),
                "task inputs must be owned types (they are deserialized from upstream outputs); take `T` instead of `&T`, or `ctx: &TaskContext` for the context",
            ),
            FnArg::Typed(_) => {}
        }
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        check_output(ty, &mut fatal);
    }
    if !fatal.is_empty() {
        let mut out = fatal.to_compile_error();
        out.extend(errors.to_compile_error());
        out.extend(func.to_token_stream());
        return out;
    }
    let mut ctx_pos = None;
    let mut inputs: Vec<(usize, Type)> = Vec::new();
    for (i, arg) in sig.inputs.iter().enumerate() {
        match arg {
            FnArg::Receiver(_) => {}
            FnArg::Typed(pt) => {
                if is_context(&pt.ty) {
                    if ctx_pos.is_some() {
                        errors.at(pt.ty.span(), "a task takes `&TaskContext` at most once");
                    }
                    ctx_pos = Some(i);
                } else {
                    inputs.push((i, (*pt.ty).clone()));
                }
                if let Pat::Ident(_)
                | Pat::Wild(_)
                | Pat::Tuple(_)
                | Pat::Struct(_)
                | Pat::TupleStruct(_) = &*pt.pat
                {
                } else {
                    errors.at(pt.pat.span(), "unsupported argument pattern in a task");
                }
            }
        }
    }

    let name = &sig.ident;
    let vis = &func.vis;
    let is_async = sig.asyncness.is_some();
    // What the function returns, as written; the generated code asks the
    // type system what it is (see `goflow_core::task::returns`).
    let ret_ty: Type = match &sig.output {
        ReturnType::Default => syn::parse_quote_spanned!(sig.ident.span()=> ()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    // Generated tokens around the return type get the spans of its first
    // and last tokens, so that an error about the whole covers it. (`< <`
    // and `> >` rather than `<<` and `>>`: rustc splits a `<<` token's
    // span in two, which would shift the error by one column.)
    let (lo, hi) = edge_spans(ret_ty.to_token_stream());

    // The call `#[dag]` makes: owned context and inputs in,
    // `Result<Output, TaskError>` out.
    let arg_idents: Vec<_> = (0..inputs.len())
        .map(|k| format_ident!("__goflow_arg{}", k))
        .collect();
    let arg_types: Vec<_> = inputs.iter().map(|(_, t)| t).collect();
    let mut call_args = Vec::new();
    let mut next_input = 0;
    for i in 0..sig.inputs.len() {
        if Some(i) == ctx_pos {
            call_args.push(quote!(&__goflow_ctx));
        } else if inputs.iter().any(|(pos, _)| *pos == i) {
            let id = &arg_idents[next_input];
            call_args.push(quote!(#id));
            next_input += 1;
        }
    }
    // The generated items are spanned like the return type (paths
    // included: a type's span starts at its first token), so that what
    // rustc finds wrong in them, which is about the output or error type,
    // is reported there, and once.
    let krate = args::goflow_path(explicit_crate.as_ref());
    let p = quote_spanned!(lo=> #krate::__private);
    let t = quote_spanned!(lo=> #krate::__private::task);
    let r = quote_spanned!(lo=> #t::returns);
    let call = quote_spanned!(lo=> #name(#(#call_args),*));
    // The kind of return type (`Result` or not) and, from it, the output
    // type: `TaskDef::Output` is `<T as SerializableOutput>::Output`, so
    // that an output that cannot be stored is reported as such; the call
    // declares the `T` itself, so that it is not reported a second time.
    let returns = quote_spanned!(lo=> #r::Returns<{ #r::Probe::<#ret_ty>::KIND }>);
    let unchecked_output = {
        let head = quote_spanned!(lo=> <#returns as #r::TaskReturn<);
        let tail = quote_spanned!(hi=> > >::Output);
        quote!(#head #ret_ty #tail)
    };
    let output_ty = {
        let head = quote_spanned!(lo=> < <#returns as #r::TaskReturn<);
        let tail = quote_spanned!(hi=> > >::Output as #krate::SerializableOutput>::Output);
        quote!(#head #ret_ty #tail)
    };
    let convert = |value: TokenStream| {
        // `<Error as IntoTaskError<_>>::into_task_error`, the qualified
        // path spanned over the return type: an error type that does not
        // convert is reported there, in `IntoTaskError`'s words.
        let into_error = {
            let head = quote_spanned!(lo=> < <#returns as #r::TaskReturn<);
            let tail =
                quote_spanned!(hi=> > >::Error as #krate::IntoTaskError<_>>::into_task_error);
            quote!(#head #ret_ty #tail)
        };
        quote_spanned! {lo=>
            match <#returns as #r::TaskReturn<#ret_ty>>::split(#value) {
                #p::std::result::Result::Ok(__goflow_value) => #p::std::result::Result::Ok(__goflow_value),
                #[allow(unreachable_patterns)]
                #p::std::result::Result::Err(__goflow_error) => #p::std::result::Result::Err(#into_error(__goflow_error)),
            }
        }
    };
    let body = if is_async {
        convert(quote_spanned!(lo=> #call.await))
    } else {
        // Converted on the blocking thread: the error need not be `Send`.
        // Through a function generic over the task, whose output is `Send`
        // by `TaskDef`'s bound: an output that is not is reported once, as
        // not one (`SerializableOutput`), and not again here.
        let convert = convert(call);
        // `(move || ...)`, its parentheses spanned like the return type's
        // last token, so that the call's span covers the return type.
        let closure = {
            let mut args = proc_macro2::Group::new(
                proc_macro2::Delimiter::Parenthesis,
                quote_spanned!(lo=> move || #convert),
            );
            args.set_span(hi);
            args
        };
        let end = quote_spanned!(hi=> >);
        quote_spanned! {lo=>
            async fn __goflow_blocking<D: #p::TaskDef, F>(
                f: F,
            ) -> #p::std::result::Result<D::Output, #p::TaskError>
            where
                F: #p::std::ops::FnOnce() -> #p::std::result::Result<D::Output, #p::TaskError>
                    + #p::std::marker::Send
                    + 'static,
            {
                #p::run_blocking(f).await?
            }
            __goflow_blocking::<#name, _ #end #closure.await
        }
    };
    let ctx_param = if ctx_pos.is_some() {
        quote_spanned!(lo=> __goflow_ctx: #p::TaskContext)
    } else {
        quote_spanned!(lo=> _: #p::TaskContext)
    };

    let input_count = inputs.len();
    let options_expr = options.to_tokens_in(&p);
    let name_str = name.to_string();
    // `type Output = ...;`, spanned like the return type (rustc reports
    // the item's bounds on the whole item).
    let output_item = {
        // The item's own span runs from `type` to its name: from the
        // return type's first token to its last.
        let keyword = quote_spanned!(lo=> type);
        let head = quote_spanned!(hi=> #keyword Output =);
        let tail = quote_spanned!(hi=> ;);
        quote!(#head #output_ty #tail)
    };
    // The impls are spanned like the return type, and their items that
    // mention the output run from its first token to a last token spanned
    // like its last (`end`): rustc reports a problem with the output or
    // error type once per span, so once.
    let end = quote_spanned!(hi=> >);
    let branch_targets = branch_targets(&func);
    let signature = quote_spanned! {lo=>
        impl #p::authoring::Signature for #name {
            const INPUTS: usize = #input_count;
            const BRANCH_TARGETS: &'static [&'static str] = &[#(#branch_targets),*];
            type Inputs = (#(#arg_types,)*);
            #[allow(clippy::manual_async_fn, clippy::let_unit_value)]
            fn call(
                #ctx_param,
                __goflow_inputs: Self::Inputs,
            ) -> impl #p::std::future::Future<Output = #p::std::result::Result<#unchecked_output, #p::TaskError #end #end {
                async move {
                    let (#(#arg_idents,)*) = __goflow_inputs;
                    #body
                }
            }
        }
    };
    let task_def = {
        let options_ty = quote_spanned!(hi=> TaskOptions);
        quote_spanned! {lo=>
            impl #p::TaskDef for #name {
                #output_item
                const NAME: &'static str = #name_str;
                fn options() -> #p::#options_ty {
                    #options_expr
                }
            }
        }
    };

    let expanded = quote! {
        #func

        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        #vis struct #name {
            __goflow_private: (),
        }

        const _: () = {
            #[allow(unused_imports)]
            use #r::Plain as _;

            #signature

            #task_def

            #p::inventory::submit! {
                #p::TaskRegistration {
                    name: #name_str,
                    module_path: #p::std::module_path!(),
                    options: <#name as #p::TaskDef>::options,
                    file: #p::std::file!(),
                    line: #p::std::line!(),
                }
            }
        };
    };
    // On error the function and its registration are still emitted, so one
    // mistake does not cascade into errors at every use.
    let mut out = errors.to_compile_error();
    out.extend(expanded);
    out
}

/// `&TaskContext` (any path ending in `TaskContext`).
fn is_context(ty: &Type) -> bool {
    match ty {
        Type::Reference(r) => last_segment_is(&r.elem, "TaskContext"),
        _ => false,
    }
}

fn last_segment_is(ty: &Type, name: &str) -> bool {
    match ty {
        Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == name),
        Type::Group(g) => last_segment_is(&g.elem, name),
        Type::Paren(p) => last_segment_is(&p.elem, name),
        _ => false,
    }
}

/// What the macro can see is wrong with a return type: an opaque type or
/// borrowed data where the output is (the first type argument of a path
/// named `Result`, so that `Result<T, &'static str>` passes; the type
/// system decides what really is a `Result`).
fn check_output(ty: &Type, errors: &mut Errors) {
    match ty {
        Type::ImplTrait(_) => errors.push(syn::Error::new_spanned(
            ty,
            "a task must return a concrete type, not `impl Trait`: its output is stored as JSON and read back as this type by downstream tasks; name the type (for example `Vec<Row>`)",
        )),
        Type::Reference(_) => errors.push(syn::Error::new_spanned(
            ty,
            "a task's output cannot borrow: it is stored and read back by other tasks (and processes); return an owned type such as `String` instead of `&str`, or `Vec<T>` instead of `&[T]`",
        )),
        Type::Group(g) => check_output(&g.elem, errors),
        Type::Paren(p) => check_output(&p.elem, errors),
        Type::Array(a) => check_output(&a.elem, errors),
        Type::Slice(s) => check_output(&s.elem, errors),
        Type::Tuple(t) => t.elems.iter().for_each(|e| check_output(e, errors)),
        Type::Path(p) => {
            if let Some(q) = &p.qself {
                check_output(&q.ty, errors);
            }
            for seg in &p.path.segments {
                let PathArguments::AngleBracketed(args) = &seg.arguments else {
                    continue;
                };
                let types = if seg.ident == "Result" { 1 } else { usize::MAX };
                let mut seen_types = 0;
                for arg in &args.args {
                    match arg {
                        GenericArgument::Lifetime(l) if seen_types < types => errors.push(syn::Error::new_spanned(
                            l,
                            "a task's output cannot borrow: it is stored and read back by other tasks (and processes); return an owned type (`String`, `Vec<T>`) rather than one with a lifetime",
                        )),
                        GenericArgument::Type(t) => {
                            if seen_types < types {
                                check_output(t, errors);
                            }
                            seen_types += 1;
                        }
                        _ => {}
                    }
                }
            }
        }
        // `dyn Trait`, `fn(..)`, `!`, macros: left to the type system.
        _ => {}
    }
}

/// The spans of the first and last tokens of `tokens`.
fn edge_spans(tokens: TokenStream) -> (Span, Span) {
    let mut tokens = tokens.into_iter();
    let lo = tokens.next().map_or_else(Span::call_site, |t| t.span());
    let hi = tokens.last().map_or(lo, |t| t.span());
    (lo, hi)
}

/// The task ids the body names as string literals in `Branch::to([...])`
/// (or `Branch::to(vec![...])`) calls, for `#[dag]` to check against the
/// task's direct downstreams. Ids built at run time are not seen here;
/// the scheduler checks every choice when the task ends.
fn branch_targets(func: &ItemFn) -> Vec<String> {
    struct Targets(Vec<String>);
    impl<'ast> syn::visit::Visit<'ast> for Targets {
        fn visit_expr_call(&mut self, call: &'ast syn::ExprCall) {
            let is_branch_to = matches!(&*call.func, syn::Expr::Path(p)
                if p.path.segments.len() >= 2
                    && p.path.segments[p.path.segments.len() - 2].ident == "Branch"
                    && p.path.segments[p.path.segments.len() - 1].ident == "to");
            if is_branch_to {
                for arg in &call.args {
                    self.literals(arg);
                }
            }
            syn::visit::visit_expr_call(self, call);
        }
    }
    impl Targets {
        fn literals(&mut self, e: &syn::Expr) {
            match e {
                syn::Expr::Array(a) => a.elems.iter().for_each(|e| self.literals(e)),
                syn::Expr::Reference(r) => self.literals(&r.expr),
                syn::Expr::Macro(m) if m.mac.path.is_ident("vec") => {
                    if let Ok(list) = m.mac.parse_body_with(
                        syn::punctuated::Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated,
                    ) {
                        list.iter().for_each(|e| self.literals(e));
                    }
                }
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) if !self.0.contains(&s.value()) => self.0.push(s.value()),
                _ => {}
            }
        }
    }
    let mut found = Targets(Vec::new());
    syn::visit::Visit::visit_block(&mut found, &func.block);
    found.0
}
