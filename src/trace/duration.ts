import { UserError } from '../errors';

const UNITS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600 };

/** "30s", "2m", "1h", "500ms" or plain seconds, as kubectl users write durations. */
export function parseDuration(flag: string, text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  const seconds = m ? Number(m[1]) * UNITS[m[2] ?? 's'] : Number.NaN;
  if (!(seconds > 0)) throw new UserError(`${flag} ${text}: expected a duration like 30s, 2m or 1h`, 2);
  return seconds;
}
