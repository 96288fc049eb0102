//! Parsing of attribute arguments shared by `#[task]` and `#[dag]`:
//! `key = value` pairs whose values are checked with goflow-syntax, the
//! grammar goflow-core parses with, so a bad literal is a compile error
//! pointing at it.

use goflow_syntax::words;
use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, Meta, Token};

/// Errors collected while expanding, so a user sees all of them at once.
#[derive(Default)]
pub struct Errors(Option<syn::Error>);

impl Errors {
    pub fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    pub fn at(&mut self, span: Span, msg: impl std::fmt::Display) {
        self.push(syn::Error::new(span, msg));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub fn to_compile_error(&self) -> TokenStream {
        self.0
            .as_ref()
            .map(syn::Error::to_compile_error)
            .unwrap_or_default()
    }
}

/// Parses `a = 1, b = "x", c(..)` into metas.
pub fn parse_metas(tokens: TokenStream) -> syn::Result<Vec<Meta>> {
    let parser = Punctuated::<Meta, Token![,]>::parse_terminated;
    Ok(syn::parse::Parser::parse2(parser, tokens)?
        .into_iter()
        .collect())
}

pub fn meta_name(meta: &Meta) -> String {
    meta.path()
        .get_ident()
        .map(ToString::to_string)
        .unwrap_or_else(|| meta.path().to_token_stream().to_string())
}

fn value_of<'m>(meta: &'m Meta, errors: &mut Errors) -> Option<&'m Expr> {
    match meta {
        Meta::NameValue(nv) => Some(&nv.value),
        _ => {
            errors.at(
                meta.span(),
                format!(
                    "`{}` takes a value: `{} = ...`",
                    meta_name(meta),
                    meta_name(meta)
                ),
            );
            None
        }
    }
}

pub fn string(meta: &Meta, errors: &mut Errors) -> Option<(String, Span)> {
    match value_of(meta, errors)? {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Some((s.value(), s.span())),
        other => {
            errors.at(
                other.span(),
                format!("`{}` expects a string literal", meta_name(meta)),
            );
            None
        }
    }
}

pub fn boolean(meta: &Meta, errors: &mut Errors) -> Option<bool> {
    if let Meta::Path(_) = meta {
        return Some(true);
    }
    match value_of(meta, errors)? {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(b), ..
        }) => Some(b.value),
        other => {
            errors.at(
                other.span(),
                format!("`{}` expects `true` or `false`", meta_name(meta)),
            );
            None
        }
    }
}

pub fn integer(meta: &Meta, min: i64, max: i64, errors: &mut Errors) -> Option<i64> {
    let expr = value_of(meta, errors)?;
    let (negative, lit) = match expr {
        Expr::Unary(u) if matches!(u.op, syn::UnOp::Neg(_)) => (true, &*u.expr),
        e => (false, e),
    };
    let parsed = match lit {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => i.base10_parse::<i64>().ok(),
        _ => None,
    };
    match parsed.map(|v| if negative { -v } else { v }) {
        Some(v) if (min..=max).contains(&v) => Some(v),
        _ => {
            errors.at(
                expr.span(),
                format!(
                    "`{}` expects a whole number from {min} to {max}",
                    meta_name(meta)
                ),
            );
            None
        }
    }
}

/// `["a", "b"]`.
pub fn string_list(meta: &Meta, errors: &mut Errors) -> Option<Vec<(String, Span)>> {
    match value_of(meta, errors)? {
        Expr::Array(arr) => {
            let mut out = Vec::new();
            for e in &arr.elems {
                match e {
                    Expr::Lit(ExprLit {
                        lit: Lit::Str(s), ..
                    }) => out.push((s.value(), s.span())),
                    other => errors.at(other.span(), "expected a string literal"),
                }
            }
            Some(out)
        }
        other => {
            errors.at(
                other.span(),
                format!(
                    "`{}` expects a list of strings: `[\"a\", \"b\"]`",
                    meta_name(meta)
                ),
            );
            None
        }
    }
}

pub fn duration(meta: &Meta, errors: &mut Errors) -> Option<std::time::Duration> {
    let (s, span) = string(meta, errors)?;
    match goflow_syntax::duration::parse(&s) {
        Ok(d) => Some(d),
        Err(reason) => {
            errors.at(
                span,
                format!("bad duration literal for `{}`: {reason}", meta_name(meta)),
            );
            None
        }
    }
}

