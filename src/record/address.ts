/** IP addresses from raw bytes, written the way `ip` and tcpdump write them. */

export function formatIPv4(b: Uint8Array, off: number): string {
  return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
}

/** RFC 5952: lower case, longest run of two or more zero groups as "::". */
export function formatIPv6(b: Uint8Array, off: number): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push((b[off + 2 * i] << 8) | b[off + 2 * i + 1]);
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${formatIPv4(b, off + 12)}`;
  }
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

export function formatAddress(family: 4 | 6, b: Uint8Array, off: number): string {
  return family === 4 ? formatIPv4(b, off) : formatIPv6(b, off);
}
