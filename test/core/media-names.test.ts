/** Stored file names are safe for every consumer: helpdesks, mail headers, downloads. */
import { describe, expect, it } from 'vitest';
import { safeFileName } from '../../src/core/media.js';

describe('stored file names', () => {
  it('keep the last path segment, without control characters, never empty', () => {
    expect(safeFileName('../../etc/passwd')).toBe('passwd');
    expect(safeFileName('C:\\Users\\Иван\\Счёт №15.pdf')).toBe('Счёт №15.pdf');
    expect(safeFileName('a\r\nb.txt')).toBe('a__b.txt');
    expect(safeFileName('..')).toBe('file');
    expect(safeFileName('dir/')).toBe('file');
    expect(safeFileName(undefined)).toBe('file');
    expect([...safeFileName('😀'.repeat(300))]).toHaveLength(255); // cut by characters, not inside an emoji
  });
});
