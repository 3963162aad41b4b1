#!/usr/bin/env node
// The package's executable: the compiled CLI lives in dist/ (built by `npm ci` through `prepare`).
import { main } from '../dist/bin/main.js';

process.exitCode = await main(process.argv.slice(2));
