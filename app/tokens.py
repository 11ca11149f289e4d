"""Form tokens: a signed, expiring proof that a submission comes from a page we served.

No cookies (third-party iframes often lose them): the token rides in a hidden field
(or in the JSON API's body) and says which campaign's page issued it and when. The
issue time also lets the bot trap see a form filled faster than any person could.

A token is `keyword.issued.nonce.signature`, signed with itsdangerous' `Signer` (keyed
BLAKE2b, by a key derived from OPTIN_SECRET_KEY; tokens of earlier releases, HMAC-SHA1,
are still taken): compact, and cheap enough to make on every page view. The
nonce makes every token a new one, even a form shown again with its first issue time.
The form shown again to confirm a submission sent too fast carries
`keyword.issued.nonce.c.signature` (`issue_confirming`): the signed mark that its next
submission is the second, so the fill-time trap may take it if it is too fast again.

A token is good for one accepted signup (`claim`): replaying one for many numbers would
otherwise let a bot skip the page. The used ones are remembered in the shared counters
(in memory, or in Redis for replicas) until they would have expired anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import logging
import secrets
import time
from base64 import urlsafe_b64encode
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, Signer
from itsdangerous.signer import HMACAlgorithm, SigningAlgorithm
from limits.aio.storage import Storage
from limits.errors import StorageError

from .counters import InProcessCounters
from .problems import Problem, Refusal

logger = logging.getLogger(__name__)

# A page left open longer than this asks the person to press the button again.
MAX_AGE_SECONDS = 24 * 3600


# The end of a confirming token's payload, after its nonce (which has no dot).
_CONFIRMING = ".c"


@dataclass(frozen=True, slots=True)
class Stamp:
    """What a valid token says: when its page was first served (epoch seconds), and
    whether it is a confirming one (`FormTokens.issue_confirming`)."""

    issued: float
    confirming: bool = False


class InvalidFormToken(Exception):
    """Missing, forged, or from another campaign's page."""


class ExpiredFormToken(Refusal):
    """Genuine but too old: the page was open a long time."""

    problem = Problem("token", "token.expired")


class UsedFormToken(Refusal):
    """The token already signed up another number: the form again, with a fresh token."""

    problem = Problem("token", "token.used")


class KeyedSigner(Signer):
    """itsdangerous' Signer with its keys derived once: a derived key depends only on
    the secret and the salt, and deriving it again is a hash on every page view and
    every signup (signing asks for the newest key, checking for each in turn)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._derived = {secret: Signer.derive_key(self, secret) for secret in self.secret_keys}
        self.derived_key = self._derived[self.secret_keys[-1]]

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        if secret_key is None:
            return self.derived_key
        derived = self._derived.get(secret_key) if isinstance(secret_key, bytes) else None
        return derived if derived is not None else super().derive_key(secret_key)


class _KeyedHMAC(HMACAlgorithm):
    """itsdangerous' HMAC, with the key's share of the work done once: an HMAC object
    keyed once per key, copied for each signature (the standard library's own way to
    reuse a key). The same bytes as itsdangerous' own; now only to check the tokens of
    earlier releases (`_HMAC_SHA1`). Not the one-shot `hmac.digest`: OpenSSL's one-shot
    HMAC lets go of the GIL, and while the database writer's thread is busy the event
    loop then waits for it (about 200 us a call in a one-off loop against a busy thread)."""

    def __init__(self, digest_method: Any) -> None:
        super().__init__(digest_method)
        self._keyed: dict[bytes, hmac.HMAC] = {}

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        keyed = self._keyed.get(key)
        if keyed is None:
            keyed = self._keyed[key] = hmac.new(key, digestmod=self.digest_method)
        mac = keyed.copy()
        mac.update(value)
        return mac.digest()


class _KeyedBlake2(SigningAlgorithm):
    """BLAKE2b in its keyed mode, which is a MAC by design (RFC 7693) and needs no HMAC
    around it: 0.7 us a signature against HMAC-SHA1's 1.7 (a one-off loop), on every
    page view. 20 bytes, as SHA-1's. hashlib keeps the GIL for inputs this small."""

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        return hashlib.blake2b(value, key=key, digest_size=20).digest()


