import net from 'node:net';
import zlib from 'node:zlib';
import { fixture } from '@darkroom/testing';
import fc from 'fast-check';

/*
 * Generators of hostile input for e2e-hostile.test.ts, and the raw-socket client it uses for
 * requests fetch refuses to send (lying Content-Length, broken chunked encoding, half-sent bodies).
 */

// ---------------------------------------------------------------------------------------------
// Seed and scale

/** `DARKROOM_FUZZ_SEED` overrides the fixed seed, so CI is deterministic and a failure can be replayed. */
export const FUZZ_SEED = Number.parseInt(process.env.DARKROOM_FUZZ_SEED ?? '', 10) || 0x0da4c001;
/** `DARKROOM_FUZZ_RUNS` multiplies every property's run count (e.g. 10 for a long local run). */
export const FUZZ_SCALE = Math.max(0.01, Number(process.env.DARKROOM_FUZZ_RUNS) || 1);
export const runs = (n: number) => Math.max(1, Math.round(n * FUZZ_SCALE));

// ---------------------------------------------------------------------------------------------
// Fixtures

/** Every fixture that is a real, complete image in an accepted format. */
export const REAL_IMAGES = [
  'Landscape_1.jpg',
  'Landscape_2.jpg',
  'Landscape_3.jpg',
  'Landscape_4.jpg',
  'Landscape_5.jpg',
  'Landscape_6.jpg',
  'Landscape_7.jpg',
  'Landscape_8.jpg',
  '2569067123_aca715a2ee_o.jpg',
  'flowers.jpeg',
  'concert.jpg',
  'Channel_digital_image_CMYK_color.jpg',
  '16-bit-grey-alpha.png',
  'Flag_of_the_Netherlands-16bit.png',
  'with-alpha.png',
  'animated-loop-3.gif',
  'rotating-squares.webp',
  'pitm.avif',
  'G31D.TIF',
] as const;

/** The broken, hostile or refused fixtures: truncated, corrupt, pixel bombs, SVG, JPEG 2000. */
export const HOSTILE_IMAGES = [
  'truncated.jpg',
  'truncated.png',
  'corrupt-header.jpg',
  'giant-image.jpg',
  '65536-uint32-limit.png',
  'check.svg',
  'relax.jp2',
] as const;

const cache = new Map<string, Buffer>();
export function image(name: string): Buffer {
  let b = cache.get(name);
  if (!b) {
    b = fixture(name);
    cache.set(name, b);
  }
  return b;
}

// ---------------------------------------------------------------------------------------------
// Images

const u8 = (...b: number[]) => Buffer.from(b);
const latin1 = (s: string) => Buffer.from(s, 'latin1');
const be32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};

/** Magic numbers of every format the sniffer knows (and a few it refuses), to reach past it. */
const MAGICS: Buffer[] = [
  u8(0xff, 0xd8, 0xff),
  u8(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a),
  latin1('GIF89a'),
  latin1('GIF87a'),
  latin1('RIFF\x10\x00\x00\x00WEBPVP8 '),
  latin1('RIFF\xff\xff\xff\xffWEBPVP8L'),
  Buffer.concat([be32(28), latin1('ftypavif'), be32(0), latin1('avifmif1miaf')]),
  Buffer.concat([be32(24), latin1('ftypheic'), be32(0), latin1('mif1heic')]),
  Buffer.concat([be32(0xffffffff), latin1('ftypavis')]),
  latin1('II*\0'),
  latin1('MM\0*'),
  latin1('II+\0'),
  latin1('MM\0+'),
  latin1('<svg xmlns="http://www.w3.org/2000/svg">'),
  latin1('\uFEFF  <svg>'),
];

const bytes = (maxLength: number, minLength = 0) => fc.uint8Array({ minLength, maxLength }).map((a) => Buffer.from(a));

/** A PNG chunk with a correct CRC, so libpng gets past the checksum to the values. */
function pngChunk(type: string, data: Buffer): Buffer {
  const td = Buffer.concat([latin1(type), data]);
  return Buffer.concat([be32(data.length), td, be32(zlib.crc32(td))]);
}

const dimension = fc.oneof(
  fc.integer({ min: 0, max: 70_000 }),
  fc.constantFrom(0, 1, 8192, 8193, 65535, 65536, 0x7fffffff, 0x80000000, 0xffffffff),
);

