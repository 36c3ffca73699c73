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
//! `test`; a literal `N` from 1 to `MAX_WORKERS`, 4096, else an error; an
//! expression such as a constant is passed on to `Builder::workers`, which
//! raises 0 to 1),
//! `start_paused = true` (the clock starts paused; one worker),
//! and `crate = "path"` for a `cellio` dependency renamed or reached
//! through another crate, each at most once. tokio's `flavor` and
//! `worker_threads` are refused with an error that names the `workers` to
//! write instead.
#![warn(missing_docs)]

use proc_macro::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ExprUnary, ItemFn, Lit, Meta, Token, UnOp};

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

fn parse_options(args: proc_macro2::TokenStream, kind: Kind) -> syn::Result<Options> {
    let mut options = Options {
        workers: None,
        start_paused: false,
        krate: syn::parse_quote!(::cellio),
    };
    let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args)?;
    // Each argument once: a second one is refused, not taken over the
    // first (as tokio's attributes do).
    let (mut paused_given, mut crate_given) = (false, false);
    for meta in metas {
        if let Some(error) = tokio_argument(&meta, kind) {
            return Err(error);
        }
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
            check_workers(&pair.value)?;
        } else if pair.path.is_ident("start_paused") {
            if std::mem::replace(&mut paused_given, true) {
                return Err(syn::Error::new(pair.span(), "`start_paused` given twice"));
            }
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
            if std::mem::replace(&mut crate_given, true) {
                return Err(syn::Error::new(pair.span(), "`crate` given twice"));
            }
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

/// `cellio_runtime::MAX_WORKERS`: the most workers a runtime may have
/// (this crate cannot name the runtime's constant; tests/macros.rs checks
/// that the two are equal).
const MAX_WORKERS: usize = 4096;

/// A literal `workers` must be a positive integer up to [`MAX_WORKERS`]
/// (other expressions, such as a `const`, are left to the compiler and to
/// `Builder::build`).
fn check_workers(value: &Expr) -> syn::Result<()> {
    const POSITIVE: &str = "`workers` takes a positive integer, the number of worker threads: \
                            workers = 4";
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(n), ..
        }) => match n.base10_parse::<usize>() {
            Ok(0) => Err(syn::Error::new(
                n.span(),
                "a runtime needs at least one worker",
            )),
            Ok(workers) if workers > MAX_WORKERS && matches!(n.suffix(), "" | "usize") => {
                Err(syn::Error::new(
                    n.span(),
                    format!(
                        "{workers} workers is above the maximum, {MAX_WORKERS} \
                         (`cellio::runtime::MAX_WORKERS`)"
                    ),
                ))
            }
            Ok(_) if matches!(n.suffix(), "" | "usize") => Ok(()),
            // Negative (`-1`), too large, or with another type's suffix.
            _ => Err(syn::Error::new(n.span(), POSITIVE)),
        },
        Expr::Lit(_)
        | Expr::Unary(ExprUnary {
            op: UnOp::Neg(_), ..
        }) => Err(syn::Error::new_spanned(value, POSITIVE)),
        _ => Ok(()),
    }
}

/// An error for tokio's `flavor` and `worker_threads` arguments that names
/// cellio's equivalent; `None` for any other argument.
fn tokio_argument(meta: &Meta, kind: Kind) -> Option<syn::Error> {
    let path = meta.path();
    let value = match meta {
        Meta::NameValue(pair) => Some(&pair.value),
        _ => None,
    };
    if path.is_ident("worker_threads") {
        let n = value.map_or_else(|| "N".to_owned(), |v| v.to_token_stream().to_string());
        return Some(syn::Error::new_spanned(
            meta,
            format!(
                "`worker_threads` is tokio's: #[{}] takes `workers = {n}`",
                kind.name()
            ),
        ));
    }
    if !path.is_ident("flavor") {
        return None;
    }
    let flavor = match value {
        Some(Expr::Lit(ExprLit {
            lit: Lit::Str(flavor),
            ..
        })) => flavor.value(),
        _ => String::new(),
    };
    let name = kind.name();
    let (one, many) = match kind {
        Kind::Main => ("`workers = 1`", "runs one worker per core by default"),
        Kind::Test => ("the default, `workers = 1`", "runs one worker by default"),
    };
    let message = match flavor.as_str() {
        "current_thread" | "local" => format!(
            "`flavor` is tokio's: its \"{flavor}\" is {one} here: one worker, the calling \
             thread (`cellio::spawn_local` works on any worker)"
        ),
        "multi_thread" => format!(
            "`flavor` is tokio's: #[{name}] {many}, and `workers = N` runs N (tokio's \
             \"multi_thread\" with `worker_threads = N`)"
        ),
        _ => format!(
            "`flavor` is tokio's: #[{name}] takes `workers = N` (tokio's \"current_thread\" \
             is `workers = 1`; its \"multi_thread\" with `worker_threads = N` is `workers = N`)"
        ),
    };
    Some(syn::Error::new_spanned(meta, message))
}

