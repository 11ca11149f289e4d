"""Consent: the proof, kept for years, that a person asked for these texts.

A `ConsentRecord` holds what the TCPA and CTIA ask a sender to be able to show: the
number, the time (UTC), the exact disclosure the page showed (by SHA-256; the texts are
kept in their own table), the page and its source parameters, the client IP address and
the user agent. `app.outbox` stores it before ProTexting is ever called.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from .campaigns import Campaign

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

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


def client_ip(peer: str | None, forwarded_for: str | None, trusted: Iterable[Network]) -> str | None:
    """The address of the person, honouring X-Forwarded-For only from trusted proxies.

    Walks the chain from the nearest hop outwards and stops at the first address that
    is not a trusted proxy: a client can put anything at the far end of the header.
    """
    networks = tuple(trusted)

    def is_trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in networks)

    if peer is None or not networks or not is_trusted(peer) or not forwarded_for:
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return hops[0] if hops else peer


def user_agent(value: str | None) -> str | None:
    return value[:_MAX_USER_AGENT] if value else None
