# syntax=docker/dockerfile:1.7
# One image, run as the web application (default) or as the timer worker:
#   docker run IMAGE                       -> gunicorn serving pages and the API on :8000
#   docker run IMAGE frontdoor worker      -> fires timers (run one or more beside the web)
# Configure with FRONTDOOR_DATABASE_URL (PostgreSQL in production) and FRONTDOOR_SECRET_KEY.

# --- Front-end assets, built from npm (package-lock.json pins them) -----------------------------
FROM node:20-bookworm-slim AS assets
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/assets ./web/assets
RUN node web/assets/build.mjs

# --- Python dependencies, built into a virtual environment --------------------------------------
FROM python:3.11-slim-bookworm AS python
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md ./
COPY engine ./engine
COPY web ./web
COPY adapters ./adapters
COPY processes ./processes
RUN pip install .

# --- The image that runs ------------------------------------------------------------------------
FROM python:3.11-slim-bookworm
# libpq is not needed (psycopg[binary] bundles it); tini reaps children and forwards signals.
# WeasyPrint (letters as PDF) needs Pango and HarfBuzz's subsetter, and a font to set text in.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
      libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin frontdoor \
 && mkdir -p /app/instance && chown frontdoor /app/instance
COPY --from=python /opt/venv /opt/venv
WORKDIR /app
COPY gunicorn.conf.py ./
COPY --from=assets /build/web/static/vendor /opt/venv/lib/python3.11/site-packages/web/static/vendor
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    FRONTDOOR_BIND=0.0.0.0:8000
USER frontdoor
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"
ENTRYPOINT ["tini", "--"]
CMD ["gunicorn", "-c", "gunicorn.conf.py", "web:create_app()"]
