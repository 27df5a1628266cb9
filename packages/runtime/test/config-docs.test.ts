import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { EnvSchema } from '../src/config.ts';
import { renderEnvExample, SETTING_DOCS, SETTING_NAMES, settingDefault, withConfigTable } from '../src/config-docs.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const read = (f: string) => fs.readFileSync(path.join(root, f), 'utf8');

describe('the settings are documented from the schema', () => {
  it('every schema setting has a description, and no description names an unknown setting', () => {
    const schema = Object.keys(EnvSchema.shape).sort();
    expect(Object.keys(SETTING_DOCS).sort()).toEqual(schema);
    for (const name of SETTING_NAMES) expect(SETTING_DOCS[name].meaning.trim().length, name).toBeGreaterThan(5);
  });

  it('takes each default from the schema, as the environment spells it', () => {
    expect(settingDefault('PORT')).toBe('8080');
    expect(settingDefault('DARKROOM_FSYNC_INPUTS')).toBe('false');
    expect(settingDefault('DARKROOM_STATION_MAX_PRIORITY')).toBe('critical');
    expect(settingDefault('DARKROOM_COMFYUI_URL')).toBeUndefined();
  });

  it('.env.example is what `pnpm env:example` writes (run it after changing a setting)', () => {
    expect(read('.env.example')).toBe(renderEnvExample());
  });

  it('.env.example lists every setting once, with its default', () => {
    const assigned = read('.env.example')
      .split('\n')
      .filter((l) => /^[A-Z0-9_]+=/.test(l))
      .map((l) => l.split('=', 1)[0]);
    expect(assigned).toEqual(SETTING_NAMES);
    expect(read('.env.example')).toContain('\nDARKROOM_MAX_QUEUE_SIZE=1000\n');
  });

  it("README's configuration table is what `pnpm env:example` writes (run it after changing a setting)", () => {
    const readme = read('README.md');
    expect(readme).toBe(withConfigTable(readme));
  });

  it("README's configuration table has a row for every setting and none for an unknown one", () => {
    const readme = read('README.md');
    const section = readme.slice(
      readme.indexOf('\n## Configuration\n'),
      readme.indexOf('\n## ', readme.indexOf('\n## Configuration\n') + 5),
    );
    const rows = section
      .split('\n')
      .filter((l) => l.startsWith('|'))
      .map((l) => l.split('|').map((c) => c.trim()));
    expect(rows[0]!.slice(1, 4)).toEqual(['variable', 'default', 'meaning']);
    const names = rows.slice(2).map((cells) => /^`([A-Z0-9_]+)`$/.exec(cells[1]!)?.[1]);
    expect([...names].sort()).toEqual([...SETTING_NAMES].sort());
    for (const cells of rows.slice(2)) expect(cells[3]!.length, cells[1]).toBeGreaterThan(0);
  });
});
