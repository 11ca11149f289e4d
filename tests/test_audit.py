"""What an audit (Lighthouse, `make audit`; a search engine) reads besides the page:
robots.txt, answered and readable from the page, and static files a browser keeps."""

from __future__ import annotations

from .conftest import MakeClient


def test_robots_txt_answers_and_keeps_crawlers_to_the_pages(make_client: MakeClient) -> None:
    robots = make_client().get("/robots.txt")

    assert robots.status_code == 200 and robots.headers["content-type"].startswith("text/plain")
    lines = robots.text.splitlines()
    assert lines[0] == "User-agent: *" and "Disallow: /api/" in lines
    assert not any(line.strip() in ("Disallow: /", "Disallow: /join") for line in lines)


def test_the_page_may_read_its_own_robots_txt_and_still_runs_no_script(make_client: MakeClient) -> None:
    # Lighthouse reads robots.txt from inside the page: the CSP must let it, same origin only.
    policy = make_client().get("/join").headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["connect-src"] == "'self'" and "script-src" not in directives
    assert directives["default-src"] == "'none'"


def test_static_files_are_kept_by_browsers(make_client: MakeClient) -> None:
    css = make_client().get("/static/style.css")

    assert css.status_code == 200
    assert css.headers["cache-control"] == "public, max-age=86400" and css.headers["etag"]
