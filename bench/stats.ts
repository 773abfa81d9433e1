/**
 * Small statistics helpers shared by the benchmarks.
 *
 * @module
 */

/** Summary of timing samples, in milliseconds (rounded to 0.1 ms). */
export interface Stats {
  runs: number;
  medianMs: number;
  minMs: number;
  maxMs: number;
}

/** The {@link Stats} of `samples` (ms). */
export function stats(samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  const r = (x: number) => Math.round(x * 10) / 10;
  return { runs: s.length, medianMs: r(median), minMs: r(s[0]), maxMs: r(s[s.length - 1]) };
}

/** Wall time of `fn` in milliseconds. */
export async function time(fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}