/** Structurally plausible headers with hostile values: huge dimensions, lying lengths, missing ends. */
const structuredImage = fc.oneof(
  // PNG: IHDR with any dimensions and depth, random chunks, maybe IEND.
  fc
    .record({
      w: dimension,
      h: dimension,
      depth: fc.constantFrom(1, 2, 4, 8, 16, 0, 3, 255),
      color: fc.constantFrom(0, 2, 3, 4, 6, 1, 7),
      interlace: fc.constantFrom(0, 1, 2),
      chunks: fc.array(fc.tuple(fc.constantFrom('IDAT', 'PLTE', 'tRNS', 'acTL', 'fcTL', 'iCCP', 'zzzz', 'eXIf'), bytes(64)), {
        maxLength: 4,
      }),
      iend: fc.boolean(),
      lieLength: fc.option(fc.nat(), { nil: undefined }),
    })
    .map(({ w, h, depth, color, interlace, chunks, iend, lieLength }) => {
      const ihdr = Buffer.concat([be32(w), be32(h), u8(depth, color, 0, 0, interlace)]);
      const body = [MAGICS[1]!, pngChunk('IHDR', ihdr), ...chunks.map(([t, d]) => pngChunk(t, d))];
      if (lieLength !== undefined) body.push(Buffer.concat([be32(lieLength), latin1('IDAT'), u8(1, 2, 3)]));
      if (iend) body.push(pngChunk('IEND', Buffer.alloc(0)));
      return Buffer.concat(body);
    }),
  // JPEG: SOF with any dimensions, segments with any lengths, maybe a scan and EOI.
  fc
    .record({
      w: fc.integer({ min: 0, max: 65535 }),
      h: fc.integer({ min: 0, max: 65535 }),
      comps: fc.integer({ min: 0, max: 5 }),
      sof: fc.constantFrom(0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc9, 0xcf),
      segments: fc.array(fc.tuple(fc.integer({ min: 0xc0, max: 0xfe }), fc.integer({ min: 0, max: 0xffff }), bytes(32)), { maxLength: 5 }),
      scan: fc.option(bytes(128), { nil: undefined }),
      eoi: fc.boolean(),
    })
    .map(({ w, h, comps, sof, segments, scan, eoi }) => {
      const sofData = Buffer.alloc(6 + comps * 3);
      sofData[0] = 8;
      sofData.writeUInt16BE(h, 1);
      sofData.writeUInt16BE(w, 3);
      sofData[5] = comps;
      for (let i = 0; i < comps; i++) sofData.set([i + 1, 0x11, 0], 6 + i * 3);
      const sofLen = Buffer.alloc(2);
      sofLen.writeUInt16BE(sofData.length + 2);
      const parts = [u8(0xff, 0xd8), u8(0xff, sof), sofLen, sofData];
      for (const [marker, len, data] of segments) {
        const l = Buffer.alloc(2);
        l.writeUInt16BE(len);
        parts.push(u8(0xff, marker), l, data);
      }
      if (scan) parts.push(u8(0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3f, 0x00), scan);
      if (eoi) parts.push(u8(0xff, 0xd9));
      return Buffer.concat(parts);
    }),
  // GIF: logical screen of any size, random blocks, maybe the trailer.
  fc
    .record({ w: fc.integer({ min: 0, max: 65535 }), h: fc.integer({ min: 0, max: 65535 }), rest: bytes(256), trailer: fc.boolean() })
    .map(({ w, h, rest, trailer }) => {
      const head = Buffer.alloc(13);
      head.write('GIF89a', 0, 'latin1');
      head.writeUInt16LE(w, 6);
      head.writeUInt16LE(h, 8);
      head[10] = 0xf7;
      return Buffer.concat([head, rest, trailer ? u8(0x3b) : Buffer.alloc(0)]);
    }),
  // WebP: RIFF size that lies, VP8X canvas of any size.
  fc
    .record({ size: fc.nat(), w: fc.integer({ min: 0, max: 0xffffff }), h: fc.integer({ min: 0, max: 0xffffff }), rest: bytes(128) })
    .map(({ size, w, h, rest }) => {
      const b = Buffer.alloc(30);
      b.write('RIFF', 0, 'latin1');
      b.writeUInt32LE(size >>> 0, 4);
      b.write('WEBPVP8X', 8, 'latin1');
      b.writeUInt32LE(10, 16);
      b[20] = 0x10;
      b.writeUIntLE(w, 24, 3);
      b.writeUIntLE(h, 27, 3);
      return Buffer.concat([b, rest]);
    }),
  // TIFF: an IFD at any offset with any entries (width, height, offsets pointing anywhere).
  fc
    .record({
      le: fc.boolean(),
      ifd: fc.nat(),
      entries: fc.array(
        fc.tuple(
          fc.constantFrom(256, 257, 258, 259, 262, 273, 277, 278, 279, 330, 34665),
          fc.integer({ min: 1, max: 16 }),
          fc.nat(),
          fc.nat(),
        ),
        {
          maxLength: 12,
        },
      ),
      rest: bytes(64),
    })
    .map(({ le, ifd, entries, rest }) => {
      const head = Buffer.alloc(8 + 2 + entries.length * 12 + 4);
      head.write(le ? 'II' : 'MM', 0, 'latin1');
      const w16 = (v: number, o: number) => (le ? head.writeUInt16LE(v & 0xffff, o) : head.writeUInt16BE(v & 0xffff, o));
      const w32 = (v: number, o: number) => (le ? head.writeUInt32LE(v >>> 0, o) : head.writeUInt32BE(v >>> 0, o));
      w16(42, 2);
      w32(ifd % 64 === 0 ? 8 : ifd, 4);
      w16(entries.length, 8);
      entries.forEach(([tag, type, count, value], i) => {
        const o = 10 + i * 12;
        w16(tag, o);
        w16(type, o + 2);
        w32(count, o + 4);
        w32(value, o + 8);
      });
      return Buffer.concat([head, rest]);
    }),
  // ISO-BMFF (AVIF/HEIC): boxes with sizes that lie, 64-bit sizes, zero sizes.
  fc
    .array(
      fc.tuple(fc.constantFrom(0, 1, 7, 8, 16, 64, 0xffffffff), fc.constantFrom('meta', 'mdat', 'free', 'moov', 'iloc', 'ispe'), bytes(24)),
      { maxLength: 5 },
    )
    .map((boxes) => Buffer.concat([MAGICS[6]!, ...boxes.map(([size, type, data]) => Buffer.concat([be32(size), latin1(type), data]))])),
);

