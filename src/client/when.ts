/** Times as people read them: "in 9 min", "40 s ago"; durations as they type them: "2d". */
import { UsageError } from './io.js';

/** `iso` relative to `now` (ms): "in 9 min", "40 s ago", "now". */
export function relative(iso: string, now: number): string {
  const s = Math.round((Date.parse(iso) - now) / 1000);
  if (Number.isNaN(s)) return iso;
  if (s === 0) return 'now';
  const a = Math.abs(s);
  const span =
    a < 120
      ? `${a} s`
      : a < 120 * 60
        ? `${Math.round(a / 60)} min`
        : a < 48 * 3600
          ? `${Math.round(a / 3600)} h`
          : `${Math.round(a / 86400)} d`;
  return s > 0 ? `in ${span}` : `${span} ago`;
}

/** `iso` with its distance from now: "2030-01-02T03:04:05.000Z (in 9 min)"; "-" for none. */
export function stamp(iso: string | null | undefined, now: number): string {
  return iso ? `${iso} (${relative(iso, now)})` : '-';
}

const UNIT_S: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** A duration as people type it ("90s", "30m", "12h", "2d", or plain seconds) in seconds; null when it is not one. */
export function parseDuration(text: string): number | null {
  const m = /^(\d{1,9})([smhd]?)$/.exec(text.trim());
  if (!m) return null;
  const seconds = Number(m[1]) * UNIT_S[m[2] || 's']!;
  return seconds > 0 ? seconds : null;
}

/** A duration option ("2d", "90s") in seconds; bad usage (exit 2) when it is not one. */
export function durationOption(text: string, option: string, command: string): number {
  const seconds = parseDuration(text);
  if (seconds === null) throw new UsageError(`${option} is a duration such as 90s, 30m, 12h or 2d, not "${text.slice(0, 40)}"`, command);
  return seconds;
}
