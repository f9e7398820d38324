/** The summary's steps per function: probe names that differ only in a suffix are one function. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PacketTracker } from '../../../src/reading/packet-tracker';
import { SummaryBuilder } from '../../../src/reading/summary';
import type { TraceEvent } from '../../../src/record/event';
import { traceEvents } from '../fixtures';

test('steps are counted per function, suffixes and categories folded, most first', () => {
  const base = traceEvents('netfilter-drop.jsonl')[0];
  const names = ['ip_rcv', 'ip_rcv_core.isra.0', 'ip_rcv_core', 'net:netif_receive_skb', 'ip_rcv_core+0x1a'];
  const summary = new SummaryBuilder();
  const tracker = new PacketTracker({ retain: false, onDone: (p) => summary.packet(p) });
  for (const func of names) summary.step(tracker.observe({ ...base, func } as TraceEvent).step);
  const s = summary.build(tracker.open());
  assert.deepEqual(s.functions, [
    { func: 'ip_rcv_core', count: 3 },
    { func: 'ip_rcv', count: 1 },
    { func: 'netif_receive_skb', count: 1 },
  ]);
  assert.equal(s.events, names.length);
});
