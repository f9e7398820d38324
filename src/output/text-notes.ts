/**
 * What the helper needs to write the text views' lines itself (--emit text,
 * --emit wide; helper/text_notes.c reads it): the words a line's bracketed
 * notes are made of, from the one place each is declared. The drop reasons'
 * texts, the drops that are no failure by their place alone, and the tunnels
 * that tell encapsulation from NAT travel as one argument, an entry per record:
 *
 *   R NAME TEXT            a drop reason's text
 *   P PREFIX TEXT          the text of every reason whose name starts so
 *   U BEFORE AFTER         a reason neither names: BEFORE NAME AFTER
 *   N REASONS PLACES WHY   a drop that is no failure (comma-separated; no PLACES: anywhere)
 *   T PORT NAME            a tunnel by UDP port
 *   G PROTO NAME           a tunnel by IP protocol
 *
 * fields separated by ASCII unit separators (0x1f), entries by record
 * separators (0x1e): an argument without tabs or line breaks, which logs and
 * `ps` keep whole.
 */
import { TUNNEL_PORTS, TUNNEL_PROTOS } from '../reading/changes';
import { dropReasonTexts } from '../reading/drop-reasons';
import { placeRules } from '../reading/drop-rules';

const FIELD = '\u001f';
const ENTRY = '\u001e';

function entry(...fields: readonly string[]): string {
  for (const f of fields)
    if (f.includes(FIELD) || f.includes(ENTRY))
      throw new Error(`a text note holds a separator: ${JSON.stringify(f)}`);
  return fields.join(FIELD);
}

let made: string | undefined;

export function textNotes(): string {
  if (made !== undefined) return made;
  const reasons = dropReasonTexts();
  const lines = [
    ...reasons.names.map(([name, text]) => entry('R', name, text)),
    ...reasons.prefixes.map(([prefix, text]) => entry('P', prefix, text)),
    entry('U', ...reasons.unknown),
    ...placeRules().map((r) => entry('N', r.reasons.join(','), (r.at ?? []).join(','), r.why)),
    ...Object.entries(TUNNEL_PORTS).map(([port, name]) => entry('T', port, name)),
    ...Object.entries(TUNNEL_PROTOS).map(([proto, name]) => entry('G', proto, name)),
  ];
  made = lines.join(ENTRY);
  return made;
}
