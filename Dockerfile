# msgpipe image for docker-compose.yml (docs/operations.md): one image, the role is the command
# (`run --role ingest`, `transform`, `sink`, `query`, `migrate`, `simulate`).
# chDB (the embedded store) ships a linux-x64 engine only (ADR 0007), hence linux/amd64.

FROM --platform=linux/amd64 node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# `prepare` compiles dist/, so the sources must be there before `npm ci`.
COPY tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY src ./src
COPY migrations ./migrations
COPY proto ./proto
RUN npm ci && npm prune --omit=dev

FROM --platform=linux/amd64 node:20-bookworm-slim
ENV NODE_ENV=production \
    MSGPIPE_CONFIG=/etc/msgpipe/msgpipe.yaml
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/bin ./bin
COPY --from=build /app/migrations ./migrations
COPY --from=build /app/proto ./proto
RUN mkdir -p /var/lib/msgpipe && chown node:node /var/lib/msgpipe
USER node
# 9464: /metrics, /healthz, /readyz (config `metrics`); 9002: the query API (config `query`).
EXPOSE 9464 9002
# SIGTERM drains in-flight batches (up to 30 s); compose gives 40 s before SIGKILL.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/app/bin/msgpipe.js"]
CMD ["run"]
