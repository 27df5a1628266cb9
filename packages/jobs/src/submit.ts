import { DEFAULT_WEBHOOK_EVENTS, type FieldError, type PipelineSpec, Priority, pipelineSpec, WebhookEventName } from '@darkroom/contracts';
import { type ImageSource, imageByteLength } from '@darkroom/images';
import { sha256Hex } from './blob-store.ts';
import { InvalidSubmit, PriorityNotAllowed, UnknownPipeline } from './errors.ts';
import type { Station } from './station.ts';

/**
 * A submit as its encoding (multipart or JSON) carried it, before any field is judged, so both
 * encodings are judged alike.
 */
export interface RawSubmit {
  pipeline?: unknown;
  params?: unknown;
  priority?: unknown;
  webhookUrl?: unknown;
  timeoutSeconds?: unknown;
  ttlSeconds?: unknown;
  webhookEvents?: unknown;
  /** Instead of an image: where the api is to fetch it from. */
  imageUrl?: unknown;
  /** The image, if one was sent (possibly empty): in memory, or spooled to a temporary file. */
  image?: ImageSource;
  /** Their sha256 (hex), computed as they arrived. */
  imageSha256?: string;
  /** What the encoding itself found wrong (params that are not JSON, bad base64…). */
  errors: FieldError[];
}

export interface ValidSubmit {
  spec: PipelineSpec;
  params: Record<string, unknown>;
  priority: Priority;
  webhookUrl: string | undefined;
  /** Undefined: the default events (DEFAULT_WEBHOOK_EVENTS). */
  webhookEvents?: WebhookEventName[] | undefined;
  image: ImageSource | undefined;
  /** sha256 (hex) of `image`. */
  imageSha256: string | undefined;
  /**
   * Where the image is to be fetched from, when the station sent a URL instead: `image` stays
   * undefined until the caller has fetched it. The Idempotency-Key fingerprint takes the URL.
   */
  imageUrl?: string;
  /** The job's own execution limit and queue time-to-live, when the station set them. */
  timeoutSeconds?: number;
  ttlSeconds?: number;
}

export interface SubmitOptions {
  webhookSecretAvailable: boolean;
  /** The operator's execution limit and time-to-live (seconds): a job may ask for less, never more. */
  maxTimeoutSeconds?: number;
  maxTtlSeconds?: number;
}

/**
 * Judges a raw submit. Order of refusals: a missing pipeline (InvalidSubmit), an unknown one
 * (UnknownPipeline), then every field error at once (InvalidSubmit), then a priority above the
 * station's (PriorityNotAllowed).
 */
export function validateSubmit(raw: RawSubmit, station: Station, opts: SubmitOptions): ValidSubmit {
  const errors: FieldError[] = [...raw.errors];
  if (typeof raw.pipeline !== 'string' || raw.pipeline === '') {
    errors.push({ path: 'pipeline', message: 'required: the name of a pipeline from GET /v1/pipelines' });
    throw new InvalidSubmit('the request is invalid', errors);
  }
  const spec = pipelineSpec(raw.pipeline);
  if (!spec) throw new UnknownPipeline(raw.pipeline);

  let params: Record<string, unknown> = {};
  // When the encoding already said params are not JSON, there is nothing more to say about their fields.
  if (errors.some((e) => e.path === 'params')) params = {};
  else if (raw.params !== undefined && raw.params !== null && (typeof raw.params !== 'object' || Array.isArray(raw.params))) {
    errors.push({ path: 'params', message: 'must be a JSON object' });
  } else {
    const parsed = spec.params.safeParse(raw.params ?? {});
    if (parsed.success) params = parsed.data as Record<string, unknown>;
    else for (const i of parsed.error.issues) errors.push({ path: ['params', ...i.path.map(String)].join('.'), message: i.message });
  }

  let priority: Priority = station.defaultPriority;
  if (raw.priority !== undefined && raw.priority !== null && raw.priority !== '') {
    const p = Priority.safeParse(raw.priority);
    if (p.success) priority = p.data;
    else errors.push({ path: 'priority', message: 'must be one of critical, high, normal, low' });
  }

  let webhookUrl: string | undefined;
  if (raw.webhookUrl !== undefined && raw.webhookUrl !== null && raw.webhookUrl !== '') {
    const msg = checkHttpUrl(raw.webhookUrl);
    if (msg) errors.push({ path: 'webhookUrl', message: msg });
    else if (!station.webhookSecret && !opts.webhookSecretAvailable) {
      errors.push({ path: 'webhookUrl', message: 'no webhook secret is configured for this station, so webhooks cannot be signed' });
    } else webhookUrl = raw.webhookUrl as string;
  }

  const timeoutSeconds = limitField(raw.timeoutSeconds, 'timeoutSeconds', opts.maxTimeoutSeconds, 'DARKROOM_JOB_TIMEOUT_SECONDS', errors);
  const ttlSeconds = limitField(raw.ttlSeconds, 'ttlSeconds', opts.maxTtlSeconds, 'DARKROOM_JOB_TTL_SECONDS', errors);
  const webhookEvents = parseWebhookEvents(raw.webhookEvents, errors);
  // Events with nowhere to go are a mistake worth saying, not a silent no-op.
  if (webhookEvents && (raw.webhookUrl === undefined || raw.webhookUrl === null || raw.webhookUrl === '')) {
    errors.push({ path: 'webhookEvents', message: 'needs webhookUrl: the events are delivered there' });
  }

  let imageUrl: string | undefined;
  if (raw.imageUrl !== undefined && raw.imageUrl !== null && raw.imageUrl !== '') {
    const msg = checkHttpUrl(raw.imageUrl);
    if (msg) errors.push({ path: 'imageUrl', message: msg });
    else if (raw.image !== undefined || errors.some((e) => e.path === 'image')) {
      errors.push({ path: 'imageUrl', message: 'send either an image or imageUrl, not both' });
    } else if (!spec.acceptsImage) errors.push({ path: 'imageUrl', message: `pipeline ${spec.name} takes no input image` });
    else imageUrl = raw.imageUrl as string;
  }
  const urlSent = imageUrl !== undefined || errors.some((e) => e.path === 'imageUrl');

  // An optional image (comfyui: txt2img takes none) may be left out, but never sent empty.
  const missing = raw.image === undefined ? !spec.imageOptional && !urlSent : imageByteLength(raw.image) === 0;
  if (spec.acceptsImage && missing) {
    if (!errors.some((e) => e.path === 'image')) {
      errors.push({ path: 'image', message: raw.image ? 'the image is empty' : `required: pipeline ${spec.name} takes an input image` });
    }
  }
  if (!spec.acceptsImage && raw.image !== undefined) {
    errors.push({ path: 'image', message: `pipeline ${spec.name} takes no input image` });
  }

  if (errors.length > 0) throw new InvalidSubmit('the request is invalid', errors);
  if (Priority.options.indexOf(priority) < Priority.options.indexOf(station.maxPriority)) {
    throw new PriorityNotAllowed(`priority ${priority} is above this station's highest allowed priority (${station.maxPriority})`);
  }
  const image = spec.acceptsImage ? raw.image : undefined;
  const imageSha256 = !image ? undefined : Buffer.isBuffer(image) ? (raw.imageSha256 ?? sha256Hex(image)) : image.sha256;
  return {
    spec,
    params,
    priority,
    webhookUrl,
    webhookEvents: webhookEvents?.value,
    image,
    imageSha256,
    ...(imageUrl !== undefined ? { imageUrl } : {}),
    ...(timeoutSeconds !== undefined ? { timeoutSeconds } : {}),
    ...(ttlSeconds !== undefined ? { ttlSeconds } : {}),
  };
}

