import { z } from 'zod';

/*
 * The webhook events a submit may ask for (`webhookEvents`). A delivery's `Darkroom-Event` header
 * (and the webhooks queue's job name) is the event prefixed with `job.`.
 */

export const WebhookEventName = z.enum(['completed', 'failed', 'cancelled', 'started']);
export type WebhookEventName = z.infer<typeof WebhookEventName>;

/** Without `webhookEvents`: the final states, one delivery per job. */
export const DEFAULT_WEBHOOK_EVENTS: readonly WebhookEventName[] = ['completed', 'failed', 'cancelled'];
