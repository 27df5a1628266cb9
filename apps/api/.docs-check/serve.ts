import express from 'express';
import { docsRouter } from '../src/routes/docs.ts';
const app = express();
app.use((req, _res, next) => { console.log('REQ', req.method, req.url); next(); });
app.use(docsRouter());
app.listen(18555, '127.0.0.1', () => console.log('listening'));
