//! `#[task]`: keeps the function as written (so it can be unit-tested by
//! calling it) and adds, under the same name in the type namespace, a
//! hidden struct implementing `TaskDef` plus an `__goflow_invoke` adapter
//! that `#[dag]` calls with typed inputs.

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
    match args::parse_metas(attr) {
        Ok(metas) => {
            for meta in &metas {
                if !options.accept(meta, &mut errors) {
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

    let (output_ty, fallible) = output_type(&sig.output);
    let name = &sig.ident;
    let vis = &func.vis;
    let is_async = sig.asyncness.is_some();

    // The adapter: owned context and inputs in, `Result<Output, TaskError>` out.
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
    let p = quote!(::goflow::__private);
    let call = quote!(#name(#(#call_args),*));
    let body = if is_async {
        quote!(let __goflow_out = #call.await;)
    } else {
        quote!(let __goflow_out = #p::run_blocking(move || #call).await?;)
    };
    let ret = if fallible {
        quote!(__goflow_out.map_err(<#p::TaskError as #p::std::convert::From<_>>::from))
    } else {
        quote!(#p::std::result::Result::Ok(__goflow_out))
    };
    let ctx_param = if ctx_pos.is_some() {
        quote!(__goflow_ctx: #p::TaskContext)
    } else {
        quote!(_: #p::TaskContext)
    };

    let is_branch = last_segment_is(&output_ty, "Branch");
    let follow = is_branch.then(|| {
        quote! {
            fn follow(output: &Self::Output) -> #p::std::option::Option<#p::std::vec::Vec<#p::std::string::String>> {
                #p::std::option::Option::Some(output.targets().to_vec())
            }
        }
    });
    let options_expr = options.to_tokens();
    let name_str = name.to_string();
    let output_spanned = quote_spanned!(output_ty.span()=> #output_ty);

    let expanded = quote! {
        #func

        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        #vis struct #name {
            __goflow_private: (),
        }

        impl #name {
            #[doc(hidden)]
            #[allow(clippy::unused_async)]
            #vis async fn __goflow_invoke(#ctx_param, #(#arg_idents: #arg_types),*)
                -> #p::std::result::Result<#output_ty, #p::TaskError>
            {
                #body
                #ret
            }
        }

        const _: () = {
            impl #p::TaskDef for #name {
                type Output = #output_spanned;
                const NAME: &'static str = #name_str;
                fn options() -> #p::TaskOptions {
                    #options_expr
                }
                #follow
            }

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

/// The task's output type and whether the function returns a `Result`
/// (any path ending in `Result<T, ..>`, including aliases like
/// `io::Result<T>`).
fn output_type(ret: &ReturnType) -> (Type, bool) {
    let ty = match ret {
        ReturnType::Default => return (syn::parse_quote_spanned!(Span::call_site()=> ()), false),
        ReturnType::Type(_, ty) => ty,
    };
    if let Type::Path(p) = &**ty {
        if let Some(last) = p.path.segments.last() {
            if last.ident == "Result" {
                if let PathArguments::AngleBracketed(a) = &last.arguments {
                    if let Some(GenericArgument::Type(t)) = a.args.first() {
                        return (t.clone(), true);
                    }
                }
            }
        }
    }
    ((**ty).clone(), false)
}