_BLAKE2 = _KeyedBlake2()
# What tokens were signed with before (HMAC-SHA1, itsdangerous' default): still taken
# for as long as a page opened before an upgrade may stay open (MAX_AGE_SECONDS).
# hashlib's SHA-1, as itsdangerous' default is a Python wrapper.
_HMAC_SHA1 = _KeyedHMAC(hashlib.sha1)
_SALT = "optin-pages/form-token"
# The nonce makes each token a new one; it need not be secret (the signature covers it),
# only never repeat: a random prefix per process and a count, cheaper than fresh
# randomness on every page view.
_NONCE_PREFIX = secrets.token_urlsafe(6)
_nonces = itertools.count()


# How long a signed batch of tokens is handed out (its issue time may trail the page
# view by this much: the fill-time trap's 2 s default is far longer), and how many
# tokens a batch holds at most.
BATCH_WINDOW = 0.25
BATCH_MAX = 64


@dataclass(slots=True)
class _Batch:
    """Tokens of one page signed together, handed out one per page view.

    Why: one signature per view costs more than its instructions. Between two views the
    server runs uvloop, httptools and the kernel, which push BLAKE2b's code and tables
    out of the CPU's caches, so each lone signature starts cold: under load, signing
    inline took a page view from 1.07x bare Starlette (no token at all) to 0.95x, and
    signing 64 at once brought it back to 1.05x (README, Performance). Every token is
    still its own (its nonce) and good for one signup. A batch's size follows the
    views: it doubles when a batch is used up within its window and halves when one
    goes stale, so a quiet page signs one token a view and wastes none."""

    made: float
    tokens: list[str]
    size: int


