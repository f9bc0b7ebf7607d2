//! `#[vat::object(interface)]`: serves an object's Cap'n Proto interface
//! from methods that take `&mut self`. Use it through the `vat` crate
//! (`vat::object`), whose documentation has the model and an example.

#![forbid(unsafe_code)]

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::{format_ident, quote};
use syn::spanned::Spanned;
use syn::{FnArg, ImplItem, ItemImpl, Path, ReturnType, Type};

/// Serves the Cap'n Proto interface named by the attribute's argument (the
/// generated module, e.g. `counter` or `my_capnp::teller`) from the methods
/// of the `impl` block it is put on.
///
/// Each method of the block whose name is a method of the interface and
/// whose signature is `fn name(&mut self, params: …Params, results:
/// …Results) -> vat::Reply` answers that method; the others are left as
/// they are (they are ordinary methods, for near calls). Interface methods
/// the block leaves out are answered `unimplemented`.
#[proc_macro_attribute]
pub fn object(attr: TokenStream, item: TokenStream) -> TokenStream {
    let interface = syn::parse_macro_input!(attr as Path);
    let block = syn::parse_macro_input!(item as ItemImpl);
    match expand(&interface, &block) {
        Ok(tokens) => tokens.into(),
        Err(error) => {
            let error = error.to_compile_error();
            quote!(#block #error).into()
        }
    }
}

/// The block, unchanged, and the server that answers the interface.
fn expand(interface: &Path, block: &ItemImpl) -> syn::Result<proc_macro2::TokenStream> {
    if block.trait_.is_some() {
        return Err(syn::Error::new(
            block.span(),
            "#[vat::object] goes on an inherent impl block (`impl MyObject { … }`)",
        ));
    }
    if !block.generics.params.is_empty() {
        return Err(syn::Error::new(
            block.generics.span(),
            "#[vat::object] does not take generic objects; wrap the type in a concrete one",
        ));
    }
    let object = &block.self_ty;
    let server = server_name(object)?;
    let mut methods = Vec::new();
    for item in &block.items {
        let ImplItem::Fn(method) = item else { continue };
        if !is_reply(&method.sig.output) || !takes_mut_self(&method.sig) {
            continue;
        }
        let typed: Vec<_> = method
            .sig
            .inputs
            .iter()
            .filter_map(|input| match input {
                FnArg::Typed(typed) => Some(typed),
                FnArg::Receiver(_) => None,
            })
            .collect();
        let [params, results] = typed.as_slice() else {
            return Err(syn::Error::new(
                method.sig.span(),
                "a method answering the interface takes (&mut self, params, results) and \
                 returns vat::Reply",
            ));
        };
        let (params, results) = (&params.ty, &results.ty);
        let name = &method.sig.ident;
        methods.push(quote! {
            fn #name(
                self: ::std::rc::Rc<Self>,
                params: #params,
                results: #results,
            ) -> impl ::core::future::Future<Output = ::core::result::Result<(), ::capnp::Error>> + 'static {
                self.0.turn(move |object: &mut #object| object.#name(params, results))
            }
        });
    }
    Ok(quote! {
        #block

        #[doc(hidden)]
        pub struct #server(::vat::Served<#object>);

        impl #interface::Server for #server {
            #(#methods)*
        }

        impl ::vat::Far<#interface::Client> for #object {
            type Server = #server;
            fn server(served: ::vat::Served<Self>) -> #server {
                #server(served)
            }
        }
    })
}

/// The hidden server type's name, from the object's.
fn server_name(object: &Type) -> syn::Result<syn::Ident> {
    match object {
        Type::Path(path) => match path.path.segments.last() {
            Some(last) => Ok(format_ident!("__{}VatServer", last.ident)),
            None => Err(syn::Error::new(
                Span::call_site(),
                "an object type is needed",
            )),
        },
        other => Err(syn::Error::new(
            other.span(),
            "#[vat::object] goes on `impl SomeType { … }` for a named type",
        )),
    }
}

/// Whether the method returns `vat::Reply` (or `Reply`).
fn is_reply(output: &ReturnType) -> bool {
    match output {
        ReturnType::Type(_, ty) => match &**ty {
            Type::Path(path) => path
                .path
                .segments
                .last()
                .is_some_and(|last| last.ident == "Reply"),
            _ => false,
        },
        ReturnType::Default => false,
    }
}

/// Whether the method's receiver is `&mut self`.
fn takes_mut_self(sig: &syn::Signature) -> bool {
    matches!(
        sig.inputs.first(),
        Some(FnArg::Receiver(receiver)) if receiver.reference.is_some() && receiver.mutability.is_some()
    )
}
