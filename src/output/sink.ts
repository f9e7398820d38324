/**
 * Where a running trace goes. A local session and every per-node Kubernetes
 * session feed the same sink; the sink decides how it looks (text, wide,
 * JSON lines, a file, a summary). Progress and warnings are for people and go
 * to stderr, so that stdout stays machine-clean.
 */
import type { DropReportInfo, PacketDoneInfo, WatchInfo } from '../record/decode';
import type {
  TraceCulprit,
  TraceDigest,
  TraceDropReport,
  TraceEvent,
  TraceHeader,
  TraceProgRun,
  TraceStats,
} from '../record/event';

/** The lines the helper can write itself (its --emit). */
export type LinesFormat = 'json' | 'text' | 'wide';

/** --on-drop: a drop the helper caught, with the steps of its packet and of the flow's last good one. */
export interface HelperDropReport {
  info: DropReportInfo;
  bad: TraceEvent[];
  good: TraceEvent[];
  /** The dropped packet's copies' steps, as info.copies lists them. */
  copies: TraceEvent[][];
  node?: string;
}

export interface TraceSink {
  /** A long step is under way: scheduling a pod, pulling an image, attaching probes. */
  progress(message: string): void;
  /** A trace (one node's, in Kubernetes mode) is ready: probes attached. */
  header(header: TraceHeader): void;
  event(event: TraceEvent): void;
  /** Who dropped a packet, known after its drop event (src/reading/culprits.ts). */
  culprit?(culprit: TraceCulprit): void;
  /** A tc or XDP program's run on a traced packet (where programs can be traced). */
  prog?(run: TraceProgRun): void;
  /**
   * The view has nothing to add per event, so the helper may write the
   * lines itself (--emit json, text or wide), straight to the outputs: a
   * firehose of events then reaches them without being decoded here.
   * packetDone() brings the finished packets for the verdict table (with
   * json, digest() the counts instead when they could not all be sent)
   * (and culprit() and prog() their culprits and program runs, whose lines
   * the helper writes too: it is the lines' one writer).
   */
  readonly acceptsLines?: LinesFormat;
  /** --emit text|wide: a finished packet, or one standing for `info.count` of its shape (helper/packet_book.c). */
  packetDone?(info: PacketDoneInfo, events: TraceEvent[]): void;
  /**
   * The outputs' descriptors for the helper, and a promise that resolves
   * once what the sink wrote before them (the header line) is out. Undefined
   * when an output has no descriptor of its own: events are decoded here then.
   */
  lineOutputs?(): { fds: number[]; names: string[]; ready(): Promise<void> } | undefined;
  /** Lines the helper wrote into its record stream (--lines-stream), each with its newline: copied to the outputs. */
  lines?(text: Buffer): void;
  /**
   * The helper will write every line into its record stream (--lines-stream), its culprits' and program
   * runs' too: the sink then writes none of its own (it would write them twice). lineOutputs() implies it.
   */
  linesFromStream?(): void;
  digest?(digest: TraceDigest): void;
  stats(stats: TraceStats): void;
  warning(message: string): void;
  /**
   * A batch of events has been handed over (one chunk of the helper's
   * stream): a good moment to write what the sink buffered.
   */
  flush?(): void;
  /**
   * When the output cannot keep up (a slow terminal or disk), a promise to
   * wait for before handing over more: the producer pauses, and the kernel,
   * not this process's memory, absorbs the excess (reported as lost events).
   */
  waitForDrain?(): Promise<void> | undefined;
  /** --on-drop: a caught drop (events are then only those of reports). */
  dropReport?(report: HelperDropReport): void;
  /** A saved --on-drop report (`show`). */
  dropLine?(line: TraceDropReport): void;
  /** --on-drop: what the helper watches and had to forget, with each stats. */
  watch?(watch: WatchInfo, node?: string): void;
  /** All sessions ended; flush files and print the closing summary. */
  close(): Promise<void>;
}
