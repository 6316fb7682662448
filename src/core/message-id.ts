/** A Message-ID as compared and indexed: no angle brackets, no surrounding white space, lower case. */
export function normalizeMessageId(id: string): string {
  return id.trim().replace(/^<|>$/g, '').toLowerCase();
}
