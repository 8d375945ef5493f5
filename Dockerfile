# model-router sidecar image. Same install step as the README: scripts/setup.sh.
FROM python:3.12.8-slim-bookworm

RUN useradd --create-home --uid 10001 router
WORKDIR /app
COPY pyproject.toml requirements.lock README.md .python-version ./
COPY scripts ./scripts
COPY sidecar ./sidecar
COPY rules.yaml ./rules.yaml
RUN ./scripts/setup.sh && chown -R router /app

USER router
ENV MODEL_ROUTER_HOME=/var/lib/model-router \
    MODEL_ROUTER_RULES=/etc/model-router/rules.yaml
# The CA (a secret volume in production) and the rules (a ConfigMap) are mounted here.
VOLUME ["/var/lib/model-router"]
EXPOSE 8080 8081 8443
ENTRYPOINT ["/app/.venv/bin/model-router"]
CMD ["run", "--listen-host", "0.0.0.0", "--rules", "/etc/model-router/rules.yaml"]
