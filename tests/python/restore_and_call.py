#!/usr/bin/env python3
"""A third-party client of a vat: restore a sturdyref token and call the
counter it names, following docs/PROTOCOL.md with the standard library and
pycapnp 2.x only.

    restore_and_call.py --schema-dir DIR TOKEN

It parses TOKEN, dials its location hints over TLS 1.3 (ALPN capnp-vat/1,
SNI capnp-vat.invalid, no certificate authority), refuses any server whose
certificate does not carry the ed25519 key the token names, bootstraps the
vat's Gateway, and then:

  1. restores the token and, without waiting for the answer, calls add(5)
     on the object it will return (a pipelined call), then get(); restores
     it again and calls get() on the resolved result's capability;
  2. restores a tampered swiss number, pipelining add(1) on it as well
     (both fail with "[unknown token] ");
  3. asks for the Admin capability anonymously (refused the same way).

Each outcome is one JSON object per line on standard output.

Exit status: 0 when all of the above ran, 2 when no location hint led to a
server proving the token's key (one "refused" line per attempt), 64 for a
malformed token or arguments, 1 for anything else.
"""

import argparse
import asyncio
import base64
import json
import os
import re
import ssl
import sys

import capnp

# The TLS parameters of the vat protocol (docs/PROTOCOL.md, "Transport").
ALPN_PROTOCOL = "capnp-vat/1"
SERVER_NAME = "capnp-vat.invalid"
SCHEME = "captp://"

# The DER encoding of an ed25519 SubjectPublicKeyInfo (RFC 8410) is fixed:
# SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING { 0 unused bits, key } }.
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")

EXIT_UNREACHABLE = 2
EXIT_USAGE = 64


class TokenError(ValueError):
    """The token is not one a vat would have written."""


class NotThatVat(ssl.SSLCertVerificationError):
    """The server proved a key, but not the one the token names."""

    def __init__(self, found, expected):
        super().__init__(
            f"the server proved vat {encode_vat_id(found)}, not vat {encode_vat_id(expected)}"
        )
        self.found = found


def describe(error):
    """An exception as one line of text."""
    if isinstance(error, ssl.SSLError) and len(error.args) == 1:
        return str(error.args[0])
    return str(error) or type(error).__name__


def emit(**fields):
    print(json.dumps(fields, sort_keys=True), flush=True)


# --- The token ---------------------------------------------------------------


def decode_vat_id(text):
    """The 32 key bytes of a vat id: lowercase base32, no padding."""
    if not re.fullmatch(r"[a-z2-7]{52}", text):
        raise TokenError("the vat id must be 52 characters of a-z and 2-7")
    key = base64.b32decode(text.upper() + "====")
    # One spelling only: the last character's unused bits must be zero.
    if base64.b32encode(key).decode().rstrip("=").lower() != text:
        raise TokenError("the vat id is not in its canonical form")
    return key


def encode_vat_id(key):
    return base64.b32encode(key).decode().rstrip("=").lower()


def decode_swiss(text):
    """The 32 secret bytes of a swiss number: base64url, no padding."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{43}", text):
        raise TokenError("the swiss number must be 43 characters of A-Z a-z 0-9 - _")
    swiss = base64.urlsafe_b64decode(text + "=")
    if base64.urlsafe_b64encode(swiss).decode().rstrip("=") != text:
        raise TokenError("the swiss number is not in its canonical form")
    return swiss


def parse_hint(text):
    """(host, port) of `host:port`, `[ipv6]:port` or `a.b.c.d:port`."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise TokenError(f"bad location hint {text!r}")
        port_text = rest[1:]
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon or not host:
            raise TokenError(f"bad location hint {text!r}: write host:port")
    if not re.fullmatch(r"[1-9][0-9]{0,4}", port_text) or int(port_text) > 65535:
        raise TokenError(f"bad port in location hint {text!r}")
    return host, int(port_text)


def parse_token(token):
    """(vat key, [(host, port)...], swiss number) of a token."""
    if not token.startswith(SCHEME):
        raise TokenError(f"a token starts with {SCHEME}")
    authority, slash, swiss_text = token[len(SCHEME):].partition("/")
    vat_text, at, hints_text = authority.partition("@")
    if not slash or not at:
        raise TokenError("a token is captp://<vat-id>@<hint>[,<hint>...]/<swiss-number>")
    hints = [parse_hint(hint) for hint in hints_text.split(",")]
    return decode_vat_id(vat_text), hints, decode_swiss(swiss_text)


# --- TLS with a pinned key ---------------------------------------------------


def der_element(data, offset):
    """(tag, start of contents, end of contents) of the DER element at offset."""
    tag = data[offset]
    length = data[offset + 1]
    offset += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4:
            raise ValueError("unsupported DER length")
        length = int.from_bytes(data[offset:offset + count], "big")
        offset += count
    if offset + length > len(data):
        raise ValueError("truncated DER")
    return tag, offset, offset + length


def ed25519_key_of(certificate):
    """The ed25519 public key in an X.509 certificate (DER), or ValueError."""
    tag, start, _ = der_element(certificate, 0)  # Certificate
    if tag != 0x30:
        raise ValueError("not a certificate")
    tag, offset, tbs_end = der_element(certificate, start)  # TBSCertificate
    if tag != 0x30:
        raise ValueError("not a certificate")
    if certificate[offset] == 0xA0:  # [0] version, when present
        offset = der_element(certificate, offset)[2]
    # serialNumber, signature, issuer, validity, subject: skipped, since
    # nothing in them is trusted.
    for _ in range(5):
        offset = der_element(certificate, offset)[2]
    tag, _, spki_end = der_element(certificate, offset)
    spki = certificate[offset:spki_end]
    if tag != 0x30 or spki_end > tbs_end:
        raise ValueError("no SubjectPublicKeyInfo")
    if len(spki) != len(ED25519_SPKI_PREFIX) + 32 or not spki.startswith(ED25519_SPKI_PREFIX):
        raise ValueError("the certificate's key is not an ed25519 key")
    return spki[len(ED25519_SPKI_PREFIX):]


