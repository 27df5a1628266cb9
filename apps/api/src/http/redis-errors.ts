/*
 * Errors that mean "Redis is not there right now". They become 503 + Retry-After; their text
 * (hosts, ports, commands) never reaches a client.
 */
const PATTERNS = [
  /Stream isn't writeable/i,
  /Connection is closed/i,
  /Command timed out/i,
  /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENOTFOUND/,
  /connect ETIMEDOUT/i,
  /MaxRetriesPerRequest/i,
  /LOADING Redis is loading/i,
  /operation timed out/i,
  // A master demoted by a failover, before the connection found the new one.
  /^READONLY /,
  // A cluster with a slot uncovered or being moved, or no node reachable.
  /^CLUSTERDOWN|^TRYAGAIN|Failed to refresh slots cache|None of startup nodes is available/,
  // Sentinels that name no master yet.
  /All sentinels are unreachable/i,
];

export function isRedisUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err.name === 'MaxRetriesPerRequestError' || err.name === 'ConnectionClosedError') return true;
  return PATTERNS.some((p) => p.test(err.message));
}