/// A `Duration` expression; `p` is the path of goflow's `__private`.
pub fn duration_tokens(p: &TokenStream, d: std::time::Duration) -> TokenStream {
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    quote!(#p::std::time::Duration::new(#secs, #nanos))
}

fn opt<T: ToTokens>(p: &TokenStream, v: Option<T>) -> TokenStream {
    match v {
        Some(v) => quote!(#p::std::option::Option::Some(#v)),
        None => quote!(#p::std::option::Option::None),
    }
}

fn opt_string(p: &TokenStream, v: &Option<String>) -> TokenStream {
    opt(
        p,
        v.as_ref()
            .map(|s| quote!(#p::std::string::String::from(#s))),
    )
}

/// `crate = path` (or `crate = "path"`, as serde spells it): where the
/// generated code finds goflow, for a crate that re-exports it (`crate =
/// crate::flow` after `mod flow { pub use goflow::*; }`).
pub fn crate_path(meta: &Meta, errors: &mut Errors) -> Option<syn::Path> {
    const EXPECTED: &str =
        "`crate` expects the path of the goflow crate: `crate = ::flow` or `crate = crate::flow`";
    match value_of(meta, errors)? {
        Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => Some(p.path.clone()),
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => match s.parse::<syn::Path>() {
            Ok(path) => Some(path),
            Err(_) => {
                errors.at(s.span(), EXPECTED);
                None
            }
        },
        other => {
            errors.at(other.span(), EXPECTED);
            None
        }
    }
}

/// The path generated code names goflow by: `crate = ...` when given;
/// else the name the crate's Cargo.toml depends on goflow under (`flow`
/// for `flow = { package = "goflow", ... }`); else `::goflow`.
pub fn goflow_path(explicit: Option<&syn::Path>) -> TokenStream {
    if let Some(path) = explicit {
        return quote!(#path);
    }
    match proc_macro_crate::crate_name("goflow") {
        Ok(proc_macro_crate::FoundCrate::Name(name)) if name != "goflow" => {
            let name = syn::Ident::new(&name, Span::call_site());
            quote!(::#name)
        }
        // `Itself` is goflow's own examples and doc tests, which name it
        // `goflow`; an error is a build without Cargo's environment.
        _ => quote!(::goflow),
    }
}

/// Task options as written in `#[task(...)]` or `#[dag(defaults(...))]`.
#[derive(Default)]
pub struct TaskOptionArgs {
    pub retries: Option<u32>,
    pub retry_delay: Option<std::time::Duration>,
    /// Option words (`backoff`, `trigger_rule`, `executor`), checked.
    pub backoff: Option<&'static str>,
    pub max_retry_delay: Option<std::time::Duration>,
    pub timeout: Option<std::time::Duration>,
    pub trigger_rule: Option<&'static str>,
    pub pool: Option<String>,
    pub priority_weight: Option<i32>,
    pub executor: Option<&'static str>,
    pub max_lost_tries: Option<u32>,
    pub image: Option<String>,
    pub cpu: Option<String>,
    pub cpu_limit: Option<String>,
    pub memory: Option<String>,
    pub memory_limit: Option<String>,
    pub env: Vec<(String, String)>,
    pub service_account: Option<String>,
    pub node_selector: Vec<(String, String)>,
}

/// The option names `#[task]` accepts, for "unknown option" messages.
pub const TASK_OPTIONS: &str = "retries, retry_delay, backoff, max_retry_delay, timeout, \
    trigger_rule, pool, priority, executor, max_lost_tries, image, cpu, cpu_limit, memory, memory_limit, env, \
    service_account, node_selector, crate";

impl TaskOptionArgs {
    /// Takes `meta` if it is a task option; returns false if it is not one.
    pub fn accept(&mut self, meta: &Meta, errors: &mut Errors) -> bool {
        let name = meta_name(meta);
        let parsed_word = |errors: &mut Errors, f: &dyn Fn(&str) -> Result<(), String>| {
            let (s, span) = string(meta, errors)?;
            match f(&s) {
                Ok(()) => Some(s),
                Err(reason) => {
                    errors.at(span, reason);
                    None
                }
            }
        };
        match name.as_str() {
            "retries" => self.retries = integer(meta, 0, 1000, errors).map(|v| v as u32),
            "max_lost_tries" => {
                self.max_lost_tries = integer(meta, 0, 1000, errors).map(|v| v as u32)
            }
            "retry_delay" => self.retry_delay = duration(meta, errors),
            "max_retry_delay" => self.max_retry_delay = duration(meta, errors),
            "timeout" => self.timeout = duration(meta, errors),
            "backoff" => self.backoff = option_word(meta, words::BACKOFF, errors),
            "trigger_rule" => self.trigger_rule = option_word(meta, words::TRIGGER_RULE, errors),
            "executor" => self.executor = option_word(meta, words::EXECUTOR, errors),
            "pool" => {
                self.pool = parsed_word(errors, &|s| {
                    if s.is_empty() {
                        Err("the pool name must not be empty".into())
                    } else {
                        Ok(())
                    }
                })
            }
            "priority" | "priority_weight" => {
                self.priority_weight =
                    integer(meta, -1_000_000, 1_000_000, errors).map(|v| v as i32)
            }
            "image" => {
                self.image = parsed_word(errors, &|s| {
                    if s.is_empty() || s.chars().any(char::is_whitespace) {
                        Err(format!("{s:?} is not a container image reference"))
                    } else {
                        Ok(())
                    }
                })
            }
            "cpu" => self.cpu = parsed_word(errors, &goflow_syntax::quantity::check_quantity),
            "cpu_limit" => {
                self.cpu_limit = parsed_word(errors, &goflow_syntax::quantity::check_quantity)
            }
            "memory" => self.memory = parsed_word(errors, &goflow_syntax::quantity::check_quantity),
            "memory_limit" => {
                self.memory_limit = parsed_word(errors, &goflow_syntax::quantity::check_quantity)
            }
            "service_account" => {
                self.service_account = parsed_word(errors, &|s| {
                    goflow_syntax::id::check_dns1123_label(s)
                        .map_err(|r| format!("service account {s:?} is not a valid name: {r}"))
                })
            }
            "env" => self.env = key_values(meta, "environment variable", errors),
            "node_selector" => self.node_selector = key_values(meta, "node selector", errors),
            _ => return false,
        }
        true
    }

    /// A `TaskOptions` expression; `p` is the path of goflow's `__private`.
    pub fn to_tokens_in(&self, p: &TokenStream) -> TokenStream {
        let retries = opt(p, self.retries);
        let retry_delay = opt(p, self.retry_delay.map(|d| duration_tokens(p, d)));
        let max_retry_delay = opt(p, self.max_retry_delay.map(|d| duration_tokens(p, d)));
        let timeout = opt(p, self.timeout.map(|d| duration_tokens(p, d)));
        let variant = |ty: &str, word: Option<&str>| {
            opt(
                p,
                word.map(|w| {
                    let ty = syn::Ident::new(ty, Span::call_site());
                    let variant = syn::Ident::new(&words::variant_name(w), Span::call_site());
                    quote!(#p::#ty::#variant)
                }),
            )
        };
        let backoff = variant("Backoff", self.backoff);
        let trigger_rule = variant("TriggerRule", self.trigger_rule);
        let executor = variant("ExecutorKind", self.executor);
        let pool = opt_string(p, &self.pool);
        let max_lost_tries = opt(p, self.max_lost_tries);
        let priority = opt(p, self.priority_weight);
        let image = opt_string(p, &self.image);
        let cpu = opt_string(p, &self.cpu);
        let cpu_limit = opt_string(p, &self.cpu_limit);
        let memory = opt_string(p, &self.memory);
        let memory_limit = opt_string(p, &self.memory_limit);
        let service_account = opt_string(p, &self.service_account);
        let pairs = |v: &[(String, String)]| {
            let items = v.iter().map(|(k, val)| {
                quote!((#p::std::string::String::from(#k), #p::std::string::String::from(#val)))
            });
            quote!(#p::std::vec![#(#items),*])
        };
        let env = pairs(&self.env);
        let node_selector = pairs(&self.node_selector);
        quote! {
            #p::TaskOptions {
                retries: #retries,
                retry_delay: #retry_delay,
                backoff: #backoff,
                max_retry_delay: #max_retry_delay,
                timeout: #timeout,
                trigger_rule: #trigger_rule,
                pool: #pool,
                priority_weight: #priority,
                executor: #executor,
                max_lost_tries: #max_lost_tries,
                kubernetes: #p::KubernetesOptions {
                    image: #image,
                    cpu_request: #cpu,
                    cpu_limit: #cpu_limit,
                    memory_request: #memory,
                    memory_limit: #memory_limit,
                    env: #env,
                    service_account: #service_account,
                    node_selector: #node_selector,
                },
            }
        }
    }
}

/// The value of an option taking one of `words`, as the word itself.
fn option_word(meta: &Meta, words: words::Words, errors: &mut Errors) -> Option<&'static str> {
    let (s, span) = string(meta, errors)?;
    match words.find(&s) {
        Ok(i) => Some(words.words[i]),
        Err(e) => {
            errors.at(span, e);
            None
        }
    }
}

fn key_values(meta: &Meta, what: &str, errors: &mut Errors) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (item, span) in string_list(meta, errors).unwrap_or_default() {
        match item.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => out.push((k.trim().to_owned(), v.to_owned())),
            _ => errors.at(
                span,
                format!("expected a {what} as \"KEY=value\", found {item:?}"),
            ),
        }
    }
    out
}
