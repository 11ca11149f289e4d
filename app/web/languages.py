"""The visitor's language at the edge: which prerendered page a view gets, and the
catalog's words in the templates.

A page view of a campaign in one language picks nothing (`Pages.multilingual` is
false). Otherwise `?lang=` when it names one of the campaign's languages, else the
Accept-Language header among them (negotiated once per distinct header value,
app.i18n.negotiate), else the campaign's default. The other pages (thanks, errors)
choose the same way from a Request (`request_language`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup
from starlette.requests import Request

from ..i18n import LANGUAGES, NAMES, negotiate, translations
from ..site import Pages, PrerenderedPage

LANG_PARAM = "lang"
_LANG_QUERY = LANG_PARAM.encode() + b"="


def pick(pages: Pages, query_string: bytes, headers: Iterable[tuple[bytes, bytes]]) -> PrerenderedPage:
    """The page of the visitor's language among `pages` (see the module's docstring)."""
    # find, not `in`: `bytes in bytes` first tries the operand as an int, so it makes,
    # formats and clears a TypeError on every page view (with the page's single join,
    # app.site, about 4,000 of a view's 256,000 instructions: README, Performance).
    if query_string.find(_LANG_QUERY) != -1:
        found = pages.by_language.get(_lang_param(query_string))
        if found is not None:
            return found
    for name, value in headers:
        if name == b"accept-language":
            return pages.by_language.get(_negotiated(value, pages.languages) or "", pages.default)
    return pages.default


@functools.lru_cache(maxsize=256)
def _lang_param(query_string: bytes) -> str:
    for name, value in parse_qsl(query_string.decode("latin-1")):
        if name == LANG_PARAM:
            return value
    return ""


@functools.lru_cache(maxsize=256)
def _negotiated(header: bytes, offered: tuple[str, ...]) -> str | None:
    # Keyed by the raw bytes: a repeated header costs one lookup, not a decode too.
    return negotiate(header.decode("latin-1"), offered)


def request_language(request: Request, offered: Sequence[str] = LANGUAGES, default: str | None = None) -> str:
    """The language of a page other than the page view: `?lang=`, else Accept-Language,
    among `offered` (default first), else `default` (the first offered when None)."""
    asked = request.query_params.get(LANG_PARAM)
    if asked in offered:
        return str(asked)
    header = request.headers.get("accept-language")
    chosen = negotiate(header, tuple(offered)) if header else None
    return chosen or default or offered[0]


@functools.cache
def words(language: str) -> Mapping[str, Any]:
    """What a template renders its words with in `language`: gettext and ngettext as
    Jinja's i18n extension calls them (newstyle: the template's variables formatted in,
    escaped), passed in each render's context so that pages in two languages can be
    rendered side by side with one environment."""
    catalog = translations(language)

    @pass_context
    def gettext(context: Context, message: str, /, **variables: Any) -> str:
        text: str = catalog.gettext(message)
        if context.eval_ctx.autoescape:
            text = Markup(text)
        return text % variables

    @pass_context
    def ngettext(context: Context, singular: str, plural: str, num: int, /, **variables: Any) -> str:
        variables.setdefault("num", num)
        text: str = catalog.ngettext(singular, plural, num)
        if context.eval_ctx.autoescape:
            text = Markup(text)
        return text % variables

    return {"gettext": gettext, "_": gettext, "ngettext": ngettext, "language": language, "language_names": NAMES}