/** A whole number of seconds from 1 to the operator's limit; undefined when not sent. */
function limitField(value: unknown, path: string, max: number | undefined, setting: string, errors: FieldError[]): number | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  // Multipart carries every field as text.
  const n = typeof value === 'string' && /^\d{1,12}$/.test(value.trim()) ? Number(value.trim()) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) {
    errors.push({ path, message: 'must be a whole number of seconds, at least 1' });
    return undefined;
  }
  if (max !== undefined && n > max) {
    errors.push({ path, message: `must be at most ${max} (the operator's limit, ${setting})` });
    return undefined;
  }
  return n;
}

/**
 * `webhookEvents`: a JSON array, or (multipart) a comma-separated list or a JSON array's text.
 * Answers undefined when absent; `value` is undefined when the list is the default one, so such
 * a job stores and fingerprints like one that never named its events.
 */
function parseWebhookEvents(raw: unknown, errors: FieldError[]): { value: WebhookEventName[] | undefined } | undefined {
  if (raw === undefined || raw === null || raw === '') return undefined;
  let list: unknown = raw;
  if (typeof raw === 'string') {
    try {
      list = raw.trim().startsWith('[') ? JSON.parse(raw) : raw.split(',').map((s) => s.trim());
    } catch {
      list = undefined;
    }
  }
  const allowed = WebhookEventName.options.join(', ');
  if (!Array.isArray(list)) {
    errors.push({ path: 'webhookEvents', message: `must be a list of events: ${allowed}` });
    return { value: undefined };
  }
  if (list.length === 0) {
    errors.push({ path: 'webhookEvents', message: `must name at least one event: ${allowed}` });
    return { value: undefined };
  }
  const events = new Set<WebhookEventName>();
  list.forEach((e, i) => {
    const parsed = WebhookEventName.safeParse(e);
    if (parsed.success) events.add(parsed.data);
    else errors.push({ path: `webhookEvents.${i}`, message: `unknown event ${JSON.stringify(e)}: one of ${allowed}` });
  });
  const value = WebhookEventName.options.filter((e) => events.has(e));
  const isDefault = value.length === DEFAULT_WEBHOOK_EVENTS.length && DEFAULT_WEBHOOK_EVENTS.every((e) => events.has(e));
  return { value: isDefault ? undefined : value };
}

/** The shape of a URL the station names (webhookUrl, imageUrl); where it leads is judged later. */
function checkHttpUrl(value: unknown): string | undefined {
  if (typeof value !== 'string') return 'must be an absolute http(s) URL';
  if (value.length > 2048) return 'must be at most 2048 characters';
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'must be an absolute http(s) URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'must use http or https';
  if (url.username || url.password) return 'must not carry credentials';
  return undefined;
}
