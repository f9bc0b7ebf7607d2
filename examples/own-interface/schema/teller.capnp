@0xd3c5a0e1f27b9c41;

# A bank teller: the example of a crate's own interface.
interface Teller {
  deposit @0 (amount :UInt64) -> (balance :UInt64);
  # Adds `amount` to the account; answers the new balance.

  balance @1 () -> (balance :UInt64);
  # The balance now.

  close @2 ();
  # Not implemented by the example's teller: capnp answers `unimplemented`.
}
