@0xc73ce33ed5132563;
# Groups: one capability standing for many members of one interface. A call
# on the group's call-one face goes to one member, chosen by the group's
# strategy; the management capability below joins members, lists them and
# calls them all. `vat::group` (vat/src/group/) is the Rust side.

interface Group {
  # The management face of a group. Holding it is the authority to add
  # members and to call every member; the call-one face (`caller`) is the
  # authority to have calls served by one member at a time.

  caller @0 (key :Data) -> (caller :Capability);
  # The call-one face: a capability of the members' own interface; each call
  # on it goes to one member chosen by the group's strategy. With a non-empty
  # `key`, every call goes to the member the key hashes to (rendezvous
  # hashing over the members), or to the next one by that hash while it is
  # unreachable.

  join @1 (member :Capability) -> (membership :Membership);
  # Adds `member` (a capability of the members' interface). It stays a
  # member while `membership` is held: releasing it, or `leave`, removes it.

  members @2 () -> (members :List(MemberInfo));
  # Every member, in the order they joined.

  callAll @3 (interfaceId :UInt64, methodId :UInt16, params :AnyPointer)
      -> (replies :List(Reply));
  # Calls method `methodId` of interface `interfaceId` on every member with
  # `params` (the method's parameter struct), and answers once every member
  # has answered: one reply per member, in the order of `members`, errors
  # included.

  tellAll @4 (interfaceId :UInt64, methodId :UInt16, params :AnyPointer);
  # The same call sent to every member without waiting for them: answered
  # once the calls are sent. Failures are logged by the group's vat.
}

interface Membership {
  # One member's place in a group.
  leave @0 ();
  # Removes the member (as releasing this capability does). Calls already
  # sent to it go on; no new call goes to it.
}

struct MemberInfo {
  id @0 :UInt64;         # the member's number in the group, from 1
  reachable @1 :Bool;    # false while the group skips it (its vat seemed gone)
  inFlight @2 :UInt32;   # calls sent to it and not answered yet
  calls @3 :UInt64;      # calls sent to it so far (probes excluded)
}

struct Reply {
  member @0 :UInt64;     # the member's id, as in `MemberInfo`
  union {
    ok @1 :AnyPointer;   # the member's result struct
    error @2 :Text;      # why its call failed: "<kind>: <message>"
  }
}

interface Probe {
  # Never implemented. A group sends `ping` to a member it believes
  # unreachable: any answer, `unimplemented` included, proves the member's
  # vat answers again, and the call does nothing there.
  ping @0 ();
}
