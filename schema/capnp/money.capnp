@0x8de68e71aec26e99;
# E's money (examples/money.rs): a mint and its purses. Only the holder of a
# mint makes money; a purse takes money only from a genuine purse of its own
# mint, so no one can forge it or spend it twice.

interface Mint {
  makePurse @0 (balance :Int64) -> (purse :Purse);
  # A new purse holding `balance` new units: the only way money is made.
}

interface Purse {
  getBalance @0 () -> (balance :Int64);
  sprout @1 () -> (purse :Purse);
  # An empty purse of the same mint.
  deposit @2 (amount :Int64, src :Purse) -> ();
  # Moves `amount` from `src` into this purse if `src` is a purse of the same
  # mint holding at least `amount`; otherwise fails and moves nothing.
}

interface Payee {
  # A party that accepts payments.
  receive @0 (payment :Purse) -> (amount :Int64);
  # Takes everything in `payment` into the payee's own purse; answers how much.
}

interface Market {
  # The bank's front door: its customers open purses and reach one another
  # here. capnp-rpc carries a capability passed between two vats through the
  # vat that passed it, so a payment handed from one customer to another
  # through the market reaches the payee as the bank's own purse.
  open @0 (name :Text, payee :Payee) -> (purse :Purse);
  # Registers the caller as `name`, paid through `payee`, and gives it a
  # purse holding the bank's opening balance. A name is taken once.
  payee @1 (name :Text) -> (payee :Payee);
  # The customer registered as `name`.
}
