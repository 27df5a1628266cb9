import type { BackendStatus, GpuReport } from '@darkroom/contracts';
import type { WorkerHeartbeat } from '@darkroom/jobs';
import { type AnyPipeline, pipelineStatus } from '@darkroom/pipelines';

/** The figures of a heartbeat the worker keeps itself; the rest is asked of pipelines and GPUs at each beat. */
export type HeartbeatBase = Omit<WorkerHeartbeat, 'pipelines' | 'pipelineDevices' | 'models' | 'backends' | 'gpus' | 'warmModels'>;

/**
 * One heartbeat. Every served pipeline's status() is asked again (in parallel, each bounded by
 * pipelineStatus's timeout), so a backend going down or coming back shows at the next beat; the
 * GPU report is the GPU monitor's latest. Empty maps are left out, as the contract's fields are
 * optional.
 */
export async function assembleHeartbeat(
  base: HeartbeatBase,
  pipelines: readonly AnyPipeline[],
  gpus: readonly GpuReport[] | undefined,
): Promise<WorkerHeartbeat> {
  const statuses = await Promise.all(pipelines.map((p) => pipelineStatus(p)));
  const pipelineDevices: Record<string, string> = {};
  const models: Record<string, string[]> = {};
  const backends: Record<string, BackendStatus> = {};
  const warmModels: Record<string, string[]> = {};
  pipelines.forEach((p, i) => {
    const st = statuses[i];
    const name = p.spec.name;
    if (st?.device) pipelineDevices[name] = st.device;
    if (st?.models) models[name] = st.models;
    if (st?.backend) backends[name] = st.backend;
    const warm = p.warmModels?.();
    if (warm && warm.length > 0) warmModels[name] = warm;
  });
  const some = (o: object) => Object.keys(o).length > 0;
  return {
    ...base,
    pipelines: pipelines.map((p) => p.spec.name),
    ...(some(pipelineDevices) ? { pipelineDevices } : {}),
    ...(some(models) ? { models } : {}),
    ...(some(backends) ? { backends } : {}),
    ...(some(warmModels) ? { warmModels } : {}),
    ...(gpus && gpus.length > 0 ? { gpus: [...gpus] } : {}),
  };
}
