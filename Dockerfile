# One image for every process of the orders system; the command picks the process:
#   orders-migrate | orders-api | exchange-listener | tracker | exchange-sim   (default: orders-api)
# Two stages on the same Python base: the build stage installs the project and its pinned
# dependencies into a virtualenv; the runtime stage gets only that virtualenv and the migrations,
# runs as a non-root user, and starts the console script directly (exec form: PID 1 is the
# service itself, so `docker stop`'s SIGTERM reaches aiohttp's run_app and it shuts down cleanly).
# No secrets here: DATABASE_URL and friends come from the environment at run time.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
# Dependencies first, in their own layer: it is rebuilt only when the pins change.
COPY constraints.txt pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && /opt/venv/bin/pip install -c constraints.txt -r requirements.txt
COPY README.md ./
COPY orders_core/ orders_core/
COPY orders_api/ orders_api/
COPY exchange_listener/ exchange_listener/
COPY exchange_sim/ exchange_sim/
COPY tracker/ tracker/
COPY orders_ops/ orders_ops/
# A regular (not editable) install: the runtime stage needs no source tree.
RUN /opt/venv/bin/pip install --no-deps -c constraints.txt .

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 orders \
    && useradd --system --uid 10001 --gid orders --no-create-home --home-dir /app orders
COPY --from=build /opt/venv /opt/venv
COPY migrations/ /app/migrations/
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MIGRATIONS_DIR=/app/migrations \
    BIND_HOST=0.0.0.0
WORKDIR /app
USER 10001:10001
# orders-api, exchange-listener, tracker, exchange-sim (defaults; each is a setting, SPEC §6).
EXPOSE 8000 8001 8002 8500
# Checks whichever of our services PID 1 runs, on the port its settings give (no curl needed).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["orders-healthcheck"]
CMD ["orders-api"]
