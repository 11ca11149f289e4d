"""Reading the HTML a visitor gets: `Page(html)`, just enough of a DOM to ask what a
visitor and a screen reader would find."""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""


class Page(HTMLParser):
    """Just enough of a DOM to ask what a visitor and a screen reader would find."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.html = html
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.elements.append(element)
        if tag not in _VOID:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index].tag == tag:
                del self._open[index:]
                break

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.text += data

    def by_id(self, element_id: str) -> Element:
        found = [e for e in self.elements if e.attrs.get("id") == element_id]
        assert len(found) == 1, f"expected one element with id={element_id!r}, found {len(found)}"
        return found[0]

    def find_all(self, tag: str, **attrs: str) -> list[Element]:
        return [
            e
            for e in self.elements
            if e.tag == tag
            and all(e.attrs.get(name.rstrip("_").replace("_", "-")) == value for name, value in attrs.items())
        ]

    def find(self, tag: str, **attrs: str) -> Element:
        found = self.find_all(tag, **attrs)
        assert len(found) == 1, f"expected one <{tag}> with {attrs}, found {len(found)}"
        return found[0]

    def urls(self) -> list[str]:
        return [e.attrs[name] for e in self.elements for name in ("href", "src", "action") if name in e.attrs]

    def alert_text(self) -> str:
        return " ".join(" ".join(e.text.split()) for e in self.elements if e.attrs.get("role") == "alert")

    def described_by(self, element: Element) -> str:
        """What a screen reader announces with `element`: the text of every element its
        aria-describedby names (each id must exist exactly once)."""
        ids = element.attrs.get("aria-describedby", "").split()
        return " ".join(" ".join(self.by_id(i).text.split()) for i in ids)

    def phone_input(self) -> Element:
        return self.find("input", name="phone")
