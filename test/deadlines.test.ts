import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Deadlines } from '../src/daemon/http/deadlines.js';

describe('Deadlines: many waits on one timer (the proxy’s upstream timeout)', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'performance'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('fires a wait once it is due, never one cancelled, and stops its timer when nothing waits', () => {
    const d = new Deadlines();
    const fired: string[] = [];
    d.add(1000, () => fired.push('a'));
    const b = d.add(1000, () => fired.push('b'));
    d.cancel(b);
    d.cancel(b); // twice: nothing more
    vi.advanceTimersByTime(999);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(300);
    expect(fired).toEqual(['a']);
    expect(d.size).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(5000);
    expect(fired).toEqual(['a']);
  });

  it('a short wait added while long ones wait fires near its own deadline, not the long ones’ pace', () => {
    const d = new Deadlines();
    const fired: string[] = [];
    d.add(60_000, () => fired.push('long'));
    d.add(100, () => fired.push('short'));
    vi.advanceTimersByTime(120);
    expect(fired).toEqual(['short']);
    vi.advanceTimersByTime(60_000);
    expect(fired).toEqual(['short', 'long']);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a wait cancelled by another that fires in the same sweep does not fire', () => {
    const d = new Deadlines();
    const fired: string[] = [];
    let b: ReturnType<Deadlines['add']> | undefined;
    d.add(100, () => {
      fired.push('a');
      if (b) d.cancel(b);
    });
    b = d.add(100, () => fired.push('b'));
    d.add(100, () => fired.push('c'));
    vi.advanceTimersByTime(200);
    expect(fired).toEqual(['a', 'c']);
    expect(d.size).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('starts its timer again for a wait added after it stopped', () => {
    const d = new Deadlines();
    const fired: number[] = [];
    d.add(100, () => fired.push(1));
    vi.advanceTimersByTime(200);
    expect(vi.getTimerCount()).toBe(0);
    d.add(100, () => fired.push(2));
    vi.advanceTimersByTime(200);
    expect(fired).toEqual([1, 2]);
  });
});
