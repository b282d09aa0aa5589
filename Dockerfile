# Pitwarden API. In a container, point DATABASE_URL at a real PostgreSQL >= 15 (an owner
# account with CREATEROLE); the embedded server is meant for `make run` and the tests.
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/pitwarden
COPY pyproject.toml README.md ./
COPY core core
COPY compliance compliance
COPY policies policies
COPY audit audit
COPY reports reports
COPY app app
COPY migrations migrations
RUN /opt/pitwarden/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --system --create-home --home-dir /var/lib/pitwarden pitwarden
COPY --from=build /opt/pitwarden /opt/pitwarden
ENV PATH=/opt/pitwarden/bin:$PATH \
    PITWARDEN_HOST=0.0.0.0 \
    PITWARDEN_PORT=8000 \
    PITWARDEN_DATA_DIR=/var/lib/pitwarden
USER pitwarden
WORKDIR /var/lib/pitwarden
EXPOSE 8000
# Liveness, not readiness: an orchestrator restarts an unhealthy container, and a restart does
# not bring a database back. Route traffic by GET /readyz (503 while the database is away,
# migrations are behind or the audit log lags); see README "Probes".
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["pitwarden"]
CMD ["serve"]
