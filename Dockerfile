# NitroProxy in a container: a slim Python base, the package and its runtime dependencies in
# a virtualenv, run as an unprivileged user, data in the /data volume.
#
#   docker build -t nitroproxy .
#   docker run -p 8080:8080 -v nitroproxy-data:/data \
#     -e OPENAI_API_KEY -e NITROPROXY_ADMIN_KEY -e NITROPROXY_DATA_KEY nitroproxy
#
# Configuration: the image's /etc/nitroproxy/nitroproxy.yaml (deploy/container.yaml) reads
# its settings from the environment; to use your own file, mount it there, or mount it
# anywhere and set NITROPROXY_CONFIG. A nitroproxy.env beside the file is read as well.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml setup.cfg README.md ./
COPY config ./config
COPY nitroproxy ./nitroproxy
RUN python -m venv /opt/nitroproxy \
    && /opt/nitroproxy/bin/pip install --no-cache-dir --no-compile . \
    && /opt/nitroproxy/bin/nitroproxy --version

FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin nitroproxy \
    && mkdir -p /data /etc/nitroproxy \
    && chown nitroproxy:nitroproxy /data \
    && chmod 0700 /data
COPY --from=build /opt/nitroproxy /opt/nitroproxy
COPY deploy/container.yaml /etc/nitroproxy/nitroproxy.yaml
ENV PATH=/opt/nitroproxy/bin:$PATH \
    NITROPROXY_CONFIG=/etc/nitroproxy/nitroproxy.yaml \
    NITROPROXY_DATA_DIR=/data \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
# Stdlib only: the slim image has no curl, and the proxy answers /healthz without a key.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["nitroproxy"]
CMD ["serve"]
