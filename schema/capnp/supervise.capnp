@0xb89e8c8b408f8e72;
# Supervision trees: a supervisor restarts the objects it supervises when
# they crash, and callers keep one reference across every restart.
# `vat::supervise` (vat/src/supervise/) is the Rust side.

interface Supervisor {
  # What a supervisor shows of itself: its children and its recent crashes.

  crashLog @0 () -> (entries :List(CrashEntry));
  # The last crashes of its children (at most its log's capacity), oldest first.

  children @1 () -> (children :List(ChildInfo));
  # Every child, in start order.

  child @2 (name :Text) -> (child :Capability);
  # The stable reference to the child `name`: it reaches whichever
  # incarnation of the child is current, across restarts. Unknown names are
  # refused with "[invalid argument] ".
}

struct CrashEntry {
  time @0 :UInt64;      # milliseconds since 1970
  child @1 :Text;       # the child's name
  error @2 :Text;       # what ended it: the crash error, or why it was lost
  restarts @3 :UInt64;  # how many times the child had been restarted before
}

struct ChildInfo {
  name @0 :Text;
  status @1 :Text;         # "running", "restarting", "exited" or "stopped"
  restarts @2 :UInt64;     # restarts so far
  incarnation @3 :UInt64;  # 1 for the first incarnation, one more per start
}

interface Spawner {
  # Starts objects in the vat that serves it, from factories registered
  # there by name, for a supervisor in another vat.

  spawn @0 (name :Text, incarnation :UInt64) -> (child :Capability, watch :ChildWatch);
  # A new object from the factory `name`; `incarnation` counts the starts of
  # this child (1 for the first). `watch` tells the supervisor when the
  # object ends. An unknown name is refused with "[invalid argument] ".

  names @1 () -> (names :List(Text));
  # The factories registered, sorted.
}

interface ChildWatch {
  # One spawned object's end, as a call that is answered only then.

  ended @0 () -> (crashed :Bool, reason :Text);
  # Answers once the object crashes (`crashed`, with the crash error) or
  # exits normally (not `crashed`). If the spawner's vat dies first the
  # call breaks with a disconnected error, which the supervisor takes as
  # the child lost.
}
