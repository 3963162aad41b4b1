#!/usr/bin/env node
// The package's executable: the compiled CLI lives in dist/ (built by `npm ci` through `prepare`).
// `run` and `demo` on Node 24 first start again with Node 20's young generation size
// (dist/core/young-generation.js, ADR 0020): the same process, replaced before anything started.
const { relaunchWithSmallYoungGeneration } = await import('../dist/core/young-generation.js');
relaunchWithSmallYoungGeneration();
// Stop signals are held from here on (dist/core/early-signals.js), before the rest of the CLI
// loads, so a SIGTERM during the load stops the command instead of killing the process.
const { deliverPendingSignals, holdStopSignals } = await import('../dist/core/early-signals.js');
holdStopSignals();
const { main } = await import('../dist/bin/main.js');
// Node 22 and 24 load the CLI's modules without turning the event loop: a signal that came
// during the load reaches the hold only now, before a command's lifecycle takes it over.
await deliverPendingSignals();

process.exitCode = await main(process.argv.slice(2));
