import { z } from 'zod';

/** Priority classes, most urgent first. The index + 1 is the BullMQ priority (1 = most urgent). */
export const PRIORITIES = ['critical', 'high', 'normal', 'low'] as const;
export const Priority = z.enum(PRIORITIES);
export type Priority = z.infer<typeof Priority>;

export function priorityRank(p: Priority): number {
  return PRIORITIES.indexOf(p) + 1;
}

/** True when `requested` is more urgent than `allowed`. */
export function isAbove(requested: Priority, allowed: Priority): boolean {
  return priorityRank(requested) < priorityRank(allowed);
}
