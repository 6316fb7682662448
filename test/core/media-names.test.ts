/** Stored file names are safe for every consumer: helpdesks, mail headers, downloads. */
import { describe, expect, it } from 'vitest';
import { safeFileName } from '../../src/core/media.js';

describe('stored file names', () => {
  it('have no path separators, control characters or bidi overrides, and are never empty', () => {
    expect(safeFileName('../../etc/passwd')).toBe('.._.._etc_passwd');
    expect(safeFileName('Акт 1/2.pdf')).toBe('Акт 1_2.pdf');
    expect(safeFileName('C:\\Users\\Счёт №15.pdf')).toBe('C:_Users_Счёт №15.pdf');
    expect(safeFileName('a\r\nb.txt')).toBe('a__b.txt');
    expect(safeFileName('photo\u202egnp.exe')).toBe('photo_gnp.exe');
    expect(safeFileName('..')).toBe('file');
    expect(safeFileName(undefined)).toBe('file');
    expect([...safeFileName('😀'.repeat(300))]).toHaveLength(255); // cut by characters, not inside an emoji
  });
});
