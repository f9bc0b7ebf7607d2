@0xd47cacd444f0d51e;
# How a vat lets the holders of sturdyref tokens in. docs/PROTOCOL.md tells
# the whole story: TLS parameters, the token format, and this interface.

interface Gateway {
  # The bootstrap object a vat offers on its TLS listener when it serves
  # sturdyrefs. Holding it grants nothing: every object behind it must be
  # named by its swiss number.

  restore @0 (swissNumber :Data) -> (object :Capability, kind :Text);
  # The live object that the 32-byte swiss number names, and the kind of
  # object it is (for tools; a program knows the interface it expects).
  #
  # Refusals are exceptions of type `failed` whose reason starts with a tag:
  #   "[unknown token] "  no such token: never minted, or bound to another
  #                       vat than the caller proved it is;
  #   "[revoked] "        the token was revoked, or is a single-use token
  #                       (see `handoff`) that was used already;
  #   "[expired] "        the token's lifetime is over;
  #   "[invalid argument] " the swiss number is not 32 bytes.
  # A capability restored earlier breaks with "[revoked] " on its next call
  # once its token is revoked, and with "[expired] " once it expires.

  handoff @2 (object :Capability, recipient :Data) -> (token :Text);
  # Three-party handoff. The caller holds `object`, one of this vat's
  # objects reached through this gateway, and wants to give it to the vat
  # whose 32-byte key is `recipient`. The answer is a token for the same
  # object that is bound to `recipient`, works once, and expires after
  # 60 seconds: the caller passes it on, and the recipient restores it from
  # this vat directly, over its own connection, so the introducer may leave.
  # The recipient's reference lives as long as the caller's would: revoking
  # the token the caller restored revokes it too.
  # Refused with "[invalid argument] " when `object` is not an object of
  # this vat reached through this connection, or `recipient` is not 32 bytes.

  admin @1 () -> (admin :Admin);
  # The vat's admin capability, for a caller that proved the vat's own key
  # over TLS: its operator, who holds the vat's data folder. Anyone else is
  # refused with "[unknown token] ", as for a token it does not hold.
}

interface Admin {
  # Manages the token table of a running vat.

  tokens @0 () -> (tokens :List(TokenInfo));
  # Every token the vat has minted, oldest first. No secrets: hashes only.

  mint @1 (object :Text, expiresAt :UInt64, boundTo :Text) -> (token :Text);
  # A new token for `object` ("kind#id", one of `objects`), as text.
  # `expiresAt` is in seconds since 1970 (0: never); `boundTo` is the vat id
  # of the only vat that may present it ("": any).

  revoke @2 (hash :Data) -> (found :Bool);
  # Revokes the token whose swiss number hashes to `hash`, for good.

  objects @3 () -> (objects :List(Text));
  # What tokens may name: "kind#id" for each object the vat provides or has
  # revived, and "kind#*" for each persistent kind it can revive.
}

struct TokenInfo {
  hash @0 :Data;        # SHA-256 of the swiss number (see PROTOCOL.md)
  object @1 :Text;      # "kind#id"
  createdAt @2 :UInt64; # seconds since 1970
  expiresAt @3 :UInt64; # seconds since 1970; 0: never
  boundTo @4 :Text;     # a vat id, or "" for any holder
  revoked @5 :Bool;
}
