/**
 * What an environment variable's text may be read as where the config's schema refuses it as
 * text. A variable is text: YAML's own reading turned a token `0x1F90` into 8080, `9e3` into 9000
 * and `.5` into 0.5, and did not know `yes` or `on`. So only two readings, and only where text
 * is refused: a boolean from the words operators use, a number from plain decimal digits.
 */
import { parse as parseYaml } from 'yaml';

const TRUE = /^(true|yes|on|1)$/i;
const FALSE = /^(false|no|off|0)$/i;
/** No leading zeros (`007` is octal to some readers), no exponent, hex, octal, `_` or bare `.5`. */
const PLAIN_DECIMAL = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?$/;

/** The values `text` may stand for where text is refused, the likelier first (`1` is a number before it is `true`). */
export function readingsOf(text: string): Array<number | boolean> {
  const out: Array<number | boolean> = [];
  const trimmed = text.trim();
  if (PLAIN_DECIMAL.test(trimmed)) out.push(Number(trimmed));
  if (TRUE.test(trimmed)) out.push(true);
  else if (FALSE.test(trimmed)) out.push(false);
  return out;
}

/** Text some reader takes for a number (`0x1F90`, `9e3`, `1_000`, `007`) that is not plain decimal: refused where a number is wanted. */
export function isOtherNumberNotation(text: string): boolean {
  const trimmed = text.trim();
  if (PLAIN_DECIMAL.test(trimmed)) return false;
  if (/^[-+]?(0[xob][0-9a-f_]+|[0-9][0-9_]*(\.[0-9_]*)?(e[-+]?[0-9]+)?|\.[0-9]+(e[-+]?[0-9]+)?)$/i.test(trimmed)) return true;
  try {
    return typeof parseYaml(trimmed) === 'number';
  } catch {
    return false;
  }
}
