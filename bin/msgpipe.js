#!/usr/bin/env node
// The package's executable: the compiled CLI lives in dist/ (built by `npm ci` through `prepare`).
// Stop signals are held from here on (dist/core/early-signals.js), before the rest of the CLI
// loads, so a SIGTERM during the load stops the command instead of killing the process.
const { holdStopSignals } = await import('../dist/core/early-signals.js');
holdStopSignals();
const { main } = await import('../dist/bin/main.js');

process.exitCode = await main(process.argv.slice(2));