def pinned_context(expected_key, handshakes):
    """A client context for a vat whose key is `expected_key`.

    Python's ssl module offers no hook to verify a certificate by its key,
    so the check runs in the SSLObject that asyncio drives for this
    connection: as soon as its handshake completes, and before asyncio
    hands the connection to pycapnp, the server's certificate must carry
    `expected_key` (otherwise the handshake fails and no byte of Cap'n
    Proto is sent). `handshakes` receives what each finished handshake
    agreed on.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    # No certificate authority and no host name: the key is the vat's name.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols([ALPN_PROTOCOL])

    class PinnedSSLObject(ssl.SSLObject):
        def do_handshake(self):
            # Raises SSLWantReadError until the handshake is complete.
            super().do_handshake()
            certificate = self.getpeercert(binary_form=True)
            try:
                found = ed25519_key_of(certificate or b"")
            except ValueError as error:
                raise ssl.SSLCertVerificationError(f"the server's certificate: {error}")
            if found != expected_key:
                raise NotThatVat(found, expected_key)
            if self.version() != "TLSv1.3":
                raise ssl.SSLError(f"the server spoke {self.version()}, not TLSv1.3")
            if self.selected_alpn_protocol() != ALPN_PROTOCOL:
                raise ssl.SSLError(
                    f"the server agreed on ALPN {self.selected_alpn_protocol()!r}, "
                    f"not {ALPN_PROTOCOL!r}"
                )
            handshakes.append(
                {
                    "vat_id": encode_vat_id(found),
                    "tls_version": self.version(),
                    "cipher": self.cipher()[0],
                    "alpn": self.selected_alpn_protocol(),
                }
            )

    context.sslobject_class = PinnedSSLObject
    return context


async def connect(vat_key, hints):
    """A pycapnp stream to the first hint whose server proves `vat_key`."""
    for host, port in hints:
        handshakes = []
        context = pinned_context(vat_key, handshakes)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            stream = await asyncio.wait_for(
                capnp.AsyncIoStream.create_connection(
                    host, port, ssl=context, server_hostname=SERVER_NAME
                ),
                timeout=10,
            )
        except NotThatVat as error:
            emit(step="refused", address=address, found=encode_vat_id(error.found), reason=describe(error))
            continue
        except (OSError, asyncio.TimeoutError) as error:
            emit(step="refused", address=address, reason=describe(error))
            continue
        # The connection pycapnp got is the one whose handshake was checked.
        assert len(handshakes) == 1, "one pinned handshake per connection"
        emit(step="connected", address=address, **handshakes[0])
        return stream
    return None


# --- Cap'n Proto --------------------------------------------------------------


def failure(error):
    """The fields of a refused call: Cap'n Proto exception type and reason."""
    return {"type": str(error.type), "reason": error.description}


async def session(stream, swiss, schemas):
    gateway_capnp, demo_capnp = schemas
    client = capnp.TwoPartyClient(stream)
    gateway = client.bootstrap().cast_as(gateway_capnp.Gateway)

    # Pipelined: add(5) goes out on the promised object before the restore
    # is answered.
    restored = gateway.restore(swissNumber=swiss)
    counter = restored.object.cast_as(demo_capnp.Counter)
    added = counter.add(by=5)
    emit(step="add", value=(await added).value)
    emit(step="restore", kind=(await restored).kind)
    emit(step="get", value=(await counter.get()).value)

    # The resolved result's capability: as_interface, not cast_as.
    resolved = (await gateway.restore(swissNumber=swiss)).object
    again = resolved.as_interface(demo_capnp.Counter)
    emit(step="resolved get", value=(await again.get()).value)

    tampered = bytearray(swiss)
    tampered[0] ^= 0x01
    restored = gateway.restore(swissNumber=bytes(tampered))
    pipelined = restored.object.cast_as(demo_capnp.Counter).add(by=1)
    for step, promise in (("tampered restore", restored), ("tampered call", pipelined)):
        try:
            await promise
            emit(step=step, error=None)
        except capnp.KjException as error:
            emit(step=step, **failure(error))

    try:
        await gateway.admin()
        emit(step="admin", error=None)
    except capnp.KjException as error:
        emit(step="admin", **failure(error))


async def main(arguments, schemas):
    vat_key, hints, swiss = arguments
    stream = await connect(vat_key, hints)
    if stream is None:
        return EXIT_UNREACHABLE
    await session(stream, swiss, schemas)
    return 0


def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema-dir", required=True, help="the folder of gateway.capnp and demo.capnp")
    parser.add_argument("token")
    options = parser.parse_args()
    try:
        parsed = parse_token(options.token)
    except TokenError as error:
        print(f"restore_and_call: not a token: {error}", file=sys.stderr)
        return EXIT_USAGE
    schemas = (
        capnp.load(os.path.join(options.schema_dir, "gateway.capnp")),
        capnp.load(os.path.join(options.schema_dir, "demo.capnp")),
    )
    return asyncio.run(capnp.run(main(parsed, schemas)))


if __name__ == "__main__":
    sys.exit(run())