/** Random bytes: pure noise, noise behind a real magic number, or hostile structured headers. */
export const randomImageBytes: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 2, arbitrary: bytes(2048) },
  { weight: 3, arbitrary: fc.tuple(fc.constantFrom(...MAGICS), bytes(2048)).map(([m, r]) => Buffer.concat([m, r])) },
  { weight: 4, arbitrary: structuredImage },
);

/** A prefix of a real image, cut anywhere (at least one byte short of the whole). */
export const truncatedImage = (name: string) =>
  fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }).map((f) => {
    const b = image(name);
    return b.subarray(0, Math.floor(f * b.length));
  });

/** A real image with 1–16 bytes changed at random places. */
export const flippedImage = (name: string) =>
  fc
    .array(fc.tuple(fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), fc.integer({ min: 1, max: 255 })), {
      minLength: 1,
      maxLength: 16,
    })
    .map((flips) => {
      const b = Buffer.from(image(name));
      for (const [at, xor] of flips) {
        const i = Math.floor(at * b.length);
        b[i] = b[i]! ^ xor;
      }
      return b;
    });

// ---------------------------------------------------------------------------------------------
// Strings

/** Strings full of what breaks naive code: NUL, RTL marks, emoji, lone surrogates, Redis syntax. */
export const nastyString: fc.Arbitrary<string> = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc
    .array(
      fc.constantFrom(
        '\0',
        '\u202e',
        '\u200f',
        '\u2066',
        '\ufeff',
        '\ud800',
        '\udfff',
        '\ud83d\ude00',
        '👩‍👩‍👧',
        'é',
        '\u0301',
        '*',
        ':',
        '{',
        '}',
        '\n',
        '\r',
        ' ',
        '%',
        '../',
        '\\',
        '"',
        "'",
        '<',
        '$',
        'edit_',
        '__proto__',
      ),
      { maxLength: 12 },
    )
    .map((a) => a.join('')),
);

