export { type CompletenessTracker, completenessTracker } from './image-complete-stream.ts';
export {
  type ImageInfo,
  type ImageLimits,
  type ImageSource,
  type InspectFailure,
  imageByteLength,
  inspectImage,
  isComplete,
  SPOOL_HEAD_BYTES,
  type SpooledImage,
  sniffFormat,
} from './image-inspect.ts';
