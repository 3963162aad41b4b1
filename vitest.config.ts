import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        extends: true,
        test: { name: 'unit', include: ['test/unit/**/*.test.ts'], testTimeout: 20_000 },
      },
      {
        extends: true,
        // The shared stage contracts (docs/component-spec.md): real simulators over HTTP, chDB.
        test: { name: 'conformance', include: ['test/conformance/**/*.test.ts'], testTimeout: 30_000, hookTimeout: 30_000 },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          testTimeout: 300_000,
          hookTimeout: 120_000,
          // Integration tests start processes and share the CPU: run files one at a time.
          fileParallelism: false,
        },
      },
    ],
  },
});
