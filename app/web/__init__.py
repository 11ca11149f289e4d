"""The edge: HTTP in, HTTP out. Only this package (and `app.main`, which declares the
app) imports Starlette and FastAPI; the domain it calls knows nothing of requests.

    pages.py     the campaign pages: prerendered GET, the form's POST, thanks, /healthz
    api.py       the JSON API
    visits.py    a request read into a `Visit`; the per-address count of submissions
    errors.py    domain errors to HTTP answers, pages or JSON (`json_errors`)
    messages.py  the words a visitor reads for each problem code
    security.py  the request's stated origin, the security headers, the body-size cap
    forms.py     reading a posted form strictly
    deps.py      the endpoints' `Annotated` dependencies
    state.py     `app.state`, as the lifespan fills it
    head.py      HEAD on the FastAPI routes
    health.py    /readyz
    metrics.py   /metrics
    request_ids.py  the request ids of JSON logs
"""
