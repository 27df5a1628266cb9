export { type Config, ConfigError, type Env, loadConfig } from './config.ts';
export { createLogger, type Logger } from './logger.ts';
export { checkEvictionPolicy, createRedis } from './redis.ts';
export { Shutdown } from './shutdown.ts';
