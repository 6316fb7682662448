/**
 * The address a request is counted under (auth-throttle.ts): the socket's peer, or, when that peer
 * is one of `api.trustedProxies`, the nearest address in X-Forwarded-For that is not one of them.
 * Without it, every client behind a reverse proxy or ingress shares the proxy's address, and one
 * client's wrong tokens (or a helpdesk still using a rotated one) throttled them all. A header
 * from any other peer is not read: anyone can write it, and each guess would claim a fresh address.
 */
import { BlockList, isIP } from 'node:net';

let trusted: BlockList | undefined;

/** `api.trustedProxies`: IP addresses or CIDR ranges (validated at config load: core/ip-range.ts). */
export function setTrustedProxies(entries: readonly string[]): void {
  if (entries.length === 0) {
    trusted = undefined;
    return;
  }
  const list = new BlockList();
  for (const entry of entries) {
    const [address, bits] = entry.split('/') as [string, string | undefined];
    const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(address, family);
    else list.addSubnet(address, Number(bits), family);
  }
  trusted = list;
}

export function clientAddress(req: { socket: { remoteAddress?: string }; headers: Record<string, string | string[] | undefined> }): string {
  const peer = req.socket.remoteAddress ?? 'unknown';
  if (!trusted || !isTrusted(peer)) return peer;
  const header = req.headers['x-forwarded-for'];
  const hops = (Array.isArray(header) ? header.join(',') : (header ?? '')).split(',').map((h) => h.trim()).filter(Boolean);
  // Right to left: each trusted proxy appended the address it received from; the first one not trusted is the client.
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i]!;
    if (isIP(hop) === 0) return peer; // not an address: a client wrote it; count the proxy
    if (!isTrusted(hop)) return hop;
  }
  return hops[0] ?? peer;
}

function isTrusted(address: string): boolean {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  const plain = mapped ? mapped[1]! : address;
  const family = isIP(plain);
  return family !== 0 && trusted!.check(plain, family === 6 ? 'ipv6' : 'ipv4');
}