/** Any string, encoded so that fetch can put it in a URL (lone surrogates become U+FFFD). */
export function pct(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9_.~-]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** Text for a header value: visible Latin-1, never CR/LF/NUL (fetch refuses those; raw sockets send them). */
export const headerValue = (maxLength: number) =>
  fc
    .string({
      unit: fc
        .oneof(fc.integer({ min: 0x20, max: 0x7e }), fc.integer({ min: 0x80, max: 0xff }), fc.constant(0x09))
        .map((c) => String.fromCharCode(c)),
      maxLength,
    })
    .map((s) => s.trim());

// ---------------------------------------------------------------------------------------------
// Job ids in paths

const BASE32 = '0123456789abcdefghjkmnpqrstvwxyz';
const base32 = (n: number) => fc.string({ unit: fc.constantFrom(...BASE32.split('')), minLength: n, maxLength: n });

/** Path segments for `{id}`, already as they go on the wire. */
export const hostileIdSegment: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '..%2F..%2Fetc%2Fpasswd',
    '%2e%2e%2f%2e%2e%2fetc%2fpasswd',
    '%2E%2E',
    '..%5C..%5Cwindows',
    '%252e%252e%252f',
    '%c0%ae%c0%ae%c0%af',
    '%00',
    'edit_%00aaaaaaaaaaaaaaaaaaaaaaaa',
    'edit_*',
    'edit_%2A',
    'synthetic_*',
    '*',
    '%2A',
    'edit_abc:lock',
    'edit:edit_aaaaaaaaaaaaaaaaaaaaaaaa',
    '%7Bedit%7D_aaaaaaaaaaaaaaaaaaaaaaaa',
    'edit_aaaaaaaaaaaaaaaaaaaaaaaa%0A',
    'edit_aaaaaaaaaaaaaaaaaaaaaaaa%0D%0ADEL%20x',
    'edit_aaaaaaaaaaaaaaaaaaaaaaaa%20',
    '%20edit_aaaaaaaaaaaaaaaaaaaaaaaa',
    'EDIT_AAAAAAAAAAAAAAAAAAAAAAAA',
    '__proto___aaaaaaaaaaaaaaaaaaaaaaaa',
    'constructor_aaaaaaaaaaaaaaaaaaaaaaaa',
    'hasOwnProperty_aaaaaaaaaaaaaaaaaaaaaaaa',
    'upscale_aaaaaaaaaaaaaaaaaaaaaaaa',
    '%',
    '%zz',
    '%E0%A4%A',
    '%ED%A0%80',
    '%FF%FE',
    'edit_%F0%9F%98%80aaaaaaaaaaaaaaaaaaaaaa',
    '%E2%80%AEedit_aaaaaaaaaaaaaaaaaaaaaaaa',
  ),
  base32(24).map((s) => `edit_${s}`),
  base32(24).map((s) => `synthetic_${s}`),
  fc.tuple(fc.stringMatching(/^[a-z][a-z0-9-]{0,31}$/), base32(24)).map(([p, s]) => `${p}_${s}`),
  fc.integer({ min: 100, max: 12_000 }).map((n) => `edit_${'a'.repeat(n)}`),
  nastyString.filter((s) => s !== '').map(pct),
  fc.tuple(fc.constantFrom('edit_', 'synthetic_', 'edit:', ''), nastyString).map(([p, s]) => pct(p + s) || 'x'),
);

// ---------------------------------------------------------------------------------------------
// Multipart

export interface RawPart {
  /** Header lines, without the line ends. */
  headers: readonly Buffer[];
  body: Buffer;
}

export const field = (name: string | Buffer, value: string | Buffer, extra: Buffer[] = []): RawPart => ({
  headers: [Buffer.concat([latin1('Content-Disposition: form-data; name="'), Buffer.from(name), latin1('"')]), ...extra],
  body: Buffer.from(value),
});

export const filePart = (name: string, filename: string | Buffer, type: string, data: Buffer): RawPart => ({
  headers: [
    Buffer.concat([latin1(`Content-Disposition: form-data; name="${name}"; filename="`), Buffer.from(filename), latin1('"')]),
    latin1(`Content-Type: ${type}`),
  ],
  body: data,
});

