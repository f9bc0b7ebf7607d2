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
  #   "[revoked] "        the token was revoked;
  #   "[expired] "        the token's lifetime is over;
  #   "[invalid argument] " the swiss number is not 32 bytes.
  # A capability restored earlier breaks with "[revoked] " on its next call
  # once its token is revoked, and with "[expired] " once it expires.
}
