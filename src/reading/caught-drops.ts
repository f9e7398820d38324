/**
 * The drops a saved --on-drop trace holds, read back for `diff`: each
 * report's two packets, compared again by this client's rules.
 */
import { type CaughtDrop, caughtDropOf } from './drop-report';
import { readTraceFile } from './trace-file';

export async function loadCaughtDrops(file: string): Promise<CaughtDrop[]> {
  const out: CaughtDrop[] = [];
  for await (const l of readTraceFile(file)) {
    if (l.type !== 'drop') continue;
    const c = caughtDropOf(l);
    if (c) out.push(c);
  }
  return out;
}
