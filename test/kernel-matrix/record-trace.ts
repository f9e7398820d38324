/**
 * Records a real trace in a kernel-matrix guest, as the client saves one
 * (`-o json --output-file`: a header line, then each event with its packet
 * number), for the fixtures that hold verdict rules to older kernels
 * (test/fixtures/traces/*-6.1.jsonl). The tracepoint backend, as the host's
 * fixtures are recorded.
 *
 *   node dist/test/kernel-matrix/record-trace.js KERNEL TRAFFIC FILTER OUT
 *   e.g. 6.1 tcp 'tcp port 7000' test/fixtures/traces/tcp-close-6.1.jsonl
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { annotatedEventLine } from '../../src/output/json';
import { PacketTracker } from '../../src/reading/packet-tracker';
import { TRACE_SCHEMA_VERSION, type TraceHeader } from '../../src/record/event';
import { TOOL_VERSION } from '../../src/version';
import { bootGuest, type CaseSpec, repoRoot } from './guest';

async function main(): Promise<void> {
  const [kernel, traffic, filter, out] = process.argv.slice(2);
  if (!kernel || !traffic || !filter || !out) {
    console.error('usage: record-trace.js KERNEL TRAFFIC FILTER OUT');
    process.exit(2);
  }
  const helper = path.join(repoRoot(), 'helper/build/amd64/pwru-helper');
  const spec: CaseSpec = {
    name: 'record',
    traffic: traffic as CaseSpec['traffic'],
    readyTimeout: 120,
    args: ['--backend', 'tracepoint', '--', filter],
  };
  const run = await bootGuest({ kernel, helper, cases: [spec], timeoutMs: 6 * 60_000 });
  const c = run.cases.get('record');
  if (!c?.ready || c.exitCode !== 0 || c.errors.length) {
    throw new Error(`the trace failed: ${run.fatal ?? ''} ${JSON.stringify(c?.errors)} ${c?.stderr ?? ''}`);
  }
  const header: TraceHeader = {
    type: 'header',
    v: TRACE_SCHEMA_VERSION,
    tool: 'kubectl-pwru',
    toolVersion: TOOL_VERSION,
    kernel: run.release,
    backend: c.ready.backend,
    probes: c.ready.attached,
    attachMs: c.ready.attach_ms,
    filter: c.ready.filter,
    startedAt: new Date().toISOString(),
    dropReasons: c.ready.drop_reasons,
  };
  const tracker = new PacketTracker({ retain: false });
  const lines = [JSON.stringify(header), ...c.events.map((e) => annotatedEventLine(tracker.observe(e)))];
  writeFileSync(out, `${lines.join('\n')}\n`);
  console.error(`${out}: ${c.events.length} events, kernel ${run.release}`);
}

main().catch((err: unknown) => {
  console.error((err as Error).message);
  process.exit(1);
});
