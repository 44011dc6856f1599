/**
 * Account labels: what an account is for, as the app that made it says (`user=123`,
 * `task=t-1`), so the app finds its accounts without packing that into their names.
 * Bounded, since they sit in config.json and travel in every account view. Kept free of
 * zod: the CLI and the SDK check selectors with it without loading zod.
 */

/** `GET /v1/accounts?label=key=value`: repeatable, the labels AND together ({@link parseLabelSelector}). */
export const ACCOUNT_LABEL_QUERY = 'label';

/** How many labels one account may carry. */
export const MAX_LABELS = 32;
/** Longest label value, in characters. */
export const MAX_LABEL_VALUE = 256;
/** A label key: lower-case letters, digits, `.`, `_`, `/`, `-`; a letter or digit first; 1-63 characters. */
export const LABEL_KEY_RE = /^[a-z0-9][a-z0-9._/-]{0,62}$/;
export const LABEL_KEY_RULE = 'a label key is 1-63 lower-case letters, digits, ".", "_", "/" or "-", starting with a letter or digit';
export const LABEL_VALUE_RULE = `a label value is at most ${MAX_LABEL_VALUE} characters, without control characters`;
export const LABEL_COUNT_RULE = `an account carries at most ${MAX_LABELS} labels`;
// C0 controls and DEL (and the C1 block): a value is shown in terminals and logs.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

export type Labels = Record<string, string>;

/** Why `key` is not a label key, or undefined when it is one. */
export function labelKeyProblem(key: string): string | undefined {
  return LABEL_KEY_RE.test(key) ? undefined : `"${key.slice(0, 80)}": ${LABEL_KEY_RULE}`;
}

/** Why `value` is not a label value, or undefined when it is one. */
export function labelValueProblem(key: string, value: string): string | undefined {
  return value.length > MAX_LABEL_VALUE || CONTROL.test(value) ? `"${key}": ${LABEL_VALUE_RULE}` : undefined;
}

/** True when `labels` carries every key of `selector` with the same value (labels AND together). */
export function matchesLabels(labels: Labels | undefined, selector: Labels): boolean {
  for (const [k, v] of Object.entries(selector)) if (!labels || !Object.hasOwn(labels, k) || labels[k] !== v) return false;
  return true;
}

/**
 * A selector from `key=value` words (`?label=user=123&label=task=t-1`, `--label user=123`):
 * the first `=` splits; the value may hold more. Throws an Error naming the rule broken.
 * Two words with the same key and different values select nothing, so they are refused.
 */
export function parseLabelSelector(words: readonly string[]): Labels {
  const out: Labels = {};
  for (const w of words) {
    const i = w.indexOf('=');
    if (i < 0) throw new Error(`label "${w.slice(0, 80)}": expected key=value (e.g. user=123)`);
    const [k, v] = [w.slice(0, i), w.slice(i + 1)];
    const problem = labelKeyProblem(k) ?? labelValueProblem(k, v);
    if (problem) throw new Error(`label ${problem}`);
    if (Object.hasOwn(out, k) && out[k] !== v) throw new Error(`label "${k}" given twice with different values`);
    out[k] = v;
  }
  return out;
}
