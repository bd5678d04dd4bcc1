# syntax=docker/dockerfile:1
# The Our Cambridge bot in one container: on start it migrates DATABASE_URL, then serves
# POST /api/messages, GET /healthz and GET /readyz on port 3978. See docs/deploy.md.
#
#   docker build -t ourcambridge .
#
# Both stages use the same base image, so the virtual environment's interpreter path
# (/usr/local/bin/python3.11) exists in the runtime stage too.

# --- build: install the dependencies and the project into /opt/venv ----------------------
FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:${PATH}"
WORKDIR /app

# The dependencies first, read from pyproject.toml alone: a code change then reuses this
# layer. The compiled ones ship wheels for CPython 3.11 and the rest are pure Python, so
# no compiler is needed.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# The project, installed in editable mode on purpose: the code stays at /app as in a
# checkout, where `ourcambridge manifest build` finds appmanifest/ beside the packages,
# and the runtime stage copies the same files to the same place.
COPY README.md ./
COPY bot ./bot
COPY dialogs ./dialogs
COPY storage ./storage
COPY cards ./cards
RUN pip install --no-deps -e .

# --- runtime: the virtual environment, the code, a user without privileges -------------
FROM python:3.11-slim-bookworm AS runtime

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=3978 \
    LOG_FORMAT=json \
    PGSSLROOTCERT=/etc/ssl/certs/ca-certificates.crt
# PGSSLROOTCERT: asyncpg verifies the PostgreSQL server's certificate against the system's
# CA bundle when DATABASE_URL asks for ?ssl=verify-full (docs/deploy.md).

# A fixed numeric uid, so platforms that insist on a non-root user can check it. /data is
# the one directory it may write: a SQLite file for a local trial, a built app package.
RUN groupadd --system --gid 10001 ourcambridge \
    && useradd --system --uid 10001 --gid ourcambridge --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin ourcambridge \
    && mkdir /data \
    && chown ourcambridge:ourcambridge /data

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Only what runs: the packages (with the migrations, the programme's data and the card
# templates inside them), the Teams app template and icons, the project's metadata.
COPY pyproject.toml README.md alembic.ini ./
COPY bot ./bot
COPY dialogs ./dialogs
COPY storage ./storage
COPY cards ./cards
COPY appmanifest ./appmanifest
# Compiled now, as root: the code is read-only for the user that runs it.
RUN python -m compileall -q bot dialogs storage cards

USER 10001:10001
EXPOSE 3978

# Python, as the slim image has no curl. Fails on no answer or any status but 2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3978'), timeout=3)"]

# Migrate, then serve. `exec` makes the bot PID 1, so the platform's SIGTERM reaches it and
# it finishes its sends in flight before exiting. Migrations take a PostgreSQL advisory
# lock: replicas starting together run them once.
CMD ["sh", "-c", "ourcambridge db upgrade && exec ourcambridge serve"]
