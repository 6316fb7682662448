# syntax=docker/dockerfile:1
# omnigate: multi-stage build, non-root runtime, HEALTHCHECK on /healthz.
# The entry command is `node dist/cli.js start`; test/core/embedded.test.ts runs exactly that
# as a plain process (no Docker engine on the build machines).

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json && npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim AS runtime
# nats-server makes the embedded default work inside the container too (single-container
# deployments); with nats.url set it is simply not started.
RUN apt-get update \
 && apt-get install -y --no-install-recommends nats-server tini \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production \
    OMNIGATE_CONFIG=/app/config/omnigate.yaml \
    OMNIGATE_NATS__EMBEDDED__DATA_DIR=/data
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY config/omnigate.example.yaml ./config/omnigate.yaml
RUN mkdir -p /data && chown -R node:node /data
USER node
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.OMNIGATE_HTTP__PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/cli.js", "start"]
