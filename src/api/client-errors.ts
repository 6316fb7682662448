/**
 * Requests Node's HTTP parser refuses before any route sees them (Fastify's clientError): answered
 * in the gateway's own error shape, naming what is wrong, instead of Fastify's
 * `{"error":"Bad Request","message":"Client Error"}`. The commonest is a URL with raw non-ASCII
 * bytes (`curl '…?name=счёт.pdf'`): HTTP/1.1 requires them percent-encoded.
 */
import http from 'node:http';
import type { Socket } from 'node:net';

interface ParserError extends Error {
  code?: string;
  /** Node passes the bytes received so far (typed by Fastify as a JSON-ified Buffer). */
  rawPacket?: unknown;
}

/** What the request line named, when it can be read (the route's error shape depends on it). */
function requestPath(raw: unknown): string | undefined {
  if (!Buffer.isBuffer(raw)) return undefined;
  const line = raw.subarray(0, Math.min(raw.length, 8192)).toString('latin1').split('\r\n', 1)[0];
  return line?.split(' ')[1]?.split('?')[0];
}

function explain(err: ParserError): { status: number; field: string; message: string } {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return { status: 431, field: 'headers', message: `request headers are larger than the server accepts (${http.maxHeaderSize} bytes)` };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, field: 'request', message: 'the request was not received in time' };
    case 'HPE_INVALID_URL':
      return {
        status: 400,
        field: 'url',
        message: "the URL has characters HTTP does not allow: percent-encode anything outside ASCII (curl: --get --data-urlencode 'name=счёт.pdf')",
      };
    default:
      return { status: 400, field: 'request', message: `not a valid HTTP/1.1 request (${err.code ?? 'unreadable'})` };
  }
}

/**
 * Writes the refusal and closes the socket. `flat(path)`: the route answers in the flat shape of
 * channel intake (`{error, message, field}`) rather than the API's `{error: {code, message, field}}`.
 */
export function refuseUnparsable(err: ParserError, socket: Socket, flat: (path: string) => boolean): void {
  // A reset connection: nothing to answer (as Node and Fastify do).
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const { status, field, message } = explain(err);
  const path = requestPath(err.rawPacket);
  const code = 'invalid_request';
  const body = JSON.stringify(path !== undefined && flat(path) ? { error: code, message, field } : { error: { code, message, field } });
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json; charset=utf-8\r\nConnection: close\r\n\r\n${body}`);
  }
  socket.destroy();
}
