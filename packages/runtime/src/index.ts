export { type Config, ConfigError, type Env, loadConfig } from './config.ts';
export { createLogger, type Logger, prettyByDefault } from './logger.ts';
export { checkEvictionPolicy, createRedis, type RedisKind, type RedisTarget, redisOptions, watchEvictionPolicy } from './redis.ts';
export { Shutdown } from './shutdown.ts';
