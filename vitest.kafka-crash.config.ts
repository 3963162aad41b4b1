import { defineConfig } from 'vitest/config';

// `npm run test:kafka-crash`: the kill -9 + broker restart scenario of the distributed mode
// (several minutes on a loaded 2-core machine, so it is not part of `npm test`).
export default defineConfig({
  test: { include: ['test/integration/kafka/crash-scenario.ts'], testTimeout: 900_000, hookTimeout: 240_000 },
});
