/**
 * What a test expects of the store after a pipeline run: exactly the upstream messages of the
 * simulator's accounts, none missing and none doubled, with their kind, session, text and recall
 * state; the events listed upstream, each once.
 */
import { expect } from 'vitest';

import type { SimulatorHandle } from '../../src/simulate/index.ts';
import { sql } from './msgpipe.ts';

interface StoredMessage {
  source: string;
  msgid: string;
  msg_type: string;
  session_id: string;
  content_text: string;
  recalled: number;
}

/** Asserts that the store holds exactly what the simulator's accounts hold upstream. */
export async function expectExactContents(configFile: string, sim: SimulatorHandle, ids: readonly string[]): Promise<void> {
  const rows = await sql<StoredMessage>(
    configFile,
    'SELECT source, msgid, msg_type, session_id, content_text, recalled FROM messages ORDER BY source, msgid',
  );
  const events = await sql<{ source: string; event_id: string }>(configFile, 'SELECT source, event_id FROM events');
  for (const id of ids) {
    const expected = sim.expected(id).filter((m) => m.destination === 'messages');
    const stored = rows.filter((r) => r.source === id);
    // Exactly once each: no message missing, none doubled.
    expect(stored.map((r) => r.msgid).sort()).toEqual(expected.map((m) => m.msgid).sort());
    const byId = new Map(stored.map((r) => [r.msgid, r]));
    for (const m of expected) {
      const row = byId.get(m.msgid)!;
      expect(row.msg_type).toBe(m.designType);
      expect(row.session_id).toBe(m.msgSessionId);
      if (m.kind === 'text') expect(row.content_text).toBe(m.text);
      expect(row.recalled).toBe(m.recalledBy === null ? 0 : 1);
    }
    // The simulator does not list every event its items make (a system line may make two), so
    // at least those it lists, and each once.
    const expectedEvents = sim.expected(id).filter((m) => m.destination === 'events').length;
    const storedEvents = events.filter((e) => e.source === id).map((e) => e.event_id);
    expect(storedEvents.length).toBeGreaterThanOrEqual(expectedEvents);
    expect(new Set(storedEvents).size).toBe(storedEvents.length);
  }
}
