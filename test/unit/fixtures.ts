/** Loads the real traces under test/fixtures/traces (recorded by test/fixtures/record-traces.sh). */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type Packet, trackAll } from '../../src/reading/packet-tracker';
import { parseTrace } from '../../src/reading/trace-file';
import type { TraceEvent, TraceHeader, TraceLine } from '../../src/record/event';

/** From dist/test/unit (compiled) or test/unit (ts-node), the repository root. */
function repoRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    try {
      readFileSync(join(dir, 'package.json'));
      if (!dir.endsWith('dist')) return dir;
    } catch {}
    dir = resolve(dir, '..');
  }
  throw new Error('repository root not found');
}

export const ROOT = repoRoot();
export const TRACES = join(ROOT, 'test', 'fixtures', 'traces');

export function tracePath(name: string): string {
  return join(TRACES, name);
}

export function traceText(name: string): string {
  return readFileSync(tracePath(name), 'utf8');
}

export function traceLines(name: string): TraceLine[] {
  return parseTrace(traceText(name), name);
}

export function traceEvents(name: string): TraceEvent[] {
  return traceLines(name).filter((l): l is TraceEvent => l.type === 'event');
}

export function traceHeader(name: string): TraceHeader {
  const h = traceLines(name).find((l): l is TraceHeader => l.type === 'header');
  if (!h) throw new Error(`${name} has no header`);
  return h;
}

export function tracePackets(name: string): Packet[] {
  return trackAll(traceEvents(name));
}

/** A minimal event for logic tests; fields a test cares about go in `over`. */
export function event(over: Partial<TraceEvent>): TraceEvent {
  return {
    type: 'event',
    v: 1,
    ts: '1000',
    time: '2026-01-01T00:00:00.000Z',
    skb: '0xffff000000000001',
    func: 'netif_receive_skb',
    probe: 'tracepoint',
    cpu: 0,
    pid: 1,
    process: 'test',
    netns: 4026531840,
    mark: 0,
    ifindex: 2,
    iface: 'eth0',
    l3proto: 'IPv4',
    mtu: 1500,
    len: 84,
    pktType: 'host',
    tuple: { family: 4, proto: 'UDP', src: '10.0.0.1', dst: '10.0.0.2', sport: 1000, dport: 53 },
    ...over,
  };
}
