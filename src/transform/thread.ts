/**
 * The entry of a transform worker thread (see ./threads.ts): takes pages, transforms their
 * records with the registry's transform and encodes the result as the sink holds it, then sends
 * it back with the message lines in one transferred buffer.
 */
import { parentPort } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';

import { countsOf, transformPage } from '../core/pipeline.ts';
import { EncodedUnit } from '../sink/writer.ts';
import { requireTransform } from './registry.ts';
import type { PageReply, PageRequest } from './threads.ts';

const port = parentPort;
if (port === null) throw new Error('src/transform/thread.ts runs only as a worker thread.');

// A page that cannot be read has no id to answer: end the thread, which fails its pages.
port.on('messageerror', () => { process.exit(1); });

port.on('message', (request: PageRequest) => {
  let reply: PageReply;
  let transfer: ArrayBuffer[] = [];
  try {
    const started = performance.now();
    const { page, cursor, now } = request;
    const output = transformPage(page, requireTransform(page.origin.sourceType), now);
    const encoded = EncodedUnit.of({ output, cursor }).toWire();
    transfer = encoded.transfer;
    reply = { id: request.id, ok: true, wire: encoded.wire, counts: countsOf(output), ms: performance.now() - started };
  } catch (err) {
    const error = err instanceof Error ? err : new Error(String(err));
    reply = { id: request.id, ok: false, message: error.message, stack: error.stack ?? '' };
  }
  port.postMessage(reply, transfer);
});
