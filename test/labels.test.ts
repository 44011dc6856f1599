/** The label rules of protocol/labels.ts, which the daemon, the CLI and the SDK share. */
import { describe, expect, it } from 'vitest';
import { AccountConfig, PatchAccountRequest } from '../src/protocol/api.js';
import { describeIssues } from '../src/protocol/issues.js';
import { matchesLabels, parseLabelSelector } from '../src/protocol/labels.js';

describe('labels', () => {
  it('parses key=value selectors on the first "=" and refuses what no label could match', () => {
    expect(parseLabelSelector(['user=123', 'note=a=b', 'empty='])).toEqual({ user: '123', note: 'a=b', empty: '' });
    expect(parseLabelSelector(['user=1', 'user=1'])).toEqual({ user: '1' });
    expect(() => parseLabelSelector(['user'])).toThrow('expected key=value');
    expect(() => parseLabelSelector(['=1'])).toThrow('a label key is');
    expect(() => parseLabelSelector(['User=1'])).toThrow('a label key is');
    expect(() => parseLabelSelector(['user=1', 'user=2'])).toThrow('given twice');
    expect(() => parseLabelSelector(['user=\u0007'])).toThrow('without control characters');
  });

  it('matches an account carrying every label of the selector, and every account with an empty one', () => {
    const labels = { user: '123', task: 't-1' };
    expect(matchesLabels(labels, { user: '123' })).toBe(true);
    expect(matchesLabels(labels, { user: '123', task: 't-1' })).toBe(true);
    expect(matchesLabels(labels, { user: '123', task: 't-2' })).toBe(false);
    expect(matchesLabels(undefined, { user: '123' })).toBe(false);
    expect(matchesLabels(undefined, {})).toBe(true);
    // Only own keys: a prototype's property is no label.
    expect(matchesLabels({}, { constructor: 'x' })).toBe(false);
  });

  it('checks labels in the account schema, naming the rule; a patch may set one to null', () => {
    const bad = AccountConfig.safeParse({ labels: { Bad: 'x', ok: 'a\tb' } });
    expect(bad.success).toBe(false);
    const message = describeIssues(bad.error!);
    expect(message).toContain('labels: "Bad": a label key is 1-63 lower-case letters');
    expect(message).toContain('labels: "ok": a label value is at most 256 characters, without control characters');
    expect(PatchAccountRequest.safeParse({ labels: { user: null } }).success).toBe(true);
    expect(AccountConfig.safeParse({ labels: { user: null } }).success).toBe(false);
  });
});
