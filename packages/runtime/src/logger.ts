import { type Logger as PinoLogger, pino } from 'pino';

export type Logger = PinoLogger;

/**
 * JSON lines in production or when piped; pretty lines in a terminal. Secrets that could reach a
 * log through a request or an error object are redacted at the source.
 */
export function createLogger(opts: { name: string; level?: string; pretty?: boolean }): Logger {
  const pretty = opts.pretty ?? (process.stdout.isTTY === true && process.env.NODE_ENV !== 'production');
  return pino({
    name: opts.name,
    level: opts.level ?? 'info',
    redact: {
      paths: [
        'req.headers.authorization',
        'req.headers["x-api-key"]',
        'req.headers.cookie',
        'headers.authorization',
        'headers["x-api-key"]',
      ],
      censor: '[redacted]',
    },
    ...(pretty
      ? { transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } } }
      : {}),
  });
}
