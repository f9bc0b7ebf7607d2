//! Sturdyref tokens: durable, unguessable, revocable text references to
//! objects in vats (vat id, location hints and a swiss number).
#![forbid(unsafe_code)]
