import type * as C from '@darkroom/contracts';

/*
 * The contract types this package's API names, in one place. The build prints each of them
 * expanded (scripts/build-client.ts), so the published declarations need neither the contracts
 * package nor zod; only this file may import from '@darkroom/contracts' for types.
 */

/** What a zod schema parses to / accepts, without importing zod. */
type Output<S> = S extends { _zod: { output: infer O } } ? O : never;
type Input<S> = S extends { _zod: { input: infer I } } ? I : never;

export type FieldError = C.FieldError;
export type JobStatus = C.JobStatus;
export type JobStatusBody = C.JobStatusBody;
export type Priority = C.Priority;
export type Problem = C.Problem;
export type ProblemCode = C.ProblemCode;
export type QueueBody = C.QueueBody;
export type PipelineName = C.PipelineName;
export type WebhookEventName = C.WebhookEventName;
export type PipelineInfo = Output<typeof C.PipelineInfoBody>;
export type PipelineList = Output<typeof C.PipelineListBody>;
export type JobList = Output<typeof C.JobListBody>;
/** Each known pipeline's params, as a station writes them. */
export type PipelineParams = { [P in PipelineName]: Input<(typeof C.PIPELINE_SPECS)[P]['params']> };
