@0xef2fdcac3339c54f;
# The directory: a federation's shared record, replicated with Raft among
# 3 or 5 directory vats. docs/PROTOCOL.md ("The directory") tells the whole
# story: the token, the facets, the semantics of reads, writes and watches.
#
# Everything here is reached through sturdyrefs restored from a member's
# gateway (gateway.capnp): a facet's swiss number is the same on every
# member, so one token names them all.

interface Directory {
  # A facet of the directory: what it allows is fixed when it is minted
  # (admin, host of one vat, reader or writer of a key prefix). A call it
  # does not allow is refused with `refused.kind = notPermitted`, the same
  # for a key that exists and one that does not.
  #
  # Writes are acknowledged once committed on a quorum. Each carries a
  # `RequestId`: a retry with the same id (after a lost answer, a leader
  # change) is applied at most once and answers the first answer.

  put @0 (key :Text, record :Record, request :RequestId) -> (outcome :Outcome);
  delete @1 (key :Text, request :RequestId) -> (outcome :Outcome);
  renew @2 (vat :Text, request :RequestId) -> (outcome :Outcome);
  # Renews the lease of `vats/<vat>`.

  get @3 (key :Text, consistency :Consistency) -> (outcome :Outcome, found :Bool, entry :Entry);
  list @4 (prefix :Text, consistency :Consistency, limit :UInt32) -> (outcome :Outcome, entries :List(Entry), more :Bool);
  # At most `limit` entries (and never more than 1000), in key order;
  # `more` if the prefix holds more.

  watch @5 (prefix :Text, fromIndex :UInt64, watcher :Watcher) -> (outcome :Outcome, handle :WatchHandle);
  # Every change under `prefix` after log index `fromIndex`, in log order,
  # to `watcher`, each once; if the member no longer keeps the changes
  # since `fromIndex`, `reset` first with the prefix's state. Dropping the
  # handle ends the watch.

  status @6 () -> (outcome :Outcome, status :Status);

  mintFacet @7 (kind :FacetKind, request :RequestId) -> (outcome :Outcome, token :Text);
  # Admin only: a new facet; its token names every member.
  revokeFacet @8 (token :Text, request :RequestId) -> (outcome :Outcome);
  # Admin only: revokes the facet `token` names, for good.

  addMember @9 (vat :Text, hints :List(Text)) -> (outcome :Outcome);
  # Admin only: makes the vat a learner, lets it catch up, then a voter.
  removeMember @10 (vat :Text) -> (outcome :Outcome);
  # Admin only: the vat stops being a voter (a dead one may be removed).

  cluster @11 () -> (outcome :Outcome, cluster :Cluster);
  # Admin only: the cluster's configuration, for a new member to `join`.
}

struct RequestId {
  client @0 :Data;          # 16 random bytes per client
  serial @1 :UInt64;        # from 1, one per request of the client
  answeredBelow @2 :UInt64; # every serial below it was answered
}

enum Consistency {
  linearizable @0;  # reflects every write acknowledged before the call
  any @1;           # whatever the member that answers has applied
}

struct Outcome {
  # Whether the call did what it asked, and if not, why.
  union {
    done @0 :Done;
    noQuorum @1 :NoQuorum;
    refused @2 :Refused;
    unavailable @3 :Text;  # no leader known yet, or it did not answer
  }
}

struct Done {
  index @0 :UInt64;        # the write's log index, or the index a read saw
  stalenessMs @1 :UInt64;  # for an `any` read: how old its state may be
  servedBy @2 :Text;       # the vat id of the member that answered
  leader @3 :Text;         # a write forwarded by a follower: the vat id of
                           # the leader that committed it (else empty), so
                           # the client can call it directly next time
}

struct NoQuorum {
  reached @0 :UInt32;  # members this one reaches, itself included
  members @1 :UInt32;  # voters in the membership
}

struct Refused {
  kind @0 :Kind;
  limit @1 :UInt64;   # the bound, for tooLarge and tooMany
  size @2 :UInt64;    # what was offered, for tooLarge
  message @3 :Text;
  enum Kind {
    notPermitted @0;
    badKey @1;
    tooLarge @2;
    wrongKind @3;
    tooMany @4;
    noSuchVat @5;
    forgotten @6;
    badArgument @7;
  }
}

struct Entry {
  key @0 :Text;
  record @1 :Record;
  index @2 :UInt64;  # the log index of its last write
}

struct Record {
  # New kinds of record are new members of this union.
  union {
    vat @0 :VatRecord;
    name @1 :NameRecord;
    instance @2 :InstanceRecord;
    binding @3 :BindingRecord;
    grant @4 :GrantRecord;
    host @5 :HostRecord;
    route @6 :RouteRecord;
  }
}

struct VatRecord {
  hints @0 :List(Text);
  labels @1 :List(Label);
  leaseMs @2 :UInt64;
  expiresAtMs @3 :UInt64;  # set by the directory; ignored in a put
  gone @4 :Bool;           # set by the directory once the lease lapsed
}

