import { isIP } from 'node:net';

/** Whether a setting names an IP address or a CIDR range (`10.0.0.0/8`, `fd00::/8`). */
export function isIpOrRange(entry: string): boolean {
  const [address, bits, extra] = entry.split('/');
  const family = isIP(address ?? '');
  if (family === 0 || extra !== undefined) return false;
  if (bits === undefined) return true;
  return /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128);
}
