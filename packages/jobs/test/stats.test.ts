import { estimateWaitSeconds, type PipelineStats } from '@darkroom/jobs';
import { describe, expect, it } from 'vitest';

const stats = (avgProcessingMs: number | null, slots: number): PipelineStats => ({
  avgProcessingMs,
  throughputPerMinute: null,
  workers: [],
  slots,
  loadMs: {},
});

describe('estimateWaitSeconds', () => {
  it("adds the model's load time when no live worker has the job's model loaded", () => {
    const worker = (warm: string[]) => ({
      name: 'w',
      pipelines: ['synthetic'],
      activeJobs: 0,
      processed: 0,
      failed: 0,
      lastSeen: new Date().toISOString(),
      device: 'cpu',
      warmModels: { synthetic: warm },
    });
    const s = { ...stats(1000, 1), loadMs: { flux: 20_000 } };
    expect(estimateWaitSeconds(3, { ...s, workers: [worker(['sdxl'])] }, 'synthetic', 'flux')).toBe(23);
    expect(estimateWaitSeconds(3, { ...s, workers: [worker(['flux'])] }, 'synthetic', 'flux')).toBe(3);
    expect(estimateWaitSeconds(3, { ...s, workers: [worker([])] }, 'synthetic', 'unmeasured')).toBe(3);
    expect(estimateWaitSeconds(3, s, 'synthetic')).toBe(3);
  });

  it('is null without run-time history', () => {
    expect(estimateWaitSeconds(3, stats(null, 2))).toBeNull();
  });

  it('is null while no worker serves the pipeline', () => {
    expect(estimateWaitSeconds(3, stats(1500, 0))).toBeNull();
  });

  it('is position × average ÷ slots, in seconds, rounded up', () => {
    expect(estimateWaitSeconds(3, stats(1500, 2))).toBe(3); // 2.25 s
    expect(estimateWaitSeconds(4, stats(1000, 2))).toBe(2); // exactly 2 s
    expect(estimateWaitSeconds(1, stats(840, 1))).toBe(1); // 0.84 s
    expect(estimateWaitSeconds(10, stats(2000, 1))).toBe(20);
    expect(estimateWaitSeconds(7, stats(100, 8))).toBe(1); // 0.0875 s
  });

  it('grows with position and shrinks with slots', () => {
    expect(estimateWaitSeconds(100, stats(3000, 1))).toBe(300);
    expect(estimateWaitSeconds(100, stats(3000, 4))).toBe(75);
  });

  it('is 0 with a zero average', () => {
    expect(estimateWaitSeconds(5, stats(0, 1))).toBe(0);
  });
});
