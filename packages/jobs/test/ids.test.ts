import { JOB_ID_PATTERN } from '@darkroom/contracts';
import { newJobId, pipelineOfJobId } from '@darkroom/jobs';
import { describe, expect, it } from 'vitest';

describe('newJobId', () => {
  it('is <pipeline>_<24 lower-case Crockford base32 characters>', () => {
    const id = newJobId('edit');
    expect(id).toMatch(/^edit_[0-9abcdefghjkmnpqrstvwxyz]{24}$/);
    expect(id).toHaveLength('edit_'.length + 24);
  });

  it('matches the contract pattern for every pipeline name shape', () => {
    for (const p of ['edit', 'synthetic', 'a', 'comfy-ui', 'x'.repeat(32)]) {
      const id = newJobId(p);
      expect(JOB_ID_PATTERN.test(id), id).toBe(true);
    }
  });

  it('never uses the ambiguous letters i, l, o, u', () => {
    const all = Array.from({ length: 2000 }, () => newJobId('edit').slice(5)).join('');
    expect(all).not.toMatch(/[ilou]/);
  });

  it('makes 10,000 distinct ids, all valid', () => {
    const ids = Array.from({ length: 10_000 }, () => newJobId('synthetic'));
    expect(new Set(ids).size).toBe(10_000);
    expect(ids.filter((id) => !JOB_ID_PATTERN.test(id))).toEqual([]);
  });
});

describe('pipelineOfJobId', () => {
  it('returns the pipeline a new id was made for', () => {
    for (const p of ['edit', 'synthetic', 'comfy-ui']) expect(pipelineOfJobId(newJobId(p))).toBe(p);
  });

  it('splits at the last underscore', () => {
    expect(pipelineOfJobId('edit_8ntv3369rr6e6hh0y4efv87d')).toBe('edit');
    expect(pipelineOfJobId('my_pipe_8ntv3369rr6e6hh0y4efv87d')).toBe('my_pipe');
  });
});

describe('JOB_ID_PATTERN', () => {
  it('refuses junk before any lookup', () => {
    for (const bad of [
      '',
      'edit',
      'edit_',
      'edit_short',
      'Edit_8ntv3369rr6e6hh0y4efv87d',
      '1edit_8ntv3369rr6e6hh0y4efv87d',
      'edit_8NTV3369RR6E6HH0Y4EFV87D',
      'edit_8ntv3369rr6e6hh0y4efv87d/../x',
      `${'x'.repeat(33)}_8ntv3369rr6e6hh0y4efv87d`,
      'edit_8ntv3369rr6e6hh0y4efv87d8ntv3369rr6e6hh0y4efv87d',
    ]) {
      expect(JOB_ID_PATTERN.test(bad), bad).toBe(false);
    }
  });
});
