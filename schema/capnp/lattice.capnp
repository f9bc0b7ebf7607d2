@0xd1a6f0c3b5e27a49;
# The lattice: hosts running actors and providers, and the interfaces of the
# providers shipped with it. `vat-lattice` (lattice/) is the Rust side.

interface HttpHandler {
  # What an actor bound to the HTTP provider serves: one call per request.
  handle @0 (request :HttpRequest) -> (response :HttpResponse);
}

struct HttpRequest {
  method @0 :Text;
  path @1 :Text;             # with the query, as the client sent it
  headers @2 :List(Header);
  body @3 :Data;
}

struct HttpResponse {
  status @0 :UInt16;
  headers @1 :List(Header);
  body @2 :Data;
}

struct Header {
  name @0 :Text;
  value @1 :Data;
}

interface KeyValue {
  # What the key-value provider grants an actor under one binding: a bucket
  # of its own, named by the binding's `bucket` setting.
  get @0 (key :Text) -> (value :Data, found :Bool);
  set @1 (key :Text, value :Data) -> ();
  delete @2 (key :Text) -> (existed :Bool);
}

enum Role {
  actor @0;
  provider @1;
}

struct Instance {
  role @0 :Role;
  kind @1 :Text;
  version @2 :Text;
  number @3 :UInt64;         # the instance's number on its host
}

interface Host {
  # A host's own capability: its operator starts and stops instances of the
  # kinds its program registered factories for.
  start @0 (role :Role, kind :Text, version :Text) -> (instance :Instance);
  # Starts one instance; an empty version picks the only one registered.
  stop @1 (number :UInt64) -> ();
  # Stops an instance: its bindings stay in the lattice.
  inventory @2 () -> (instances :List(Instance), factories :List(Instance));
  # What runs here, and what could (factories, numbered 0).
  followed @3 (kind :Text, atLeast :UInt64, waitMs :UInt32) -> (routes :Bool, index :UInt64);
  # The log index of the kind's route this host's routers follow (0: none),
  # answered once it reaches atLeast or after waitMs (at most 10000);
  # routes is false if the host routes no call to the kind.
  stopKind @4 (kind :Text, version :Text) -> (stopped :List(UInt64));
  # Stops every instance of the kind at the version; an empty version means
  # the only one running here (refused, nothing stopped, if several run).
  scale @5 (kind :Text, version :Text, count :UInt32) -> (instances :List(Instance));
  # Starts or stops instances until count of the kind at the version run
  # here; an empty version as for stopKind.
}
