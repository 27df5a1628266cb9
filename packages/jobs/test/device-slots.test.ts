import { describe, expect, it } from 'vitest';
import { DeviceSlots } from '../src/device-slots.ts';

const settled = async (p: Promise<unknown>) => {
  let done = false;
  void p.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  await new Promise((r) => setImmediate(r));
  return done;
};

describe('device slots', () => {
  it('gives slots first come first served, a freed slot straight to the next in line', async () => {
    const slots = new DeviceSlots(1);
    const never = new AbortController().signal;
    const a = await slots.acquire(never);
    const order: string[] = [];
    const b = slots.acquire(never).then((l) => {
      order.push('b');
      return l;
    });
    const c = slots.acquire(never).then((l) => {
      order.push('c');
      return l;
    });
    expect(slots.tryAcquire()).toBeUndefined();
    expect([slots.busy, slots.waiting]).toEqual([1, 2]);
    a.release();
    a.release(); // only the first call counts
    (await b).release();
    (await c).release();
    expect(order).toEqual(['b', 'c']);
    expect([slots.busy, slots.waiting]).toEqual([0, 0]);
  });

  it('lets a waiter leave the line when its signal aborts, with the reason', async () => {
    const slots = new DeviceSlots(1);
    const held = slots.tryAcquire()!;
    const controller = new AbortController();
    const waiting = slots.acquire(controller.signal);
    const reason = new Error('cancelled');
    controller.abort(reason);
    await expect(waiting).rejects.toBe(reason);
    expect(slots.waiting).toBe(0);
    held.release();
    expect(slots.busy).toBe(0);
  });

  it('keeps a slot under a job id until claimed', () => {
    const slots = new DeviceSlots(2);
    const lease = slots.tryAcquire()!;
    slots.hold('job-1', lease);
    expect(slots.unclaimed).toBe(1);
    expect(slots.claim('job-1')).toBe(lease);
    expect(slots.claim('job-1')).toBeUndefined();
    expect(slots.unclaimed).toBe(0);
  });

  it('is handed over once the next holder has started its compute, or its slot came back', async () => {
    const slots = new DeviceSlots(1);
    const never = new AbortController().signal;
    const first = await slots.acquire(never);
    first.started();
    expect(await settled(slots.handedOver(10_000))).toBe(true);
    const next = slots.acquire(never);
    first.release();
    const handedOver = slots.handedOver(10_000);
    expect(await settled(handedOver)).toBe(false);
    (await next).started();
    expect(await settled(handedOver)).toBe(true);
    const unused = slots.handedOver(10_000);
    (await next).release();
    expect(await settled(unused)).toBe(true);
  });
});
