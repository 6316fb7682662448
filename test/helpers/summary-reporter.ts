/**
 * Prints the plain closing lines CI tooling reads after vitest's own summary: one "✗" line per
 * failed test or unhandled error (file, test name, first line of the error), then
 * "N passed, N failed, N skipped". `.ci/run` repeats the "✗" lines of both Node passes at its
 * end, where a truncated CI log still shows them.
 */
import type { Reporter, TestModule } from 'vitest/node';

function firstLine(error: unknown): string {
  const text = error instanceof Error ? `${error.name}: ${error.message}` : typeof error === 'object' && error && 'message' in error ? String((error as { message: unknown }).message) : String(error);
  return (text.split('\n')[0] ?? '').slice(0, 240);
}

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    const lines: string[] = [];
    for (const m of testModules) {
      for (const t of m.children.allTests()) {
        const result = t.result();
        if (result.state === 'passed') passed++;
        else if (result.state === 'failed') {
          failed++;
          lines.push(`✗ ${m.moduleId.replace(process.cwd() + '/', '')} > ${t.fullName}: ${firstLine(result.errors?.[0])}`);
        } else skipped++;
      }
      if (m.state() === 'failed' && [...m.children.allTests()].length === 0) {
        failed++;
        lines.push(`✗ ${m.moduleId.replace(process.cwd() + '/', '')}: ${firstLine(m.errors()[0])}`);
      }
    }
    for (const e of unhandledErrors) lines.push(`✗ unhandled error: ${firstLine(e)}`);
    failed += unhandledErrors.length;
    process.stdout.write(`\n${lines.map((l) => l + '\n').join('')}${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
