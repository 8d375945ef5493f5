# model-router sidecar image: the official Python slim base, non-root (UID 10001), and the same
# install step as the README (scripts/setup.sh).
#
#   docker build -t model-router:0.1.0 .
#   docker run -p 8080:8080 -p 9464:9464 -v model-router-ca:/var/lib/model-router model-router:0.1.0
#
# - Rules: /etc/model-router/rules.yaml (the repo's rules.yaml by default). Mount a ConfigMap or a
#   directory over /etc/model-router to change them; the file is hot-reloaded.
# - CA: /var/lib/model-router ($MODEL_ROUTER_HOME), a volume. It is created on the first start
#   (private key 0600), or bring your own by putting its key and certificate in mitmproxy-ca.pem.
# - /var/lib/model-router-ca: an empty directory owned by the sidecar user, where a one-shot
#   container can export the public CA files for apps (deploy/docker-compose.yml does).
# - iptables: for the Kubernetes init container that redirects a pod's outbound :443 to the
#   transparent listener (deploy/kubernetes/); the sidecar itself never runs it.
#
# Base image: python:3.12.14-slim-bookworm, pinned by the digest of its multi-arch index.
FROM python:3.12.14-slim-bookworm@sha256:b64e9d3a71eddaa1b3f80c04abf292b3139e3b7c4dd272d19c31dc1f91194d1b

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends iptables=1.8.9-2 \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --gid 10001 router \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/model-router \
        --shell /usr/sbin/nologin --no-log-init router \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/model-router \
    && install -d -o 10001 -g 10001 -m 0755 /var/lib/model-router-ca

# Code and virtualenv stay root-owned: the sidecar user can run them, not change them.
WORKDIR /app
COPY pyproject.toml requirements.lock README.md .python-version ./
COPY scripts ./scripts
COPY sidecar ./sidecar
RUN ./scripts/setup.sh
COPY rules.yaml /etc/model-router/rules.yaml

USER 10001:10001
ENV PATH=/app/.venv/bin:$PATH \
    MODEL_ROUTER_HOME=/var/lib/model-router \
    MODEL_ROUTER_RULES=/etc/model-router/rules.yaml
VOLUME ["/var/lib/model-router"]

# explicit proxy (HTTPS_PROXY), base URL (OPENAI_BASE_URL), transparent (iptables), metrics
EXPOSE 8080 8081 8443 9464

# SIGTERM drains: calls in flight get --grace-period (default 20 s) to finish, so give the
# container more than that to stop (docker stop -t 30, compose stop_grace_period: 30s).
STOPSIGNAL SIGTERM

# /healthz on the metrics listener; no proxy, whatever the environment says (no curl in slim).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/app/.venv/bin/python", "-c", "import urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:9464/healthz', timeout=2)"]

ENTRYPOINT ["/app/.venv/bin/model-router"]
CMD ["run", "--listen-host", "0.0.0.0", "--metrics-host", "0.0.0.0", "--transparent-port", "8443"]
