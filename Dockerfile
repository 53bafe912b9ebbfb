# voltrisk services image (worker, warehouse sink, simulator, dashboard).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 VOLTRISK_HOME=/var/lib/voltrisk
WORKDIR /app
COPY pyproject.toml README.md ./
COPY voltrisk ./voltrisk
COPY stream ./stream
COPY warehouse ./warehouse
COPY pricing ./pricing
COPY fraudring ./fraudring
COPY dashboard ./dashboard
COPY simulators ./simulators
COPY contracts ./contracts
RUN pip install --no-cache-dir . && useradd --system --home /var/lib/voltrisk voltrisk \
    && mkdir -p /var/lib/voltrisk/models && chown -R voltrisk /var/lib/voltrisk
USER voltrisk
ENTRYPOINT ["voltrisk"]
CMD ["--help"]
