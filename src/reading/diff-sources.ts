/**
 * What `diff` compares, read from a saved trace in bounded memory: the file is
 * streamed, packets are followed as `show` follows them, and only the packet
 * chosen so far is held (then, with --flow, the file is streamed twice more
 * and at most maxSteps steps of the flow are held). A trace of any size diffs
 * within the bound docs/reading-traces.md gives.
 */
import { CulpritBook, ProgRunBook } from './culprits';
import { FlowCollector, PacketPick } from './diff';
import { type Packet, PacketTracker } from './packet-tracker';
import { readTraceFile } from './trace-file';

/**
 * The most steps of one side that `diff` aligns: the alignment takes
 * maxSteps² × 4 bytes (16 MiB at 2000). A longer packet or flow is compared
 * on its first steps in time order, and the output says so.
 */
export const DIFF_MAX_STEPS = 2000;

/**
 * Every packet of a saved trace, in the order they finish, held one at a
 * time (of an --on-drop trace: each report's good packet, then its dropped one).
 */
async function eachPacket(file: string, visit: (p: Packet) => void): Promise<void> {
  const tracker = new PacketTracker({ retain: false, onDone: visit });
  for await (const l of readTraceFile(file)) {
    if (l.type === 'event') tracker.observe(l);
    else if (l.type === 'drop')
      for (const e of [...(l.good?.events ?? []), ...l.bad.events]) tracker.observe(e);
  }
  for (const p of tracker.open()) visit(p);
}

export interface DiffSide {
  /** The packet (or, with --flow, the flow) to compare, at most maxSteps steps. */
  path: Packet;
  /** Packets in the file. */
  count: number;
  /** Steps of the packet or flow before the cap. */
  stepsSeen: number;
}

/** Which packet (PacketPick's rule), and how many packets the file has. */
async function choose(
  file: string,
  side: 'good' | 'bad',
  n: number | undefined,
): Promise<{ packet: Packet | undefined; count: number }> {
  let count = 0;
  const pick = new PacketPick(side, n);
  await eachPacket(file, (p) => {
    count++;
    pick.offer(p);
  });
  return { packet: pick.packet, count };
}

export class NoSuchPacket extends Error {
  constructor(
    readonly count: number,
    readonly n: number,
  ) {
    super(`there is no packet #${n}`);
  }
}

/** The side of a diff from one file; undefined when the file has no packets. */
export async function readDiffSide(
  file: string,
  side: 'good' | 'bad',
  opts: { packet?: number; flow: boolean; maxSteps?: number },
): Promise<DiffSide | undefined> {
  const maxSteps = opts.maxSteps ?? DIFF_MAX_STEPS;
  const { packet, count } = await choose(file, side, opts.packet);
  if (count === 0) return undefined;
  if (!packet) throw new NoSuchPacket(count, opts.packet ?? 0);
  const seed = packet;
  if (!opts.flow) {
    const stepsSeen = seed.steps.length;
    const path = stepsSeen > maxSteps ? { ...seed, steps: seed.steps.slice(0, maxSteps) } : seed;
    return { path, count, stepsSeen };
  }
  const flow = new FlowCollector(seed, maxSteps);
  await eachPacket(file, (p) => flow.forwardPacket(p));
  await eachPacket(file, (p) => flow.replyPacket(p));
  return { path: flow.path(), count, stepsSeen: flow.stepsSeen };
}

/** The culprits and program runs in a saved trace, for the sentence that names who dropped the failing one. */
export async function loadBooks(file: string): Promise<{ culprits: CulpritBook; progs: ProgRunBook }> {
  const culprits = new CulpritBook();
  const progs = new ProgRunBook();
  for await (const l of readTraceFile(file)) {
    if (l.type === 'culprit') culprits.add(l);
    else if (l.type === 'prog') progs.add(l);
  }
  return { culprits, progs };
}
