/**
 * A consumer of the msgpipe topics, as a user's program would read them (docs/kafka.md): plain
 * kafkajs and protobufjs loading the .proto files of proto/msgpipe/v1, no msgpipe code.
 *
 * Prints every message of `<prefix>.messages` as one JSON line, once, and a message again (with
 * `"repeated": true`) when it comes back carrying a recall or an edit; stops after `MAX` lines
 * (or runs until Ctrl-C without it):
 *
 *   KAFKA_BROKERS=127.0.0.1:9092 MSGPIPE_TOPIC_PREFIX=msgpipe MAX=10 \
 *     node --import tsx examples/kafka-consumer.ts
 */
import { fileURLToPath } from 'node:url';

import { Kafka, logLevel } from 'kafkajs';
import protobuf from 'protobufjs';

const brokers = (process.env['KAFKA_BROKERS'] ?? '127.0.0.1:9092').split(',');
const prefix = process.env['MSGPIPE_TOPIC_PREFIX'] ?? 'msgpipe';
const max = Number(process.env['MAX'] ?? 'Infinity');
const groupId = process.env['GROUP_ID'] ?? `${prefix}.example-consumer`;

// keepCase: field names as in the .proto files (msgid, session_id, …), which are the column names.
const root = await new protobuf.Root().load(fileURLToPath(new URL('../proto/msgpipe/v1/rows.proto', import.meta.url)), { keepCase: true });
const Message = root.lookupType('msgpipe.v1.Message');

const kafka = new Kafka({ brokers, clientId: 'msgpipe-example', logLevel: logLevel.ERROR });
const consumer = kafka.consumer({ groupId });
await consumer.connect();
await consumer.subscribe({ topic: `${prefix}.messages`, fromBeginning: true });

// Delivery is at least once: a message can come twice (after a crash, or a provider re-send).
// Keep the ones you have seen by (tenant, staff_id, msgid); this example keeps them in memory.
// A message seen before can still bring news: a Yunhu recall or edit travels on the recalled or
// edited message read again, so apply `recalls` and `edits` of every record (docs/kafka.md).
const seen = new Set<string>();
let printed = 0;
const done = new Promise<void>((resolve) => {
  void consumer.run({
    eachMessage: async ({ message }) => {
      if (printed >= max || message.value === null) return;
      // 64-bit ids are decimal strings; times are int64 unix ms (longs: Number is exact for them).
      let m: Record<string, unknown>;
      try {
        m = Message.toObject(Message.decode(message.value), { longs: Number, defaults: true });
      } catch (err) {
        // Not a msgpipe.v1.Message (someone else wrote to the topic): skip it, do not block the partition.
        process.stderr.write(`skipping offset ${message.offset}: ${String(err)}\n`);
        return;
      }
      // An edit carrier (empty msgid, docs/kafka.md) brings edit history, not a message.
      if (m['msgid'] === '') return;
      const id = `${String(m['tenant'])}:${String(m['staff_id'])}:${String(m['msgid'])}`;
      const repeated = seen.has(id);
      const news = (m['recalls'] as unknown[]).length > 0 || (m['edits'] as unknown[]).length > 0;
      if (repeated && !news) return;
      seen.add(id);
      process.stdout.write(`${JSON.stringify({ key: message.key?.toString(), ...(repeated ? { repeated: true } : {}), ...m })}\n`);
      printed += 1;
      if (printed >= max) resolve();
      await Promise.resolve();
    },
  });
});
process.once('SIGINT', () => { void consumer.disconnect().then(() => process.exit(0)); });
await done;
await consumer.disconnect();
