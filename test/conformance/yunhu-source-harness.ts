/**
 * The source conformance harness of the Yunhu source: protobuf over HTTP to the Yunhu simulator,
 * one stream per chat (`<chat_type>:<chat_id>`, found through the conversation list), the
 * highest `msg_seq` stored as the chat's cursor. Each account has three chats of different
 * lengths, so the source pages through several streams and re-reads the window after each.
 *
 * The simulator keeps the body of every answer, so the exact bytes and the dead letter's body
 * are compared with what was sent, not with a second request (each answer carries a fresh
 * request id).
 */
import protobuf from 'protobufjs';

import { sourceSchema } from '../../src/core/config.ts';
import { createSource } from '../../src/ingest/registry.ts';
import { YUNHU_PATHS } from '../../src/ingest/yunhu.ts';
import { decodeYunhu, readListResponse, WireError } from '../../src/ingest/yunhu-proto.ts';
import { startYunhuSimulator, type YunhuSimAccountInput, type YunhuSimFaults, type YunhuSimulatorHandle } from '../../src/simulate/yunhu-server.ts';
import type { CaseAccount, CaseFaults, SimOutcome, SimRequest, SourceHarness } from './source-suite.ts';

const OUTCOMES: ReadonlySet<string> = new Set<SimOutcome>(['page', 'caught_up', 'error', 'rate_limited', 'malformed', 'auth_refused']);

/** A group, a 1:1 chat and a bot: 9 pages, 4 pages and 1 page of 10. */
const CHATS = [
  { chatId: '51309476', chatType: 2, messages: 64 },
  { chatId: '7356214', chatType: 1, messages: 23 },
  { chatId: '82041957', chatType: 3, messages: 9 },
] as const;
const PAGE_SIZE = 10;

function simFaults(faults: CaseFaults | undefined): YunhuSimFaults | undefined {
  if (faults === undefined) return undefined;
  return {
    ...(faults.transient === true ? { errorRate: 0.3, rateLimitRate: 0.2, retryAfterSec: 0 } : {}),
    // The source reads the conversation list first, then the first page of its first chat.
    ...(faults.tokenExpiresAfterFirstPage === true ? { tokenExpiresAfter: 2 } : {}),
    ...(faults.latencyMs === undefined ? {} : { latencyMs: faults.latencyMs }),
  };
}

/** The highest msg_seq of a list answer's messages. */
function topSeq(body: Uint8Array): bigint {
  let top = 0n;
  for (const span of readListResponse(body).spans) {
    const seq = BigInt(String(decodeYunhu('Msg', body.subarray(span.start, span.end))['msg_seq']));
    if (seq > top) top = seq;
  }
  return top;
}

function account(sim: YunhuSimulatorHandle, id: string): { token: string; userId: string } {
  const found = sim.accounts().find((a) => a.id === id);
  if (found === undefined) throw new Error(`no simulated account ${id}`);
  return found;
}

/**
 * The request log in the suite's terms. A list-message-by-seq below the highest position the
 * chat was already served is a re-read (the source's re-read window); the cursor an answer leads
 * to is the highest msg_seq it holds, or the msg_start it was asked with when it held nothing.
 */
function requests(sim: YunhuSimulatorHandle, id: string): SimRequest[] {
  const served = new Map<string, bigint>();
  return sim.received(id).map((r) => {
    const outcome = OUTCOMES.has(r.outcome) ? (r.outcome as SimOutcome) : 'other';
    const base = { at: r.at, outcome, items: r.items, duplicates: 0, restarted: false, body: r.body };
    if (r.path !== YUNHU_PATHS.listBySeq) {
      return { ...base, kind: 'other', stream: r.path === YUNHU_PATHS.conversationList ? 'conversations' : r.path, cursor: null, cursorAfter: null };
    }
    const start = BigInt(r.msgStart);
    const high = served.get(r.chat) ?? 0n;
    let cursorAfter: string | null = null;
    if (r.outcome === 'page' && r.body !== undefined) {
      const top = topSeq(r.body);
      cursorAfter = top.toString();
      if (top > high) served.set(r.chat, top);
    } else if (r.outcome === 'caught_up') cursorAfter = r.msgStart;
    return { ...base, kind: start < high ? 'reread' : 'read', stream: r.chat, cursor: r.msgStart, cursorAfter };
  });
}

/** The Yunhu harness, its sources built by the registry (embedded mode), chats discovered. */
export function yunhuHarness(): SourceHarness<YunhuSimulatorHandle> {
  return {
    initialCursor: '0',
    notApplicable: {
      resentDuplicates: 'Yunhu pages by msg_seq and never sends a message twice in a forward read',
    },
    start: (accounts: readonly CaseAccount[]) =>
      startYunhuSimulator({
        accounts: accounts.map(({ id, faults }, i): YunhuSimAccountInput => {
          const extra = simFaults(faults);
          return {
            id,
            token: `tok-${id}`,
            userId: String(7_311_890 + i),
            chats: CHATS,
            pageSize: PAGE_SIZE,
            seed: `conf-${id}`,
            ...(extra === undefined ? {} : { faults: extra }),
          };
        }),
      }),
    close: (sim) => sim.close(),
    build: (sim, id, { name, tenant, tuning }) => {
      const { token, userId } = account(sim, id);
      // No `chats`: the source discovers them through the conversation list, as by default.
      const config = sourceSchema.parse({ type: 'yunhu', name, tenant, baseUrl: sim.url, token, userId, pollIntervalMs: tuning.pollIntervalMs, requestTimeoutMs: 10_000 });
      return createSource(config, { retry: tuning.retry, parkRetryMs: tuning.parkRetryMs });
    },
    expected: (sim, id) => {
      const out = new Map<string, string[]>();
      for (const m of sim.expected(id)) out.set(m.chat, [...(out.get(m.chat) ?? []), m.msgId]);
      return out;
    },
    itemId: (bytes) => {
      // `{`: an entry of a message's edit history, not a message.
      if (bytes[0] === 0x7b) return undefined;
      try {
        return String(decodeYunhu('Msg', bytes)['msg_id']);
      } catch (err) {
        if (err instanceof WireError) return undefined;
        throw err;
      }
    },
    recordCursor: (page) => `${page.stream}@${page.cursorBefore}`,
    requests,
    arrivals: (sim, id) => sim.arrivals(id),
    pageBody: (sim, id, stream, cursor) => {
      const served = requests(sim, id).find((r) => r.kind === 'read' && r.outcome === 'page' && r.stream === stream && r.cursor === cursor);
      if (served?.body === undefined) throw new Error(`the simulator served no page of ${stream} at ${cursor}`);
      return Promise.resolve(served.body);
    },
    // Each message is field 2 of the list answer: tag 0x12, its length, its bytes.
    frame: (items) => {
      const writer = protobuf.Writer.create();
      for (const bytes of items) writer.uint32(0x12).bytes(bytes);
      return writer.finish();
    },
    isWholeBody: (_sim, _id, malformed, bytes) => Promise.resolve(malformed.body !== undefined && Buffer.from(bytes).equals(Buffer.from(malformed.body))),
    setMalformed: (sim, id, on) => {
      if (on) sim.setFaults(id, { malformedRate: 1 });
      else sim.clearFaults(id);
    },
    renewToken: (sim, id) => {
      sim.renewToken(id);
      sim.clearFaults(id);
    },
  };
}
