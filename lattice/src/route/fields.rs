//! How a router reads a field of a call: a rule names a field of the
//! params by name, and the router reads it through the params' schema,
//! which the program registers for the methods it routes by content (a
//! router is generic over the interface, and capnp messages do not carry
//! their schema).

use std::collections::BTreeMap;
use std::rc::Rc;

use capnp::dynamic_value;

type Reader =
    Rc<dyn for<'a> Fn(capnp::any_pointer::Reader<'a>) -> Option<dynamic_value::Reader<'a>>>;

/// The params schemas of the methods whose calls routes may read fields
/// of, by interface and method. Clones share the readers.
#[derive(Clone, Default)]
pub struct Fields {
    readers: BTreeMap<(u64, u16), Reader>,
}

impl std::fmt::Debug for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.readers.keys()).finish()
    }
}

impl Fields {
    /// No methods: field rules match no call.
    pub fn new() -> Fields {
        Fields::default()
    }

    /// The methods of the interfaces the lattice ships (the HTTP
    /// provider's `HttpHandler.handle`, so rules such as
    /// `field.request.path:/beta/*=1.1.0` route HTTP requests by path).
    pub fn shipped() -> Fields {
        use capnp::traits::HasTypeId;
        use schema::lattice_capnp::http_handler;
        Fields::new().method::<http_handler::handle_params::Owned>(http_handler::Client::TYPE_ID, 0)
    }

    /// Lets rules read fields of calls of method `method_id` of interface
    /// `interface_id`, whose params are `P` (the generated
    /// `<method>_params::Owned`).
    pub fn method<P>(mut self, interface_id: u64, method_id: u16) -> Fields
    where
        P: capnp::traits::Owned,
        for<'a> P::Reader<'a>: Into<dynamic_value::Reader<'a>>,
    {
        let reader: Reader = Rc::new(|params: capnp::any_pointer::Reader<'_>| {
            params.get_as::<P::Reader<'_>>().ok().map(Into::into)
        });
        self.readers.insert((interface_id, method_id), reader);
        self
    }

    /// Adds every method `other` knows.
    pub fn merge(&mut self, other: &Fields) {
        for (key, reader) in &other.readers {
            self.readers.insert(*key, Rc::clone(reader));
        }
    }

    /// The text at `path` (`a.b`: field `b` of struct field `a`) in a
    /// call's params, if the method is known, the field exists and holds
    /// text.
    pub fn text<'a>(
        &self,
        interface_id: u64,
        method_id: u16,
        params: capnp::any_pointer::Reader<'a>,
        path: &str,
    ) -> Option<&'a str> {
        let reader = self.readers.get(&(interface_id, method_id))?;
        let mut value = reader(params)?;
        for segment in path.split('.') {
            let dynamic_value::Reader::Struct(fields) = value else {
                return None;
            };
            value = fields.get_named(segment).ok()?;
        }
        match value {
            dynamic_value::Reader::Text(text) => text.to_str().ok(),
            _ => None,
        }
    }

    /// Whether it knows method `method_id` of `interface_id`.
    pub fn knows(&self, interface_id: u64, method_id: u16) -> bool {
        self.readers.contains_key(&(interface_id, method_id))
    }
}