export function multipartBody(
  boundary: string,
  parts: RawPart[],
  o: { close?: boolean; eol?: string; preamble?: Buffer; epilogue?: Buffer } = {},
): Buffer {
  const eol = o.eol ?? '\r\n';
  const out: Buffer[] = [];
  if (o.preamble) out.push(o.preamble, latin1(eol));
  for (const p of parts) {
    out.push(latin1(`--${boundary}${eol}`));
    for (const h of p.headers) out.push(h, latin1(eol));
    out.push(latin1(eol), p.body, latin1(eol));
  }
  if (o.close !== false) out.push(latin1(`--${boundary}--${eol}`));
  if (o.epilogue) out.push(o.epilogue);
  return Buffer.concat(out);
}

export const IMAGE_TYPES = [
  'image/png',
  'image/jpeg',
  'image/gif',
  'image/webp',
  'image/avif',
  'image/tiff',
  'image/svg+xml',
  'application/octet-stream',
  'text/html',
  'application/x-msdownload',
  'multipart/form-data; boundary=x',
  '',
  'image/png; charset=utf-16',
];

export const declaredType = fc.oneof(fc.constantFrom(...IMAGE_TYPES), headerValue(60));
export const fileName: fc.Arbitrary<string | Buffer> = fc.oneof(
  fc.constantFrom(
    'photo.jpg',
    'x.png',
    '../../../etc/passwd',
    '..\\..\\boot.ini',
    'a\0b.png',
    'évidence.jpg',
    '\u202egnp.exe',
    '',
    'CON',
    '.hidden',
    '%2e%2e%2f',
  ),
  nastyString,
  fc.integer({ min: 256, max: 4096 }).map((n) => 'n'.repeat(n)),
  bytes(40).map((b) => Buffer.from(b.filter((c) => c !== 0x22 && c !== 0x0d && c !== 0x0a))),
);

/** JSON text that is not an object, or no JSON at all, for the `params` field. */
export const paramsText: fc.Arbitrary<string> = fc.oneof(
  fc.json({ maxDepth: 3 }),
  fc.string({ maxLength: 60 }),
  fc.constantFrom(
    '',
    '{',
    '{"operations":',
    'null',
    '[]',
    '"x"',
    '1e999',
    '{"__proto__":{"polluted":1}}',
    '{"operations":[{"op":"resize","width":1e309}]}',
  ),
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify({ operations: [v] })),
);

/** A submit field's value from fc.anything(), as JSON will carry it. */
export const anyValue = fc.anything({
  maxDepth: 3,
  maxKeys: 5,
  withNullPrototype: true,
  withObjectString: true,
  key: fc.oneof(
    fc.string({ maxLength: 8 }),
    fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'op', 'operations', 'then'),
  ),
});

// ---------------------------------------------------------------------------------------------
// JSON bodies as text

/** Deeply nested arrays/objects, closed or not. */
export const deepJson = fc
  .record({
    depth: fc.oneof(fc.integer({ min: 1, max: 200 }), fc.integer({ min: 1000, max: 20_000 }), fc.constant(10_000)),
    kind: fc.constantFrom('array', 'object', 'params', 'pipeline', 'mixed'),
    closed: fc.boolean(),
  })
  .map(({ depth, kind, closed }) => {
    const open = kind === 'array' ? '[' : kind === 'mixed' ? '[{"a":' : '{"a":';
    const close = kind === 'array' ? ']' : kind === 'mixed' ? '}]' : '}';
    const inner = `${open.repeat(depth)}1${closed ? close.repeat(depth) : ''}`;
    if (kind === 'params') return `{"pipeline":"synthetic","params":${inner}}`;
    if (kind === 'pipeline') return `{"pipeline":${inner},"params":{}}`;
    return inner;
  });

/** Numbers JSON allows but JavaScript cannot hold. */
export const hugeNumberJson = fc
  .tuple(
    fc.constantFrom('steps', 'stepMs', 'width', 'height', 'seed'),
    fc.oneof(
      fc.constantFrom(
        '1e400',
        '-1e400',
        '1e-400',
        '-0',
        '123456789012345678901234567890',
        '0.0000000000000000000000000001',
        '9007199254740993',
        '1E+2',
      ),
      fc.integer({ min: 20, max: 5000 }).map((n) => '9'.repeat(n)),
      fc.integer({ min: 1, max: 400 }).map((n) => `1${'0'.repeat(n)}.5e-${n}`),
    ),
  )
  .map(([k, n]) => `{"pipeline":"synthetic","params":{"${k}":${n}},"priority":"low"}`);

