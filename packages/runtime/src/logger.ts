import { type Logger as PinoLogger, pino } from 'pino';

export type Logger = PinoLogger;

/**
 * Whether logs are pretty when DARKROOM_LOG_PRETTY does not say: on a terminal, for a person
 * reading `pnpm start`; JSON lines when piped or in production, for a log collector.
 */
export function prettyByDefault(stdout: { isTTY?: boolean } = process.stdout, nodeEnv = process.env.NODE_ENV): boolean {
  return stdout.isTTY === true && nodeEnv !== 'production';
}

/**
 * JSON lines in production or when piped; pretty lines in a terminal. Secrets that could reach a
 * log through a request or an error object are redacted at the source.
 */
export function createLogger(opts: { name: string; level?: string; pretty?: boolean }): Logger {
  const pretty = opts.pretty ?? prettyByDefault();
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
