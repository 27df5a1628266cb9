import type { NextFunction, Request, RequestHandler, Response } from 'express';

/** Lets handlers be async and throw; Express 5 forwards rejections too, this keeps the type tight. */
export const handler =
  (fn: (req: Request, res: Response) => Promise<void> | void): RequestHandler =>
  (req: Request, res: Response, next: NextFunction) => {
    Promise.resolve(fn(req, res)).catch(next);
  };
