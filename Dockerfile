# syntax=docker/dockerfile:1
#
# The optin-pages image (README, "Deploying"): the wheel is built in a
# stage of its own; the image installs that wheel, and nothing of the source tree, into
# a slim Python that has no compilers, and runs `optin serve` as a user that owns
# nothing but its data directory. Every setting comes from the environment.
#
#   docker build -t optin-pages .
#   docker run -p 8000:8000 -v "$PWD/campaigns.toml:/etc/optin/campaigns.toml:ro" optin-pages
#
# tests/test_container.py does what this file does, without a Docker engine: it builds
# the wheel, installs it into a fresh venv and runs the CMD and the HEALTHCHECK below,
# read from this file, with the ENV below.

FROM python:3.11-slim AS build

WORKDIR /src
# What the wheel is made of, and nothing else: pyproject.toml names the README as the
# long description; app/templates and app/static are links to the top-level folders.
COPY pyproject.toml README.md ./
COPY app/ app/
COPY templates/ templates/
COPY static/ static/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .


FROM python:3.11-slim

# pip as root, once, at build time: neither its warning about it nor a check for a
# newer pip belongs in the build log. No .pyc written at run time: the install
# compiled them, and the service's user may not write there anyway.
ENV PIP_ROOT_USER_ACTION=ignore \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# The service's user, with a fixed id an operator can give a volume or a file to. It
# writes only /var/lib/optin: the SQLite database of a single container lives there
# (mount a volume to keep it), and commands such as `optin export -o FILE` write there.
RUN useradd --system --no-log-init --user-group --uid 10001 --home-dir /var/lib/optin optin \
    && mkdir -p /var/lib/optin /etc/optin \
    && chown optin:optin /var/lib/optin

# The wheel from the build stage, with its dependencies from the package index as
# binary wheels only: this stage has no compiler, and a dependency that would need one
# fails the build here rather than at run time. Mounted, not copied, so the wheel file
# itself stays out of the image's layers.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --only-binary=:all: /wheels/optin_pages-*.whl

# The image's own defaults; every other setting keeps the default README, "Settings",
# gives it, and any of these can be set again with `docker run -e` or compose's
# `environment`/`env_file`. The campaigns file is not in the image: mount yours at
# /etc/optin/campaigns.toml. Secrets (PROTEXTING_ACCESS_TOKEN, OPTIN_SECRET_KEY) are
# never set here.
ENV OPTIN_HOST=0.0.0.0 \
    OPTIN_PORT=8000 \
    OPTIN_WORKERS=1 \
    OPTIN_CAMPAIGNS=/etc/optin/campaigns.toml \
    OPTIN_DATABASE_URL=sqlite+aiosqlite:////var/lib/optin/optin.db

WORKDIR /var/lib/optin
USER 10001:10001
EXPOSE 8000

# Liveness: /healthz on the port the service listens on. slim has no curl, so Python's
# urllib asks, past any proxy set in the environment; an answer other than 2xx, or none
# within the timeout, is an exception and so a non-zero exit.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:%s/healthz' % os.environ.get('OPTIN_PORT', '8000'), timeout=4)"]

# `optin` is PID 1 itself (exec form, no shell in between), so `docker stop`'s SIGTERM
# reaches uvicorn, which finishes the requests under way and the lifespan's shutdown
# (README, "Shutdown") and exits 0. The schema is brought up to date at start-up
# (README, "Migrations"); `docker run IMAGE migrate` does only that. One uvicorn
# process: scale with containers, or with OPTIN_WORKERS (which needs PostgreSQL and
# Redis, README, "Scale-out").
ENTRYPOINT ["optin"]
CMD ["serve"]
