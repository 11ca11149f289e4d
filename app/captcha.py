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
    """Verifies answers with the provider, around one injected `httpx.AsyncClient`."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

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
        await self._client.aclose()
