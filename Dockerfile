# syntax=docker/dockerfile:1
# omnigate: multi-stage build, non-root runtime, HEALTHCHECK on /healthz.
# The entry command is `node dist/cli.js start`; test/core/embedded.test.ts runs exactly that
# as a plain process (no Docker engine on the build machines).
#
# Without the WhatsApp Web connector (no Baileys, hence no GPL-3.0 libsignal in the image):
#   docker build --build-arg WHATSAPP_WEB=false -t omnigate .
# The WhatsApp Cloud API connector ("whatsapp-cloud") is unaffected; see README, "Licenses".

# The embedded default's nats-server: the official image's static binary, pinned by version.
# README's compose example runs the same version as the NATS service.
FROM nats:2.14.7-alpine AS nats

FROM node:24-bookworm-slim AS build
ARG WHATSAPP_WEB=true
WORKDIR /app
COPY package.json package-lock.json ./
# Everything (optional Baileys too) for the compile: dist/ is the same either way, and the
# registry loads the WhatsApp Web connector only when one is configured.
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY scripts/copy-assets.mjs ./scripts/
# The SBOM is taken before the prune (npm sbom refuses a tree whose devDependencies are gone),
# omitting what the prune removes, so it describes exactly the node_modules the image ships.
RUN npx tsc -p tsconfig.build.json && node scripts/copy-assets.mjs \
 && if [ "$WHATSAPP_WEB" = "false" ]; then omit="--omit=optional"; else omit=""; fi \
 && npm run sbom -- $omit \
 && npm prune --omit=dev $omit --no-audit --no-fund

FROM node:24-bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
# nats-server makes the embedded default work inside the container too (single-container
# deployments); with nats.url set it is simply not started.
COPY --from=nats /usr/local/bin/nats-server /usr/local/bin/nats-server
WORKDIR /app
ENV NODE_ENV=production \
    OMNIGATE_CONFIG=/app/config/omnigate.yaml \
    OMNIGATE_NATS__EMBEDDED__DATA_DIR=/data
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/sbom.cdx.json ./sbom.cdx.json
COPY package.json THIRD_PARTY_NOTICES.md ./
COPY config/omnigate.example.yaml ./config/omnigate.yaml
RUN nats-server --version \
 && mkdir -p /data && chown -R node:node /data && chmod 700 /data
USER node
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.OMNIGATE_HTTP__PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--"]
# A young generation of 32 MB semi-spaces (Node's default is 16): the router allocates a few KB of
# JSON per routed message with hundreds in flight, and scavenges were a fifth of its CPU; this
# cut router CPU per event by about 8 % in the bench (BENCHMARKS.md, router section) for up to
# ~50 MB more RSS under load.
CMD ["node", "--max-semi-space-size=32", "dist/cli.js", "start"]
