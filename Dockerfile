# syntax=docker/dockerfile:1
ARG PYTHON_VERSION=3.11

# Build: a virtual environment from the same hashed lock the tests and CI install from.
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /build
COPY requirements.lock ./
RUN python -m venv /venv \
    && /venv/bin/pip install --require-hashes --no-deps -r requirements.lock \
    # The lock also pins the test and lint tools; the running bot needs none of them.
    && /venv/bin/pip uninstall --yes pytest pytest-asyncio pytest-timeout ruff mypy

# Run: the code, the venv, a non-root user, the ledger on a volume.
FROM python:${PYTHON_VERSION}-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/venv/bin:$PATH \
    DATABASE_URL=sqlite:////data/bot.db
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin bot \
    && mkdir -p /data \
    && chown bot /data
COPY --from=build /venv /venv
WORKDIR /app
COPY bot ./bot
COPY cogs ./cogs
COPY providers ./providers
# The gettext catalogs are compiled here from their .po sources (compiled ones are not kept in git).
RUN pybabel --quiet compile --domain bot --directory bot/i18n/locales --statistics
USER bot
VOLUME ["/data"]
# 8080: health and metrics (keep private); 8090: the callback listener (put a reverse proxy with TLS in front).
EXPOSE 8080 8090
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["python", "-m", "bot", "health"]
STOPSIGNAL SIGTERM
CMD ["python", "-m", "bot"]
