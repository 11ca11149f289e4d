"""A visit: what the edge tells the domain about the request behind a submission.

The edge (`app.web.visits.visit_of`) reads it off the HTTP request; the domain (the guard,
`app.signup`) never sees the request itself, so the same checks serve the form, the
JSON API and whatever entrance comes next.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Visit:
    # The visitor's address: the connection's, or the one a trusted proxy forwarded.
    client_ip: str | None
    user_agent: str | None
    # Where the browser says the submitting page is: its `Origin` (else its
    # `Referer`'s origin), lower-cased; None when it says nothing (not a browser).
    origin: str | None
    # Fetch Metadata's `Sec-Fetch-Site`, the browser's word when it states no origin.
    fetch_site: str | None
    # The page's placement parameters (`src`, `utm_*`), as the consent record keeps them.
    source: Mapping[str, str]
