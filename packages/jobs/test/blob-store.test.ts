import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { blobKeys, FsBlobStore, sha256Hex } from '@darkroom/jobs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

let dir: string;
let store: FsBlobStore;

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'darkroom-blob-'));
  store = new FsBlobStore(dir);
  await store.ensureReady();
});

afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const readStream = async (s: NodeJS.ReadableStream) => {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
};

describe('FsBlobStore', () => {
  it('creates its directories', async () => {
    expect((await fs.readdir(dir)).sort()).toEqual(['inputs', 'outputs', 'tmp']);
  });

  it('put returns size and sha256 and writes the bytes under the key', async () => {
    const data = Buffer.from('hello darkroom');
    const out = await store.put('inputs/edit_abc', data);
    expect(out).toEqual({ bytes: 14, sha256: createHash('sha256').update(data).digest('hex') });
    expect(out.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(await fs.readFile(path.join(dir, 'inputs/edit_abc'))).toEqual(data);
    expect(await store.exists('inputs/edit_abc')).toBe(true);
  });

  it('hashes the empty blob correctly', async () => {
    expect(await store.put('outputs/empty.png', Buffer.alloc(0))).toEqual({
      bytes: 0,
      sha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    });
  });

  it('leaves nothing in tmp/ after put', async () => {
    await store.put('outputs/a.webp', Buffer.alloc(1000, 1));
    await store.put('outputs/b.webp', Buffer.alloc(10, 2));
    expect(await fs.readdir(path.join(dir, 'tmp'))).toEqual([]);
  });

  it('creates missing parent directories for a key', async () => {
    await store.put('outputs/2024/01/x.png', Buffer.from([1, 2, 3]));
    expect(await fs.readFile(path.join(dir, 'outputs/2024/01/x.png'))).toEqual(Buffer.from([1, 2, 3]));
  });

  it('replaces rather than duplicates on a second put', async () => {
    await store.put('outputs/x.png', Buffer.from('first'));
    const out = await store.put('outputs/x.png', Buffer.from('second!'));
    expect(out.bytes).toBe(7);
    expect((await fs.readFile(path.join(dir, 'outputs/x.png'))).toString()).toBe('second!');
    expect(await fs.readdir(path.join(dir, 'outputs'))).toEqual(['x.png']);
  });

  it('cleans its temporary file when a put fails', async () => {
    await expect(store.put('../escape', Buffer.from('x'))).rejects.toThrow('blob key escapes the data directory: ../escape');
    expect(await fs.readdir(path.join(dir, 'tmp'))).toEqual([]);
    await expect(fs.access(path.join(path.dirname(dir), 'escape'))).rejects.toThrow();
  });

  it('adopts a finished temporary file', async () => {
    const tmp = store.tempPath();
    expect(path.dirname(tmp)).toBe(path.join(dir, 'tmp'));
    expect(tmp.endsWith('.part')).toBe(true);
    await fs.writeFile(tmp, 'adopted');
    await store.adopt(tmp, 'outputs/adopted.jpg');
    expect((await fs.readFile(path.join(dir, 'outputs/adopted.jpg'))).toString()).toBe('adopted');
    expect(await fs.readdir(path.join(dir, 'tmp'))).toEqual([]);
  });

  it('gives distinct temporary paths', () => {
    expect(store.tempPath()).not.toBe(store.tempPath());
  });

  it('opens a blob for reading, from an offset', async () => {
    await store.put('outputs/r.bin', Buffer.from('0123456789'));
    const read = await store.openRead('outputs/r.bin');
    expect(read.bytes).toBe(10);
    expect((await readStream(read.body)).toString()).toBe('0123456789');
  });

  it('localPath resolves keys inside the root', () => {
    expect(store.localPath('inputs/edit_abc')).toBe(path.join(dir, 'inputs', 'edit_abc'));
    expect(store.localPath('inputs/../outputs/x')).toBe(path.join(dir, 'outputs', 'x'));
  });

  it.each(['../x', '..', '', '.', 'inputs/../../x', '/etc/passwd', `../${'sibling'}/x`])('localPath refuses %j', (key) => {
    expect(() => store.localPath(key)).toThrow(`blob key escapes the data directory: ${key}`);
  });

  it('localPath refuses a sibling directory that shares the root as a prefix', () => {
    const sibling = `../${path.basename(dir)}-evil/x`;
    expect(() => store.localPath(sibling)).toThrow('blob key escapes the data directory');
  });

  it('exists is false for a missing or escaping key', async () => {
    expect(await store.exists('inputs/missing')).toBe(false);
    expect(await store.exists('../x')).toBe(false);
  });

  it('create writes a new blob straight under its key, with or without fsync, and never replaces one', async () => {
    const data = Buffer.alloc(300_000, 7); // more than one write's worth on some systems
    await store.create('inputs/edit_new', data);
    await store.create('inputs/edit_synced', Buffer.from('synced'), { sync: true });
    expect(await fs.readFile(path.join(dir, 'inputs/edit_new'))).toEqual(data);
    expect((await fs.readFile(path.join(dir, 'inputs/edit_synced'))).toString()).toBe('synced');
    expect(await fs.readdir(path.join(dir, 'tmp'))).toEqual([]);
    await expect(store.create('inputs/edit_new', Buffer.from('other'))).rejects.toMatchObject({ code: 'EEXIST' });
    expect(await fs.readFile(path.join(dir, 'inputs/edit_new'))).toEqual(data);
    await expect(store.create('../escape', Buffer.from('x'))).rejects.toThrow('blob key escapes the data directory');
  });

  it('removes the temporary files an interrupted write of a key left, and only those', async () => {
    const mine = store.tempPath('outputs/edit_a.webp');
    const other = store.tempPath('outputs/edit_b.webp');
    const anonymous = store.tempPath();
    expect(path.basename(mine)).toMatch(/^edit_a\.webp\.[0-9a-f-]{36}\.part$/);
    for (const f of [mine, other, anonymous]) await fs.writeFile(f, 'partial');
    await store.put('outputs/edit_a.webp', Buffer.from('whole'));
    expect(await store.removeTemps('outputs/edit_a.webp')).toBe(1);
    expect((await fs.readdir(path.join(dir, 'tmp'))).sort()).toEqual([path.basename(anonymous), path.basename(other)].sort());
    expect((await fs.readFile(path.join(dir, 'outputs/edit_a.webp'))).toString()).toBe('whole');
  });

  it('sha256Hex matches a streamed sha256', () => {
    const data = Buffer.from('hello darkroom');
    expect(sha256Hex(data)).toBe(createHash('sha256').update(data).digest('hex'));
    expect(sha256Hex(Buffer.alloc(0))).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });

  it('delete removes a blob and is idempotent', async () => {
    await store.put('inputs/d', Buffer.from('x'));
    await store.delete('inputs/d');
    expect(await store.exists('inputs/d')).toBe(false);
    await expect(store.delete('inputs/d')).resolves.toBeUndefined();
    await expect(store.delete('inputs/never-was')).resolves.toBeUndefined();
  });

  it('delete refuses keys escaping the root', async () => {
    await expect(store.delete('../x')).rejects.toThrow('blob key escapes the data directory: ../x');
  });
});

describe('blobKeys', () => {
  it('puts inputs and outputs in their folders', () => {
    expect(blobKeys.input('edit_abc')).toBe('inputs/edit_abc');
    expect(blobKeys.output('edit_abc', 'webp')).toBe('outputs/edit_abc.webp');
  });
});
