# syntax=docker/dockerfile:1
# One image for every part of lienthong; the command picks the part:
#   docker run lienthong python -m lienthong serve intake
# Build from the repository root: docker build -t lienthong .

# --- wheels: compiled here so the runtime image carries no compiler ---------------------------
FROM python:3.11-slim-bookworm AS wheels
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared shared
COPY services services
COPY gateway gateway
COPY lienthong lienthong
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- runtime --------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm
# softhsm2: the PKCS#11 token holding signing keys (an HSM's module replaces it in production);
# postgresql-client: pg_dump/pg_restore for the backup job (15, the server's version);
# tzdata: zoneinfo for Vietnam's wall-clock time (deadlines, office hours).
RUN apt-get update \
 && apt-get install -y --no-install-recommends softhsm2 postgresql-client tzdata \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 lienthong \
 && useradd --system --uid 10001 --gid lienthong --home-dir /var/lib/lienthong --shell /usr/sbin/nologin lienthong \
 && mkdir -p /var/lib/lienthong /backups \
 && chown lienthong:lienthong /var/lib/lienthong /backups

COPY --from=wheels /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels lienthong \
 && rm -rf /wheels

# The source tree comes first on sys.path (python -m puts the working folder there): the wheel
# does not carry package data yet (fonts, Alembic templates), which the parts read at run time.
WORKDIR /app
COPY --chown=root:root shared shared
COPY --chown=root:root services services
COPY --chown=root:root gateway gateway
COPY --chown=root:root lienthong lienthong

ENV PYTHONUTF8=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LIENTHONG_HOST=0.0.0.0 \
    LIENTHONG_VAR_DIR=/var/lib/lienthong

USER lienthong
VOLUME ["/var/lib/lienthong"]
EXPOSE 8000 8001 8002 8003 8004 8005
CMD ["python", "-m", "lienthong", "serve", "gateway"]