class FormTokens:
    """Issues and checks form tokens. `clock` (epoch seconds) stamps and ages them, and
    times the fill (`Guard`): a test passes one it can move on."""

    def __init__(
        self,
        secret: str,
        *,
        max_age: int = MAX_AGE_SECONDS,
        used: Storage | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._signer = KeyedSigner(secret, salt=_SALT, digest_method=hashlib.sha1, algorithm=_BLAKE2)
        # What `issue` signs with, read once: the page view's hot path.
        self._key = self._signer.derived_key
        self._sep = self._signer.sep
        self._legacy = KeyedSigner(secret, salt=_SALT, digest_method=hashlib.sha1, algorithm=_HMAC_SHA1)
        self._max_age = max_age
        self._batches: dict[str, _Batch] = {}
        self._used = used if used is not None else InProcessCounters()
        self.clock = clock

    def issue(self, campaign: str, *, issued_at: float | None = None) -> str:
        """A new token for the page of the campaign whose key (`app.site.Listing.key`,
        its keyword folded) is `campaign`. A form shown again after an error keeps the
        first issue time, so a person correcting a typo is not slowed down again.

        A page view's token comes from a batch signed for that page at most
        `BATCH_WINDOW` seconds before (see `_Batch`), and carries the batch's time."""
        if issued_at is not None:
            return self._sign(campaign, issued_at, 1)[0]
        now = self.clock()
        batch = self._batches.get(campaign)
        size = 1
        if batch is not None:
            fresh = 0 <= now - batch.made < BATCH_WINDOW
            if fresh and batch.tokens:
                return batch.tokens.pop()
            if fresh:  # used up within its window: the views come faster than it
                size = min(batch.size * 2, BATCH_MAX)
            elif batch.tokens:  # went stale unused: the views come slower
                size = max(batch.size // 2, 1)
            else:
                size = batch.size
        tokens = self._sign(campaign, now, size)
        token = tokens.pop()
        self._batches[campaign] = _Batch(now, tokens, size)
        return token

    def _sign(self, campaign: str, issued: float, count: int) -> list[str]:
        """`count` new tokens issued at `issued`."""
        key, sep = self._key, self._sep
        tokens = []
        for _ in range(count):
            value = f"{campaign}.{issued:.3f}.{_NONCE_PREFIX}{next(_nonces):x}".encode("ascii")
            # What `Signer.sign(value)` returns (its keyed BLAKE2b, itsdangerous' unpadded
            # URL-safe base64), made inline: no per-call coercions, key derivation or
            # calls through its layers (test_tokens checks the two agree).
            signature = hashlib.blake2b(value, key=key, digest_size=20).digest()
            tokens.append((value + sep + urlsafe_b64encode(signature).rstrip(b"=")).decode("ascii"))
        return tokens

    def issue_confirming(self, campaign: str, *, issued_at: float) -> str:
        """A new token for the form shown again to confirm a submission sent sooner
        than a person fills it in: the first page view's time, marked so that a second
        such submission is known for one (`Stamp.confirming`)."""
        value = f"{campaign}.{issued_at:.3f}.{_NONCE_PREFIX}{next(_nonces):x}{_CONFIRMING}"
        # Rare: the signer's own way, which `issue` shortcuts on every page view.
        return self._signer.sign(value).decode("ascii")

    async def claim(self, token: str, phone: str) -> bool:
        """Use a checked token for the accepted signup of `phone` (E.164 digits).

        True for the token's first signup; False when it signed up this same number
        already (the button pressed twice). Raises UsedFormToken when it signed up
        another number. Atomic across requests and replicas: of any number of requests
        with one token, exactly one gets True."""
        # The signature names the token: the payload it signs differs in every token.
        tag = token.rpartition(".")[2]
        try:
            first = await self._used.incr(f"form-token:{tag}", self._max_age) == 1
            same = await self._used.incr(f"form-token:{tag}:{phone}", self._max_age) > 1
        except StorageError:
            # Redis is down: as with the limits, a person's signup matters more.
            logger.error("used form tokens unavailable (shared counters unreachable): token not checked for reuse")
            return True
        if first:
            return True
        if same:
            return False
        raise UsedFormToken("form token already used for another number")

    def _unsign(self, token: str) -> bytes:
        try:
            return self._signer.unsign(token)
        except BadSignature:
            return self._legacy.unsign(token)

    def check(self, token: str | None, campaign: str) -> float:
        """The issue time (epoch seconds) of a valid token for `campaign` (its key)."""
        return self.read(token, campaign).issued

    def read(self, token: str | None, campaign: str) -> Stamp:
        """What a valid token for `campaign` (its key) says; raises InvalidFormToken or
        ExpiredFormToken."""
        if not token or len(token) > 512:
            raise InvalidFormToken("missing form token")
        try:
            payload = self._unsign(token).decode("ascii")
        except (BadSignature, UnicodeError):
            raise InvalidFormToken("form token does not verify") from None
        # Keywords have no dots, so the first dot ends the keyword; the nonce (none in a
        # token issued before nonces) follows the issue time's decimals.
        keyword, _, stamp = payload.partition(".")
        confirming = stamp.endswith(_CONFIRMING)
        if confirming:
            stamp = stamp.removesuffix(_CONFIRMING)
        if stamp.count(".") == 2:
            stamp = stamp.rpartition(".")[0]
        if keyword != campaign:
            raise InvalidFormToken("form token is for another page")
        try:
            issued = float(stamp)
        except ValueError:
            raise InvalidFormToken("form token has no issue time") from None
        now = self.clock()
        if not issued <= now + 60:
            raise InvalidFormToken("form token has no believable issue time")
        # The age counts from the first page view, which the signed payload carries.
        if now - issued > self._max_age:
            raise ExpiredFormToken("form token expired")
        return Stamp(issued, confirming)