struct Label {
  key @0 :Text;
  value @1 :Text;
}

struct NameRecord {
  refs @0 :List(Text);
}

struct InstanceRecord {
  # Under instances/<kind>@<version>/<vat-id>/<n>, written by the host.
  refs @0 :List(Text);
}

struct BindingRecord {
  # Under bindings/<actor>/<provider>/<link>, written by the operator.
  config @0 :List(Label);
}

struct HostRecord {
  # Under hosts/<vat-id>, written by that host, read only by the admin: the
  # token of the host's own capability (start and stop instances).
  token @0 :Text;
}

struct GrantRecord {
  # Under grants/<actor>/<provider>/<link>/<vat-id>/<n>, written by the host
  # running provider instance n: how that instance took the binding.
  configDigest @0 :Text;   # the binding's config it applied (hex SHA-256)
  union {
    token @1 :Text;        # it provisioned: the capability it grants the actor
    failed @2 :Text;       # it could not: why (port in use, ...)
  }
}

struct RouteRecord {
  # Under routes/<kind>, written by the operator: how calls on the kind's
  # unversioned reference (its router) pick a version. The first rule that
  # matches picks; the rest go by weights or to the live version.
  rules @0 :List(RouteRule);
  union {
    weights @1 :List(VersionWeight);  # a version gets weight / sum of calls
    live @2 :Text;                    # every call to this version
  }
  sticky @3 :Bool;         # with weights: a keyed call keeps its version
  previous @4 :Text;       # with live: the version live before ("" none)
}

struct RouteRule {
  union {
    key @0 :Void;          # the routing key the caller's reference carries
    field @1 :Text;        # a text field of the call's params (a.b nests)
  }
  pattern @2 :Text;        # a glob: * matches any run of characters
  version @3 :Text;
}

struct VersionWeight {
  version @0 :Text;
  weight @1 :UInt32;
}

interface Watcher {
  changed @0 (changes :List(Change)) -> ();
  reset @1 (index :UInt64, entries :List(Entry)) -> ();
  # The prefix's whole state as of `index`; changes after it follow.
}

struct Change {
  index @0 :UInt64;
  key @1 :Text;
  deleted @2 :Bool;
  record @3 :Record;  # unset when deleted
}

interface WatchHandle {
  cancel @0 () -> ();
}

struct FacetKind {
  union {
    admin @0 :Void;
    host @1 :Text;    # the vat id
    readerOf @2 :Text;  # the prefix
    writerOf @3 :Text;  # the prefix
  }
}

struct Status {
  leader @0 :Text;        # vat id, "" if none is known
  term @1 :UInt64;
  commitIndex @2 :UInt64;
  appliedIndex @3 :UInt64;
  servedBy @4 :Text;
  members @5 :List(MemberStatus);
  role @6 :Text;          # the answering member's: leader, follower, candidate, learner
}

struct MemberStatus {
  vat @0 :Text;
  hints @1 :List(Text);
  voter @2 :Bool;
  matched @3 :UInt64;     # the last log index the leader knows it holds
  lag @4 :UInt64;         # the leader's last index minus `matched`
  reachable @5 :Bool;     # as seen by the member that answered
}

interface DirectoryMember {
  # A directory vat's own object, for its operator: the token
  # `vat serve --directory-member` prints.

  initialize @0 (cluster :Cluster) -> (outcome :Outcome);
  # Makes this vat a member of a new cluster. Idempotent for the same
  # cluster; refused for another once initialized.

  status @1 () -> (initialized :Bool, status :Status);

  join @2 (cluster :Cluster) -> (outcome :Outcome);
  # Makes this vat ready to be added to a running cluster (it learns the
  # cluster's configuration; `Directory.addMember` then makes it a member).
}

struct Cluster {
  id @0 :Data;           # 16 random bytes naming the cluster
  members @1 :List(MemberInfo);
  admin @2 :Data;        # the SHA-256 of the first admin facet's swiss number
  peers @3 :Data;        # the swiss number members restore each other's RaftPeer by
}

struct MemberInfo {
  vat @0 :Text;
  hints @1 :List(Text);
}

interface RaftPeer {
  # Between members only: the caller must prove a key the membership
  # names. Payloads are the postcard encoding of openraft's messages
  # (openraft =0.10.0-alpha.37; every member runs the same build).

  appendEntries @0 (request :Data) -> (response :Data);
  vote @1 (request :Data) -> (response :Data);
  installSnapshot @2 (vote :Data, meta :Data, data :Data) -> (response :Data);
  forward @3 (request :Data) -> (response :Data);
  # A member's client request, for the leader to run.
  ping @4 () -> ();
  readIndex @5 () -> (response :Data);
  # The leader's read index for a follower's linearizable read.
  changeMembership @6 (change :Data) -> (response :Data);
  # An admin's membership change, for the leader to run.
}
