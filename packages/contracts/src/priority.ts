import { z } from 'zod';

/**
 * Priority classes, most urgent first. BullMQ priorities: critical 2 … low 5. Priority 1 is
 * reserved for jobs that waited past the maximum wait (aging), so they start before any new
 * critical work, oldest first.
 */
export const PRIORITIES = ['critical', 'high', 'normal', 'low'] as const;
export const Priority = z.enum(PRIORITIES);
export type Priority = z.infer<typeof Priority>;

export const AGED_PRIORITY = 1;

/** The BullMQ priority of a class. */
export function priorityRank(p: Priority): number {
  return PRIORITIES.indexOf(p) + 2;
}

/** True when `requested` is more urgent than `allowed`. */
export function isAbove(requested: Priority, allowed: Priority): boolean {
  return priorityRank(requested) < priorityRank(allowed);
}
