//! The heap: every object spawned in a vat, with what it has done.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::{Rc, Weak};

use crate::error::{Error, ErrorKind};

/// Names one object within its vat. Ids are never reused while the vat runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(u64);

impl ObjectId {
    /// The number behind the id.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Whether an object still takes messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectState {
    /// It takes messages.
    Alive,
    /// It panicked; every message sent to it since breaks with a crashed error.
    Crashed {
        /// The panic message.
        reason: String,
    },
}

/// How an object is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A Rust value reached through near references ([`Ref`](crate::Ref)).
    Near,
    /// A Cap'n Proto server reached through capabilities ([`export`](crate::export)).
    Far,
}

/// A snapshot of one object in a vat's heap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its id.
    pub id: ObjectId,
    /// The Rust type of the object.
    pub type_name: &'static str,
    /// How it is reached.
    pub kind: ObjectKind,
    /// Messages delivered to it: eventual sends and far calls (near calls are
    /// not messages and are not counted).
    pub messages: u64,
    /// Whether it still takes messages.
    pub state: ObjectState,
}

/// What the heap knows of one object. Lives inside the object's allocation.
pub(crate) struct Header {
    id: ObjectId,
    type_name: &'static str,
    kind: ObjectKind,
    messages: Cell<u64>,
    crashed: Cell<bool>,
    crash_reason: RefCell<Option<String>>,
}

impl Header {
    pub(crate) fn id(&self) -> ObjectId {
        self.id
    }

    pub(crate) fn type_name(&self) -> &'static str {
        self.type_name
    }

    #[inline]
    pub(crate) fn is_crashed(&self) -> bool {
        self.crashed.get()
    }

    #[inline]
    pub(crate) fn count_message(&self) {
        self.messages.set(self.messages.get() + 1);
    }

    pub(crate) fn mark_crashed(&self, reason: &str) {
        self.crashed.set(true);
        *self.crash_reason.borrow_mut() = Some(reason.to_owned());
    }

    /// The error every message to a crashed object gets.
    pub(crate) fn crashed_error(&self) -> Error {
        let reason = self.crash_reason.borrow();
        Error::new(
            ErrorKind::Crashed,
            format!(
                "object {} ({}) crashed: {}",
                self.id,
                self.type_name,
                reason.as_deref().unwrap_or("unknown reason")
            ),
        )
    }

    pub(crate) fn info(&self) -> ObjectInfo {
        ObjectInfo {
            id: self.id,
            type_name: self.type_name,
            kind: self.kind,
            messages: self.messages.get(),
            state: match &*self.crash_reason.borrow() {
                Some(reason) if self.crashed.get() => ObjectState::Crashed {
                    reason: reason.clone(),
                },
                _ => ObjectState::Alive,
            },
        }
    }
}

/// Anything the heap records: it has a header.
pub(crate) trait HeapEntry {
    fn header(&self) -> &Header;

    /// Marks the object crashed with `reason`. Objects with a value of their
    /// own also lock it for good, so near calls refuse it without looking at
    /// the header on their fast path.
    fn crash(&self, reason: &str) {
        self.header().mark_crashed(reason);
    }
}

impl HeapEntry for Header {
    fn header(&self) -> &Header {
        self
    }
}

/// The registry of a vat's objects. Holds them weakly: an object nobody
/// references any more leaves the heap.
#[derive(Default)]
pub(crate) struct Heap {
    entries: RefCell<Vec<Weak<dyn HeapEntry>>>,
    next_id: Cell<u64>,
    /// Sweep dead entries once the list grows past this.
    sweep_at: Cell<usize>,
}

const FIRST_SWEEP: usize = 64;

impl Heap {
    pub(crate) fn new_header(&self, type_name: &'static str, kind: ObjectKind) -> Header {
        let id = self.next_id.get() + 1;
        self.next_id.set(id);
        Header {
            id: ObjectId(id),
            type_name,
            kind,
            messages: Cell::new(0),
            crashed: Cell::new(false),
            crash_reason: RefCell::new(None),
        }
    }

    pub(crate) fn record(&self, entry: Weak<dyn HeapEntry>) {
        let mut entries = self.entries.borrow_mut();
        entries.push(entry);
        // Amortised sweep: the list never holds more than about twice the
        // live objects.
        if entries.len() >= self.sweep_at.get().max(FIRST_SWEEP) {
            entries.retain(|e| e.strong_count() > 0);
            self.sweep_at.set(entries.len() * 2);
        }
    }

    /// The live objects, oldest first.
    pub(crate) fn list(&self) -> Vec<ObjectInfo> {
        let mut entries = self.entries.borrow_mut();
        entries.retain(|e| e.strong_count() > 0);
        entries
            .iter()
            .filter_map(Weak::upgrade)
            .map(|e| e.header().info())
            .collect()
    }

    /// Drops every record (the vat is stopping).
    pub(crate) fn clear(&self) {
        self.entries.borrow_mut().clear();
    }
}

/// Keeps a header alive on its own, for objects whose value lives elsewhere
/// (far objects, whose server capnp-rpc owns).
pub(crate) fn standalone(header: Header) -> Rc<Header> {
    Rc::new(header)
}
