@0xcbd8511e2b9911c3;
# Example interfaces spoken by `vat demo`, the examples, the tests and the benchmarks.

interface Counter {
  # A number that only grows by the amounts callers add.
  add @0 (by :Int64) -> (value :Int64);
  get @1 () -> (value :Int64);
}

interface Callback {
  # Something a vat hands to another so that it can be called back.
  call @0 (message :Text) -> (reply :Text);
}

interface Chain {
  # One link of a chain. `next` returns the following link, so a caller can
  # pipeline a whole chain of calls without waiting for any of them.
  next @0 () -> (link :Chain);
  depth @1 () -> (depth :UInt32);
}

interface Sequencer {
  # Records numbers pushed to it and whether they arrived in the order sent.
  push @0 (n :UInt64);
  report @1 () -> (received :UInt64, inOrder :Bool, firstGap :UInt64);
  # `firstGap` is the first number that arrived out of order, or 0.
}

interface Host {
  # The bootstrap object of the example vats: it hands out the objects above.
  counter @0 () -> (counter :Counter);
  # A fresh counter that lives in the host's vat.
  chain @1 () -> (link :Chain);
  # The first link of an endless chain whose depth starts at 0.
  sequencer @2 () -> (sequencer :Sequencer);
  # A fresh sequencer that lives in the host's vat.
  greet @3 (callback :Callback, name :Text) -> (reply :Text, callback :Callback);
  # Calls `callback` with a greeting for `name`, then hands back a callback of
  # the host's own that the caller may call.
  reflect @4 (sequencer :Sequencer) -> (sequencer :Sequencer);
  # Returns the capability it was given: a promise for the result that the
  # caller pipelines on resolves back into the caller's own vat.
  crash @5 (message :Text);
  # The host's method panics with `message`; the call breaks with a crashed error.
  echo @6 (value :UInt64) -> (value :UInt64);
  # Returns `value`: the cheapest round trip.
  pipelineOn @7 (host :Host, depth :UInt32) -> (depth :UInt32);
  # Pipelines `host.chain().next()` `depth` times, then `depth()`, all without
  # waiting, and returns the depth reached. At most 1000.
}