export const protoJson = fc.constantFrom(
  '{"__proto__":{"pipeline":"synthetic"}}',
  '{"pipeline":"synthetic","__proto__":{"priority":"critical","isAdmin":true}}',
  '{"pipeline":"synthetic","params":{"__proto__":{"steps":5}}}',
  '{"pipeline":"synthetic","params":{"constructor":{"prototype":{"polluted":1}}}}',
  '{"constructor":{"prototype":{"pipeline":"synthetic"}}}',
  '{"pipeline":"__proto__"}',
  '{"pipeline":"constructor"}',
  '{"pipeline":"toString"}',
  '{"pipeline":"hasOwnProperty"}',
  '{"pipeline":"valueOf","params":{}}',
  '{"pipeline":"edit","params":{"operations":{"__proto__":[]}},"imageBase64":"AAAA"}',
  '{"pipeline":"edit","params":{"operations":[{"op":"__proto__"}]}}',
  '{"pipeline":"edit","params":{"operations":[{"op":"constructor"}]}}',
  '{"pipeline":"edit","params":{"operations":[{"op":"resize","__proto__":{"width":5}}]}}',
  '{"pipeline":"synthetic","priority":"__proto__"}',
  '{"pipeline":"synthetic","priority":"constructor"}',
  '{"pipeline":"synthetic","priority":{"toString":"critical"}}',
  '{"pipeline":"synthetic","webhookUrl":{"href":"http://x"}}',
  '{"pipeline":"synthetic","pipeline":"edit","pipeline":"synthetic"}',
  '{"pipeline":"synthetic","imageBase64":{"length":1}}',
  '{"pipeline":"edit","image":["AAAA"]}',
);

/** Odd Unicode, raw invalid UTF-8 and control bytes in JSON text. */
export const unicodeJson: fc.Arbitrary<Buffer> = fc.oneof(
  fc
    .tuple(fc.constantFrom('pipeline', 'priority', 'webhookUrl', 'imageBase64', 'params'), nastyString)
    .map(([k, s]) => Buffer.from(JSON.stringify({ pipeline: 'synthetic', [k]: s }), 'utf8')),
  fc
    .constantFrom(
      '{"pipeline":"synth\\u0000etic"}',
      '{"pipeline":"\\ud800"}',
      '{"pipeline":"synthetic","priority":"\\udfff\\ud800"}',
      '{"pipeline":"\\u202esynthetic"}',
      '{"pipeline":"synthetic\\u200f"}',
      '{"pipeline":"synthetic","params":{"\\u0000":1}}',
      '{"pipeline":"synthetic","params":{"ste\\u0000ps":1}}',
      '{"pipe\\u0000line":"synthetic"}',
      '{"pipeline":"edit","imageBase64":"\\ud83d\\ude00"}',
      '{"pipeline":"edit","imageBase64":"data:\\u0000;base64,AAAA"}',
      '\ufeff{"pipeline":"synthetic"}',
    )
    .map((s) => Buffer.from(s, 'utf8')),
  fc
    .tuple(
      fc.constantFrom(
        u8(0xff),
        u8(0xfe, 0xff),
        u8(0xc0, 0xaf),
        u8(0xed, 0xa0, 0x80),
        u8(0xf4, 0x90, 0x80, 0x80),
        u8(0x80),
        u8(0),
        u8(0x1b, 0x5b, 0x33, 0x31, 0x6d),
        u8(0xef, 0xbb, 0xbf),
      ),
      fc.constantFrom('pipeline', 'priority', 'key'),
    )
    .map(([bad, where]) =>
      where === 'key'
        ? Buffer.concat([latin1('{"pipeline":"synthetic","'), bad, latin1('":1}')])
        : Buffer.concat([latin1(`{"pipeline":"synthetic","${where}":"`), bad, latin1('"}')]),
    ),
  // UTF-16 and UTF-32 encoded JSON, with and without BOM
  fc.constantFrom('utf16le', 'utf16be', 'utf32').map((enc) => {
    const text = '{"pipeline":"synthetic"}';
    if (enc === 'utf16le') return Buffer.concat([u8(0xff, 0xfe), Buffer.from(text, 'utf16le')]);
    if (enc === 'utf16be') return Buffer.from(text, 'utf16le').swap16();
    const out = Buffer.alloc(text.length * 4);
    for (let i = 0; i < text.length; i++) out.writeUInt32LE(text.charCodeAt(i), i * 4);
    return out;
  }),
);

