"""Consent: the proof, kept for years, that a person asked for these texts.

A `ConsentRecord` holds what the TCPA and CTIA ask a sender to be able to show: the
number, the time (UTC), the exact disclosure the page showed (by SHA-256; the texts are
kept in their own table) and its language, the page and its source parameters, the
client IP address and the user agent. `app.outbox` stores it before ProTexting is ever called.

An `OptOutRecord` is its opposite, kept the same way: a person's revocation made on the
web opt-out page, with the words that page showed them.

`forgotten()` is what a number becomes when its person is erased (`optin forget`): a
keyed hash, so the records stay findable by the number (`optin proof`) for whoever
holds the key, and by nobody else.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from .campaigns import Campaign
from .i18n import DEFAULT_LANGUAGE

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Source tracking: QR codes and links say where a person came from with `src` and the
# usual `utm_*` parameters. Nothing else from the query string is kept or reflected.
_SOURCE_PREFIXES = ("utm_",)
_SOURCE_NAMES = frozenset({"src"})
_MAX_SOURCE_PARAMS = 10
_MAX_SOURCE_LENGTH = 200
_MAX_USER_AGENT = 512


@dataclass(frozen=True, slots=True)
class Disclosure:
    """The compliance text exactly as a campaign's page renders it."""

    text: str
    sha256: str

    @classmethod
    def of(cls, text: str) -> Disclosure:
        return cls(text=text, sha256=hashlib.sha256(text.encode("utf-8")).hexdigest())


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    created_at: datetime
    campaign: str
    phone: str
    group_ids: tuple[int, ...]
    disclosure_sha256: str
    page_url: str
    source: dict[str, str]
    client_ip: str | None
    user_agent: str | None
    # The language the page (and so the disclosure) was shown in.
    language: str = DEFAULT_LANGUAGE


@dataclass(frozen=True, slots=True)
class OptOutRecord:
    """A revocation: who asked to stop, when, on which page, from which device, and
    exactly what that page told them (`notice`, kept like a disclosure)."""

    created_at: datetime
    phone: str
    # The campaign of /{keyword}/stop, as the campaigns file spells it; None for /stop.
    campaign: str | None
    page_url: str
    language: str
    notice: Disclosure
    client_ip: str | None
    user_agent: str | None


# A forgotten number: this prefix and the first 72 bits of its keyed hash, so it fits
# where a number did (20 characters) and can never be mistaken for one (digits only).
FORGOTTEN_PREFIX = "h:"
_FORGOTTEN_HEX = 18
_FORGET_LABEL = b"optin-pages/forget"


def forgotten(phone: str, secret: str) -> str:
    """What `phone` (E.164 digits) is kept as once its person is erased: HMAC-SHA256
    under a key derived from `secret` (OPTIN_SECRET_KEY). Without the key nobody can
    tell which number it was; with it, only by trying numbers one by one."""
    key = hmac.new(secret.encode(), _FORGET_LABEL, hashlib.sha256).digest()
    return FORGOTTEN_PREFIX + hmac.new(key, phone.encode(), hashlib.sha256).hexdigest()[:_FORGOTTEN_HEX]


def digits_of(typed: str) -> str | None:
    """A number as the records keep it, from what an operator typed ("+1 (201)
    555-0123"): digits only, country code first; None when it cannot be one."""
    digits = re.sub(r"[\s().+-]", "", typed)
    return digits if digits.isdigit() and 8 <= len(digits) <= 15 else None


def stored_as(phone: str, secret: str | None) -> list[str]:
    """Every form `phone`'s records may be kept under: its digits, and (with the key)
    what `forgotten` makes of it: what a proof of the number looks for."""
    return [phone] if secret is None else [phone, forgotten(phone, secret)]


def source_params(query: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """The `src` and `utm_*` parameters of a query string, trimmed to sane sizes."""
    items = query.items() if isinstance(query, Mapping) else query
    kept: dict[str, str] = {}
    for name, value in items:
        if len(kept) >= _MAX_SOURCE_PARAMS:
            break
        if name in _SOURCE_NAMES or (name.startswith(_SOURCE_PREFIXES) and len(name) <= 32):
            kept.setdefault(name, value[:_MAX_SOURCE_LENGTH])
    return kept


def page_url(public_url: str, campaign: Campaign, source: Mapping[str, str]) -> str:
    """The page's public address, with the source parameters it was opened with."""
    url = public_url + campaign.path
    return f"{url}?{urlencode(source)}" if source else url


def client_ip(peer: str | None, forwarded_for: Iterable[str] | str | None, trusted: Iterable[Network]) -> str | None:
    """The address of the person, honouring X-Forwarded-For only from trusted proxies.

    `forwarded_for` is every X-Forwarded-For line of the request, in order: a proxy
    may append a line of its own rather than extend the client's. The hops are read
    from the nearest outwards, and the first that is not a trusted proxy is the
    client: a client can put anything at the far end of the header. A hop that is not
    an address breaks the chain; then the last trusted hop reached is all we know.
    """
    networks = tuple(trusted)
    nearest = _parsed(peer) if peer is not None else None
    if nearest is None:
        # No peer, or not an IP address (a Unix socket, a test client's name).
        return peer
    if not networks or not forwarded_for or not _within(nearest[0], networks):
        return nearest[1]
    lines = (forwarded_for,) if isinstance(forwarded_for, str) else forwarded_for
    hops = [hop for line in lines for hop in line.split(",")]
    for hop in reversed(hops):
        if not hop.strip():
            continue
        address = _parsed(hop)
        if address is None:
            return nearest[1]
        if not _within(address[0], networks):
            return address[1]
        nearest = address
    return nearest[1]


# Every submission asks for its address twice (the per-address count, then the consent
# record), nearly always from an address seen a moment before (the peer, or the proxy
# in front): parsing it is most of the cost, so the last few hundred are remembered.
@functools.lru_cache(maxsize=512)
def _parsed(text: str) -> tuple[_Address, str] | None:
    """`_address(text)` and how it is written, or None."""
    address = _address(text)
    return None if address is None else (address, str(address))


def _address(text: str) -> _Address | None:
    """An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`,
    `[2001:db8::1]` or `[2001:db8::1]:443`; an IPv4 address mapped into IPv6 (what a
    dual-stack socket reports) is the IPv4 address, so it counts as one client."""
    text = text.strip()
    if text.startswith("["):
        host, bracket, port = text[1:].partition("]")
        if not bracket or (port and not (port.startswith(":") and port[1:].isdigit())):
            return None
        text = host
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        if not port.isdigit():
            return None
        text = host
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: _Address, networks: tuple[Network, ...]) -> bool:
    return any(address in network for network in networks)


def user_agent(value: str | None) -> str | None:
    return value[:_MAX_USER_AGENT] if value else None