fn expand(args: TokenStream, item: TokenStream, kind: Kind) -> syn::Result<TokenStream> {
    let options = parse_options(args.into(), kind)?;
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

#[cfg(test)]
mod tests {
    use super::{parse_options, Kind, ARGUMENTS, MAX_WORKERS};
    use quote::quote;

    /// The error `parse_options` gives for `args`.
    fn error(args: proc_macro2::TokenStream, kind: Kind) -> String {
        match parse_options(args, kind) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_literal_worker_count_that_is_not_a_positive_integer_says_what_workers_takes() {
        let positive = "`workers` takes a positive integer, the number of worker threads: \
                        workers = 4";
        for args in [
            quote!(workers = -1),
            quote!(workers = -1, start_paused = true),
            quote!(workers = 99999999999999999999999),
            quote!(workers = 2u8),
            quote!(workers = "2"),
            quote!(workers = 2.5),
        ] {
            assert_eq!(error(args.clone(), Kind::Main), positive, "{args}");
        }
        assert_eq!(
            error(quote!(workers = 0), Kind::Test),
            "a runtime needs at least one worker"
        );
    }

    /// A literal above `MAX_WORKERS` is a compile error that names the
    /// limit (it compiled, and `main` panicked at start with `build`'s
    /// error; found by a review); `MAX_WORKERS` itself is accepted.
    #[test]
    fn a_literal_worker_count_above_max_workers_names_the_limit() {
        for (args, kind, n) in [
            (quote!(workers = 4097), Kind::Main, 4097),
            (quote!(workers = 5000), Kind::Test, 5000),
            (quote!(workers = 5000usize), Kind::Main, 5000),
        ] {
            assert_eq!(
                error(args.clone(), kind),
                format!("{n} workers is above the maximum, 4096 (`cellio::runtime::MAX_WORKERS`)"),
                "{args}"
            );
        }
        assert_eq!(MAX_WORKERS, 4096);
        assert!(parse_options(quote!(workers = 4096), Kind::Main).is_ok());
    }

    #[test]
    fn a_worker_count_that_is_a_positive_integer_or_an_expression_is_accepted() {
        for args in [
            quote!(workers = 1),
            quote!(workers = 4usize),
            quote!(workers = WORKERS),
            quote!(workers = count()),
        ] {
            assert!(parse_options(args.clone(), Kind::Main).is_ok(), "{args}");
        }
    }

    #[test]
    fn tokio_flavors_name_the_workers_to_write_instead() {
        assert_eq!(
            error(quote!(flavor = "current_thread"), Kind::Main),
            "`flavor` is tokio's: its \"current_thread\" is `workers = 1` here: one worker, the \
             calling thread (`cellio::spawn_local` works on any worker)"
        );
        let local = error(quote!(flavor = "local"), Kind::Test);
        assert!(
            local.contains("is the default, `workers = 1` here"),
            "{local}"
        );
        assert_eq!(
            error(
                quote!(flavor = "multi_thread", worker_threads = 4),
                Kind::Main
            ),
            "`flavor` is tokio's: #[cellio::main] runs one worker per core by default, and \
             `workers = N` runs N (tokio's \"multi_thread\" with `worker_threads = N`)"
        );
        let multi = error(quote!(flavor = "multi_thread"), Kind::Test);
        assert!(
            multi.contains("#[cellio::test] runs one worker by default"),
            "{multi}"
        );
        let other = error(quote!(flavor = "something_else"), Kind::Test);
        assert!(
            other.contains("takes `workers = N` (tokio's \"current_thread\" is `workers = 1`"),
            "{other}"
        );
    }

    /// Every argument given twice is an error, as `workers` was (the
    /// last `start_paused` or `crate` was taken silently; found by a
    /// review).
    #[test]
    fn an_argument_given_twice_is_an_error() {
        for (args, name) in [
            (quote!(workers = 1, workers = 2), "workers"),
            (
                quote!(start_paused = true, start_paused = false),
                "start_paused",
            ),
            (
                quote!(start_paused = true, start_paused = true),
                "start_paused",
            ),
            (quote!(crate = "other", crate = "cellio"), "crate"),
            (
                quote!(crate = "cellio", workers = 1, crate = "cellio"),
                "crate",
            ),
        ] {
            for kind in [Kind::Main, Kind::Test] {
                assert_eq!(
                    error(args.clone(), kind),
                    format!("`{name}` given twice"),
                    "{args}"
                );
            }
        }
        assert!(parse_options(
            quote!(workers = 1, start_paused = true, crate = "cellio"),
            Kind::Test
        )
        .is_ok());
    }

    #[test]
    fn tokio_worker_threads_names_workers() {
        assert_eq!(
            error(quote!(worker_threads = 4), Kind::Main),
            "`worker_threads` is tokio's: #[cellio::main] takes `workers = 4`"
        );
        assert_eq!(
            error(quote!(start_paused = true, worker_threads = 2), Kind::Test),
            "`worker_threads` is tokio's: #[cellio::test] takes `workers = 2`"
        );
    }

    #[test]
    fn other_unknown_arguments_list_the_arguments() {
        assert_eq!(
            error(quote!(threads = 2), Kind::Main),
            format!("unknown argument: #[cellio::main] takes {ARGUMENTS}")
        );
    }
}