export const jsonContentType = fc.oneof(
  { weight: 6, arbitrary: fc.constant('application/json') },
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      'application/json; charset=utf-8',
      'application/json; charset=UTF-16',
      'application/json; charset=utf-32',
      'application/json; charset=latin1',
      'application/json; charset=utf-7',
      'application/json; charset=x-bogus',
      'application/json; charset="utf-8"; charset=ascii',
      'application/json; charset',
      'application/json;;;',
      'application/problem+json',
      'application/vnd.darkroom+json',
      'APPLICATION/JSON',
      'application/json ; boundary=x',
      'application/jsonx',
      'application/x-www-form-urlencoded',
      'text/json',
      'text/plain',
    ),
  },
);

// ---------------------------------------------------------------------------------------------
// Raw HTTP over a socket

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export interface RawResult {
  responses: RawResponse[];
  /** The server closed the connection (or reset it). */
  closed: boolean;
  /** Nothing closed the connection within the time given. */
  timedOut: boolean;
  /** Bytes that did not parse as a response. */
  garbage: boolean;
}

export type RawStep = Buffer | string | { delayMs: number };

/**
 * Sends `steps` over a fresh connection (strings as Latin-1, so any byte can be sent), then
 * either half-closes (`end`), resets (`destroy`), or just waits. Collects every response until
 * the server closes or `timeoutMs` passes.
 */
export function rawRequest(
  port: number,
  steps: RawStep[],
  o: { after: 'wait' | 'end' | 'destroy'; timeoutMs: number },
): Promise<RawResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let closed = false;
    let timedOut = false;
    let settled = false;
    const sock = net.connect({ port, host: '127.0.0.1' });
    sock.on('data', (d) => chunks.push(d));
    sock.on('error', () => {});
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ ...parseResponses(Buffer.concat(chunks)), closed, timedOut });
    };
    const timer = setTimeout(() => {
      timedOut = true;
      finish();
    }, o.timeoutMs);
    sock.on('close', () => {
      closed = true;
      finish();
    });
    sock.on('connect', async () => {
      for (const s of steps) {
        if (sock.destroyed) return;
        if (typeof s === 'object' && 'delayMs' in s) await new Promise((r) => setTimeout(r, s.delayMs));
        else sock.write(typeof s === 'string' ? latin1(s) : s);
      }
      if (o.after === 'end') sock.end();
      if (o.after === 'destroy') {
        // Let the bytes leave before the reset, then give up on the answer.
        await new Promise((r) => setTimeout(r, 5));
        sock.resetAndDestroy();
        finish();
      }
    });
  });
}

function parseResponses(buf: Buffer): { responses: RawResponse[]; garbage: boolean } {
  const responses: RawResponse[] = [];
  let i = 0;
  while (i < buf.length) {
    const end = buf.indexOf('\r\n\r\n', i, 'latin1');
    if (end < 0) return { responses, garbage: true };
    const lines = buf.toString('latin1', i, end).split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
    if (!m) return { responses, garbage: true };
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const c = l.indexOf(':');
      if (c > 0) headers[l.slice(0, c).trim().toLowerCase()] = l.slice(c + 1).trim();
    }
    let p = end + 4;
    let body: Buffer;
    const status = Number(m[1]);
    if (status === 100) {
      i = p;
      continue;
    }
    if (headers['transfer-encoding']?.toLowerCase().includes('chunked')) {
      const parts: Buffer[] = [];
      for (;;) {
        const le = buf.indexOf('\r\n', p, 'latin1');
        if (le < 0) break;
        const size = Number.parseInt(buf.toString('latin1', p, le), 16);
        if (!Number.isFinite(size)) break;
        p = le + 2;
        if (size === 0) {
          const trailerEnd = buf.indexOf('\r\n', p, 'latin1');
          p = trailerEnd < 0 ? buf.length : trailerEnd + 2;
          break;
        }
        parts.push(buf.subarray(p, p + size));
        p += size + 2;
      }
      body = Buffer.concat(parts);
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      body = buf.subarray(p, p + n);
      p += n;
    } else {
      body = buf.subarray(p);
      p = buf.length;
    }
    responses.push({ status, headers, body });
    i = p;
  }
  return { responses, garbage: false };
}
