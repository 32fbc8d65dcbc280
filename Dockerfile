# syntax=docker/dockerfile:1
# Build: compile TypeScript, then keep production dependencies only.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# No install scripts: the build needs neither the demo's embedded Postgres nor esbuild's binary check.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json .node-version ./
COPY scripts ./scripts
COPY src ./src
COPY migrations ./migrations
RUN npm run build && npm prune --omit=dev --ignore-scripts

# Run: Node 24 LTS, non-root, no build tools.
FROM node:24-bookworm-slim
ENV NODE_ENV=production
# Node 24 grows the young generation to 64 MB semi-spaces under the send's allocation rate; 8 MB keeps the job's
# peak RSS about 40-60 MB lower (20 MB lower than 16 MB, Node 22's size) for no measurable time (docs/BENCHMARKS.md).
ENV NODE_OPTIONS=--max-semi-space-size=8
# glibc raises its mmap threshold to the size of each large block freed, so the send's megabyte buffers come to be
# kept in its heap once freed; a fixed threshold returns them to the system (docs/BENCHMARKS.md: peak RSS).
ENV MALLOC_MMAP_THRESHOLD_=65536
WORKDIR /app
COPY --from=build --chown=root:root /app/node_modules ./node_modules
COPY --from=build --chown=root:root /app/dist ./dist
COPY --chown=root:root package.json ./
COPY --chown=root:root contract ./contract
USER node
ENTRYPOINT ["node", "dist/src/cli/main.js"]
CMD ["schedule"]
