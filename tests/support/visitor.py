"""A person's browser on a signup page: open it, type a number, send the form.

    Visitor(client, "/join").submit("(201) 555-0123")    # 303 to the thanks page
    Visitor(client).open()                               # just the form token
    await AsyncVisitor(async_client).submit(phone)

The form is filled in from the page itself: every named input it holds (the hidden form
token, the empty honeypot), the number typed in, posted to the form's `action`. Any
`httpx.Client` works, Starlette's TestClient included; the async one takes an
`httpx.AsyncClient`.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from .page import Page

PHONE = "(201) 555-0123"


def form_fields(html: str, phone: str | None = PHONE, **fields: str) -> dict[str, str]:
    """What a browser posts from the page's form: its named inputs with `phone` typed
    in (None: the phone field left out) and `fields` filled in on top."""
    page = Page(html)
    page.find("form")
    data = {e.attrs["name"]: e.attrs.get("value", "") for e in page.find_all("input") if e.attrs.get("name")}
    if phone is None:
        data.pop("phone", None)
    else:
        data["phone"] = phone
    return data | fields


def form_action(html: str) -> str:
    return Page(html).find("form").attrs["action"]


def token_of(html: str) -> str:
    """The form token a page carries."""
    (field,) = Page(html).find_all("input", name="form_token")
    assert field.attrs.get("value"), "the form carries a token"
    return field.attrs["value"]


class Visitor:
    """A browser on the signup page at `path`; each `submit` opens the page first."""

    def __init__(self, client: httpx.Client, path: str = "/join") -> None:
        self.client = client
        self.path = path

    def page(self) -> str:
        response = self.client.get(self.path)
        assert response.status_code == 200, (self.path, response.status_code)
        return response.text

    def open(self) -> str:
        """Open the page; the form token it was given."""
        return token_of(self.page())

    def submit(
        self,
        phone: str | None = PHONE,
        *,
        headers: Mapping[str, str] | None = None,
        follow_redirects: bool = False,
        **fields: str,
    ) -> httpx.Response:
        """Open the page, type `phone` in (None: leave it out), fill `fields` in, send."""
        html = self.page()
        return self.client.post(
            form_action(html),
            data=form_fields(html, phone, **fields),
            headers=dict(headers or {}),
            follow_redirects=follow_redirects,
        )


class AsyncVisitor:
    """`Visitor` for an `httpx.AsyncClient`."""

    def __init__(self, client: httpx.AsyncClient, path: str = "/join") -> None:
        self.client = client
        self.path = path

    async def page(self) -> str:
        response = await self.client.get(self.path)
        assert response.status_code == 200, (self.path, response.status_code)
        return response.text

    async def submit(
        self, phone: str | None = PHONE, *, headers: Mapping[str, str] | None = None, **fields: str
    ) -> httpx.Response:
        html = await self.page()
        return await self.client.post(
            form_action(html), data=form_fields(html, phone, **fields), headers=dict(headers or {})
        )


def submit(client: httpx.Client, path: str, phone: str | None, *, follow_redirects: bool = False) -> httpx.Response:
    """Fill the form at `path` in as a person's browser does (see `Visitor.submit`)."""
    return Visitor(client, path).submit(phone, follow_redirects=follow_redirects)


def without_number(location: str) -> str:
    """A thanks page's address without its masked number (`to`, signed: app.web.masked),
    the rest as it is: what a test compares the redirect with."""
    path, _, query = location.partition("?")
    kept = [pair for pair in query.split("&") if pair and not pair.startswith("to=")]
    return path + ("?" + "&".join(kept) if kept else "")
