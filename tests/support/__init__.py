"""What the tests (and bench/) share: one place, so the next test starts from it.

    campaigns   the campaigns files (CAMPAIGNS_TOML, CAMPAIGNS) and `write_campaigns`
    servers     the app and the fake ProTexting as real uvicorn servers on loopback;
                `wait_until` / `happens`: wait on what a server does, never on a timer
    page        `Page`: the HTML a visitor gets, as a tiny DOM
    visitor     `Visitor` / `AsyncVisitor`: open a signup page and send its form
    records     what was kept: `optin status`/`export`, the fake's calls, `settled`
    clocks      `Clock`: time that passes only when a test says so
    wheel       the wheel built from this checkout, installed into a fresh venv

`campaigns` and `servers` import no pytest: bench/ can use them as they are.
"""
