/**
 * The first key that appears twice in one object of a JSON text, as a dotted path, or undefined.
 *
 * JSON.parse keeps the last of two equal keys and says nothing, while other parsers (a proxy, a
 * signature check, the sender's own log) keep the first: `{"text":"a","text":"b"}` was sent to a
 * customer as "b" while the client's records said "a". Our own request bodies refuse it instead.
 * Only for text JSON.parse has already accepted: the scan assumes well-formed JSON.
 */
export function duplicateKeyPath(text: string): string | undefined {
  const stack: Frame[] = [];
  let pendingKey: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = stringEnd(text, i);
      const top = stack[stack.length - 1];
      if (top?.keys && top.expectKey) {
        const raw = text.slice(i + 1, end);
        const key = raw.includes('\\') ? (JSON.parse(`"${raw}"`) as string) : raw;
        if (top.keys.has(key)) return join(top.path, key);
        top.keys.add(key);
        top.expectKey = false;
        pendingKey = key;
      }
      i = end;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      const top = stack[stack.length - 1];
      const name = top === undefined ? undefined : top.keys ? pendingKey : String(top.index);
      const path = name === undefined ? '' : join(top!.path, name);
      stack.push(c === OPEN_BRACE ? { path, keys: new Set(), expectKey: true, index: 0 } : { path, expectKey: false, index: 0 });
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      stack.pop();
    } else if (c === COMMA) {
      const top = stack[stack.length - 1];
      if (top?.keys) top.expectKey = true;
      else if (top) top.index++;
    }
  }
  return undefined;
}

interface Frame {
  path: string;
  /** An object's keys so far; undefined in an array. */
  keys?: Set<string>;
  expectKey: boolean;
  index: number;
}

const join = (path: string, name: string) => (path ? `${path}.${name}` : name);

/** The index of the quote closing the string opened at `start`. */
function stringEnd(text: string, start: number): number {
  for (let i = start + 1; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === BACKSLASH) i++;
    else if (c === QUOTE) return i;
  }
  return text.length;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
