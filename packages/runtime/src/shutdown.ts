import type { Logger } from './logger.ts';

/*
 * One shutdown registry per process: resources registered by name, closed in reverse order,
 * each bounded by a timeout. The first SIGTERM/SIGINT shuts down gracefully; a second exits at once.
 */
export class Shutdown {
  readonly #steps: { name: string; close: () => Promise<void> }[] = [];
  readonly #logger: Logger;
  #running: Promise<void> | undefined;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  add(name: string, close: () => Promise<void>): void {
    this.#steps.push({ name, close });
  }

  run(timeoutMs = 30_000): Promise<void> {
    this.#running ??= (async () => {
      for (const step of [...this.#steps].reverse()) {
        let timer: NodeJS.Timeout | undefined;
        try {
          await Promise.race([
            step.close(),
            new Promise((_, reject) => {
              timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
            }),
          ]);
          this.#logger.debug({ step: step.name }, 'closed');
        } catch (err) {
          this.#logger.warn({ step: step.name, err: (err as Error).message }, 'close failed');
        } finally {
          clearTimeout(timer);
        }
      }
    })();
    return this.#running;
  }

  /** Wires SIGTERM/SIGINT: graceful first, forced on the second signal. */
  installSignalHandlers(timeoutMs?: number): void {
    let signalled = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (signalled) {
        this.#logger.warn({ signal }, 'second signal: exiting now');
        process.exit(130);
      }
      signalled = true;
      this.#logger.info({ signal }, 'shutting down');
      void this.run(timeoutMs).then(() => process.exit(0));
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  }
}
