"""Optional CAPTCHA per campaign: Cloudflare Turnstile or hCaptcha, checked server-side.

Off unless a campaign configures one. The widget is the provider's own script, so a
campaign that turns it on accepts that third party on its page (and the page's CSP
names it); the answer is verified from the server with the campaign's secret.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

from .problems import Problem, Refusal

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    verify_url: str
    script_url: str
    widget_class: str
    response_field: str
    origins: tuple[str, ...]


PROVIDERS = {
    "turnstile": Provider(
        name="turnstile",
        verify_url="https://challenges.cloudflare.com/turnstile/v0/siteverify",
        script_url="https://challenges.cloudflare.com/turnstile/v0/api.js",
        widget_class="cf-turnstile",
        response_field="cf-turnstile-response",
        origins=("https://challenges.cloudflare.com",),
    ),
    "hcaptcha": Provider(
        name="hcaptcha",
        verify_url="https://api.hcaptcha.com/siteverify",
        script_url="https://js.hcaptcha.com/1/api.js",
        widget_class="h-captcha",
        response_field="h-captcha-response",
        origins=("https://hcaptcha.com", "https://*.hcaptcha.com"),
    ),
}


class CaptchaFailed(Refusal):
    """The person did not pass (or we could not check) the CAPTCHA."""

    problem = Problem("captcha", "captcha.failed")


class CaptchaVerifier:
    """Verifies answers with the provider, through one `httpx.AsyncClient` over
    `transport` (the network when None).

    The client is made at the first answer to check, not before: most deployments have
    no campaign with a CAPTCHA, and an idle client with its TLS context and connection
    pool holds about 2 MB of the process's memory for nothing (make bench's RSS). A
    campaign that gains a CAPTCHA on a reload gets its client then."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None, *, timeout: float = 5.0) -> None:
        self._transport = transport
        self._timeout = timeout
        self._opened: httpx.AsyncClient | None = None

    @property
    def _client(self) -> httpx.AsyncClient:
        if self._opened is None:
            self._opened = httpx.AsyncClient(transport=self._transport, timeout=httpx.Timeout(self._timeout))
        return self._opened

    async def verify(self, provider: Provider, *, secret: str, response: str | None, remote_ip: str | None) -> None:
        if not response or len(response) > 4096:
            raise CaptchaFailed("no CAPTCHA answer")
        data = {"secret": secret, "response": response}
        if remote_ip:
            data["remoteip"] = remote_ip
        try:
            reply = await self._client.post(provider.verify_url, data=data)
            verdict = reply.json()
        except (httpx.HTTPError, ValueError):
            # Failing closed: an unverifiable answer is not a pass. The form says so
            # and keeps the number, so the person can simply try again.
            logger.warning("%s verification unavailable", provider.name)
            raise CaptchaFailed("CAPTCHA could not be checked") from None
        if not isinstance(verdict, dict) or verdict.get("success") is not True:
            raise CaptchaFailed("CAPTCHA answer refused")

    async def aclose(self) -> None:
        if self._opened is not None:
            await self._opened.aclose()
