import type { ParseArgsConfig } from 'node:util';
import type { DarkroomClient } from '@darkroom/client';
import type { Io } from './io.ts';

/** What every command gets: the client, the streams, and the global flags. */
export interface Context {
  io: Io;
  client: DarkroomClient;
  /** `--json`: stdout carries the API's body, nothing else. */
  json: boolean;
  quiet: boolean;
}

export type Options = NonNullable<ParseArgsConfig['options']>;
export type Values = Record<string, string | boolean | string[] | undefined>;

export interface Command {
  name: string;
  summary: string;
  /** Usage lines and option descriptions, shown by `darkroom <command> --help`. */
  help: string;
  options: Options;
  run(ctx: Context, args: string[], values: Values): Promise<number>;
}
