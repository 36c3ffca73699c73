//! `#[cellio::main]` and `#[cellio::test]`: an `async fn` run to its end
//! on a cellio runtime, as tokio's attributes do. Use them through the
//! `cellio` crate (`cellio::main`, `cellio::test`), which documents them.
//!
//! Both expand to a plain function that builds a runtime and passes the
//! function's body, as an `async move` block, to `Runtime::block_on`:
//!
//! ```text
//! #[cellio::main(workers = 2)]          fn main() -> io::Result<()> {
//! async fn main() -> io::Result<()> {      let body = async move { BODY };
//!     BODY                        =>        ::cellio::runtime::Builder::new().workers(2)
//! }                                             .build().expect("...").block_on(body)
//!                                       }
//! ```
//!
//! Arguments: `workers = N` (default: one per core for `main`, 1 for
//! `test`), `start_paused = true` (the clock starts paused; one worker),
//! and `crate = "path"` for a `cellio` dependency renamed or reached
//! through another crate.
#![warn(missing_docs)]

use proc_macro::TokenStream;
use quote::{quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ItemFn, Lit, Meta, Token};

/// Runs `async fn main` on a cellio runtime. See `cellio::main`.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args, item.clone(), Kind::Main).unwrap_or_else(|e| with_stand_in(e, item))
}

/// Runs an `async fn` test on a cellio runtime. See `cellio::test`.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args, item.clone(), Kind::Test).unwrap_or_else(|e| with_stand_in(e, item))
}

/// `error`, and the function with its body left out (if it parses), so
/// that the error is the only one: without a `main`, or with an `async`
/// one, the compiler would add errors of its own.
fn with_stand_in(error: syn::Error, item: TokenStream) -> TokenStream {
    let error = error.to_compile_error();
    let Ok(mut function) = syn::parse::<ItemFn>(item) else {
        return error.into();
    };
    function.sig.asyncness = None;
    function.sig.inputs.clear();
    function.attrs.retain(|a| !a.path().is_ident("test"));
    function.block = syn::parse_quote!({ ::core::unreachable!() });
    quote! { #error #function }.into()
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Main,
    Test,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Main => "cellio::main",
            Kind::Test => "cellio::test",
        }
    }
}

/// What the attribute's arguments asked for.
struct Options {
    workers: Option<Expr>,
    /// `start_paused = true`: `Builder::start_paused(true)`, one worker.
    start_paused: bool,
    krate: syn::Path,
}

/// The arguments, for error messages.
const ARGUMENTS: &str = "`workers = N`, `start_paused = true` and `crate = \"path\"`";

fn parse_options(args: TokenStream, kind: Kind) -> syn::Result<Options> {
    let mut options = Options {
        workers: None,
        start_paused: false,
        krate: syn::parse_quote!(::cellio),
    };
    let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse(args)?;
    for meta in metas {
        let Meta::NameValue(pair) = &meta else {
            return Err(syn::Error::new(
                meta.span(),
                format!("#[{}] takes {ARGUMENTS}", kind.name()),
            ));
        };
        if pair.path.is_ident("workers") {
            if options.workers.replace(pair.value.clone()).is_some() {
                return Err(syn::Error::new(pair.span(), "`workers` given twice"));
            }
            if let Expr::Lit(ExprLit {
                lit: Lit::Int(n), ..
            }) = &pair.value
            {
                if n.base10_parse::<usize>()? == 0 {
                    return Err(syn::Error::new(
                        n.span(),
                        "a runtime needs at least one worker",
                    ));
                }
            }
        } else if pair.path.is_ident("start_paused") {
            let Expr::Lit(ExprLit {
                lit: Lit::Bool(paused),
                ..
            }) = &pair.value
            else {
                return Err(syn::Error::new(
                    pair.value.span(),
                    "`start_paused` takes `true` or `false`",
                ));
            };
            options.start_paused = paused.value;
        } else if pair.path.is_ident("crate") {
            let Expr::Lit(ExprLit {
                lit: Lit::Str(path),
                ..
            }) = &pair.value
            else {
                return Err(syn::Error::new(
                    pair.value.span(),
                    "`crate` takes a path in quotes: crate = \"my_cellio\"",
                ));
            };
            options.krate = path.parse()?;
        } else {
            return Err(syn::Error::new(
                pair.path.span(),
                format!("unknown argument: #[{}] takes {ARGUMENTS}", kind.name()),
            ));
        }
    }
    if options.start_paused {
        if let Some(Expr::Lit(ExprLit {
            lit: Lit::Int(n), ..
        })) = &options.workers
        {
            if n.base10_parse::<usize>()? != 1 {
                return Err(syn::Error::new(
                    n.span(),
                    "`start_paused = true` needs one worker: each worker keeps its own timers",
                ));
            }
        }
    }
    Ok(options)
}

fn expand(args: TokenStream, item: TokenStream, kind: Kind) -> syn::Result<TokenStream> {
    let options = parse_options(args, kind)?;
    let mut function: ItemFn = syn::parse(item)?;
    let signature = &function.sig;
    if signature.asyncness.is_none() {
        return Err(syn::Error::new(
            signature.fn_token.span(),
            format!("#[{}] goes on an `async fn`", kind.name()),
        ));
    }
    if !signature.inputs.is_empty() {
        return Err(syn::Error::new(
            signature.inputs.span(),
            format!("a #[{}] function takes no arguments", kind.name()),
        ));
    }
    if !signature.generics.params.is_empty() {
        return Err(syn::Error::new(
            signature.generics.span(),
            format!("a #[{}] function cannot be generic", kind.name()),
        ));
    }
    if kind == Kind::Test {
        if let Some(attribute) = function.attrs.iter().find(|a| a.path().is_ident("test")) {
            return Err(syn::Error::new(
                attribute.span(),
                "#[cellio::test] adds #[test] itself: remove this one",
            ));
        }
    }
    let krate = &options.krate;
    let builder = match (&options.workers, kind, options.start_paused) {
        (Some(workers), _, _) => quote! { #krate::runtime::Builder::new().workers(#workers) },
        (None, Kind::Main, false) => quote! { #krate::runtime::Builder::new() },
        (None, Kind::Test, _) | (None, Kind::Main, true) => {
            quote! { #krate::runtime::Builder::new().workers(1) }
        }
    };
    let builder = if options.start_paused {
        quote! { #builder.start_paused(true) }
    } else {
        builder
    };
    let body = &function.block;
    let span = body.span();
    // The body keeps its spans, so errors in it point at the user's code;
    // `async move` gives it the function's `?` and `return` behaviour.
    let run = quote_spanned! {span=>
        let body = async move #body;
        #builder
            .build()
            .expect("cellio: cannot start the runtime")
            .block_on(body)
    };
    function.sig.asyncness = None;
    function.block = syn::parse2(quote! { { #run } })?;
    let test_attribute = (kind == Kind::Test).then(|| quote! { #[::core::prelude::v1::test] });
    Ok(quote! {
        #test_attribute
        #function
    }
    .into())
}
