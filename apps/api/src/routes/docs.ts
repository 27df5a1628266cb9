import { createRequire } from 'node:module';
import path from 'node:path';
import { type Response, Router } from 'express';
import type { Handler, RouteContext } from './route.ts';

/*
 * `GET /openapi.json` (generated from the route table and the zod contracts) and the human docs at `GET /docs`:
 * Swagger UI from the installed `swagger-ui-dist` package. Stations' networks are closed, so the
 * page loads nothing from elsewhere: every script, stylesheet and icon comes from this server,
 * the page has no inline script, and its Content-Security-Policy allows this origin only.
 * Neither needs a credential.
 */

export const DOCS_PATH = '/docs';
export const OPENAPI_PATH = '/openapi.json';
const ASSETS = `${DOCS_PATH}/assets`;

const fromHere = createRequire(import.meta.url);
const SWAGGER_UI_DIR = path.dirname(fromHere.resolve('swagger-ui-dist/package.json'));
const SWAGGER_UI_VERSION = (fromHere('swagger-ui-dist/package.json') as { version: string }).version;

/** The files of swagger-ui-dist the page uses (and their source maps, for browser dev tools); nothing else of the package is served. */
const PACKAGE_FILES: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui.css.map': 'application/json',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'swagger-ui-bundle.js.map': 'application/json',
  'favicon-32x32.png': 'image/png',
  'favicon-16x16.png': 'image/png',
};

/** Starts Swagger UI; a file of its own so the page needs no inline script. `validatorUrl: null`: no badge fetched from swagger.io. */
const INIT_JS = `window.addEventListener('load', function () {
  window.ui = SwaggerUIBundle({
    url: ${JSON.stringify(OPENAPI_PATH)},
    dom_id: '#swagger-ui',
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: 'BaseLayout',
    defaultModelsExpandDepth: 0,
    displayRequestDuration: true,
  });
});
`;

const v = `?v=${encodeURIComponent(SWAGGER_UI_VERSION)}`;
const PAGE = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Darkroom API</title>
  <link rel="stylesheet" href="${ASSETS}/swagger-ui.css${v}">
  <link rel="icon" type="image/png" sizes="32x32" href="${ASSETS}/favicon-32x32.png${v}">
  <link rel="icon" type="image/png" sizes="16x16" href="${ASSETS}/favicon-16x16.png${v}">
</head>
<body>
  <noscript>These docs need JavaScript; the raw description is at <a href="${OPENAPI_PATH}">${OPENAPI_PATH}</a>.</noscript>
  <div id="swagger-ui"></div>
  <script src="${ASSETS}/swagger-ui-bundle.js${v}"></script>
  <script src="${ASSETS}/init.js${v}"></script>
</body>
</html>
`;

/** Swagger UI sets inline styles and shows inline SVG/data images; scripts and requests stay on this origin. */
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const ASSET_CACHE = 'public, max-age=86400';

/** GET /openapi.json: the document generated from the route table. */
export function serveOpenApi({ openapi }: RouteContext): Handler {
  return () => ({ status: 200, headers: { 'Cache-Control': 'no-cache' }, type: 'application/json; charset=utf-8', text: openapi() });
}

/** The page at GET /docs and the files it loads from under /docs/assets/. */
export function docsRouter(): Router {
  const r = Router();

  r.get(DOCS_PATH, (_req, res) => {
    res.setHeader('Content-Security-Policy', CSP);
    res.setHeader('Cache-Control', 'no-cache');
    res.status(200).type('html').send(PAGE);
  });

  r.get(`${ASSETS}/init.js`, (_req, res) => {
    res.setHeader('Cache-Control', ASSET_CACHE);
    res.status(200).type('text/javascript; charset=utf-8').send(INIT_JS);
  });

  r.get(`${ASSETS}/:file`, (req, res: Response, next) => {
    const file = String(req.params.file);
    const type = Object.hasOwn(PACKAGE_FILES, file) ? PACKAGE_FILES[file] : undefined;
    if (!type) return next(); // not ours: the generic 404
    res.setHeader('Cache-Control', ASSET_CACHE);
    res.type(type);
    res.sendFile(file, { root: SWAGGER_UI_DIR, dotfiles: 'deny', cacheControl: false }, (err) => {
      if (err && !res.headersSent) next(err);
    });
  });

  return r;
}
