import { AGED_PRIORITY, isAbove, PRIORITIES, Priority, priorityRank } from '@darkroom/contracts';
import { describe, expect, it } from 'vitest';

describe('priorityRank', () => {
  it('maps critical..low to BullMQ priorities 2..5, above them the aged class', () => {
    expect(PRIORITIES.map(priorityRank)).toEqual([2, 3, 4, 5]);
    expect(priorityRank('critical')).toBe(2);
    expect(priorityRank('low')).toBe(5);
    expect(AGED_PRIORITY).toBeLessThan(priorityRank('critical'));
  });
});

describe('isAbove', () => {
  it('is true only when the request is strictly more urgent', () => {
    expect(isAbove('critical', 'high')).toBe(true);
    expect(isAbove('high', 'normal')).toBe(true);
    expect(isAbove('normal', 'low')).toBe(true);
    expect(isAbove('critical', 'low')).toBe(true);
  });

  it('is false for the same class and for less urgent ones', () => {
    for (const p of PRIORITIES) expect(isAbove(p, p)).toBe(false);
    expect(isAbove('low', 'critical')).toBe(false);
    expect(isAbove('normal', 'high')).toBe(false);
  });

  it('agrees with rank order for every pair', () => {
    const pairs = PRIORITIES.flatMap((a) => PRIORITIES.map((b) => [a, b, isAbove(a, b)] as const));
    expect(pairs.filter(([, , above]) => above).map(([a, b]) => `${a}>${b}`)).toEqual([
      'critical>high',
      'critical>normal',
      'critical>low',
      'high>normal',
      'high>low',
      'normal>low',
    ]);
  });
});

describe('Priority schema', () => {
  it('accepts the four names and nothing else', () => {
    expect(Priority.options).toEqual(['critical', 'high', 'normal', 'low']);
    expect(Priority.safeParse('urgent').success).toBe(false);
    expect(Priority.safeParse('NORMAL').success).toBe(false);
    expect(Priority.safeParse(1).success).toBe(false);
  });
});
