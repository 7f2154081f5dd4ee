/**
 * Kernels that tfjs-backend-wasm 4.22 lacks, registered for the `wasm` backend.
 *
 * - `UnsortedSegmentSum`: needed by the gradient of `gather` (embedding lookups). Implemented in
 *   plain JS directly on the wasm heap: views over the input and output buffers, one pass over the
 *   segment ids, no copies and no intermediate tensors. (The cpu backend's version builds one mask
 *   tensor per segment, i.e. O(numSegments x size); this is O(size).)
 *
 * Registration is global (the kernel registry is keyed by backend name, not by backend instance),
 * so it can and should happen before the wasm backend is created. Registering twice is a no-op; if
 * a future tfjs ships its own kernel we keep that one.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

/** Semantics (tfjs / TF): out[s, ...] = sum of x[i, ...] over i with segmentIds[i] == s.
 *  Ids outside [0, numSegments) are dropped (TF drops negatives; tfjs's cpu kernel also drops
 *  ids >= numSegments instead of raising, and we follow tfjs). segmentIds may have rank r >= 1 with
 *  x.shape[:r] == segmentIds.shape (TF semantics); the output is [numSegments, ...x.shape[r:]] and
 *  keeps x's dtype. */
function unsortedSegmentSumWasm(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: unknown;
  attrs?: tf.NamedAttrMap;
}): tf.TensorInfo {
  // The registry hands us the backend as `{}`; it is the wasm backend because we register for it.
  const backend = args.backend as BackendWasm;
  const x = args.inputs['x'];
  const segmentIds = args.inputs['segmentIds'];
  const numSegments = Number(args.attrs?.['numSegments']);
  if (x === undefined || segmentIds === undefined) {
    throw new Error('UnsortedSegmentSum (wasm): missing input x or segmentIds');
  }
  if (!Number.isInteger(numSegments) || numSegments < 0) {
    throw new Error(`UnsortedSegmentSum (wasm): numSegments must be a non-negative integer, got ${String(args.attrs?.['numSegments'])}`);
  }
  if (x.dtype !== 'float32' && x.dtype !== 'int32') {
    throw new Error(`UnsortedSegmentSum (wasm): unsupported dtype ${x.dtype}`);
  }
  const idRank = segmentIds.shape.length;
  const idsShape = idRank === 0 ? [1] : segmentIds.shape;
  const xLead = x.shape.slice(0, idsShape.length);
  if (x.shape.length < idsShape.length || xLead.some((d, i) => d !== idsShape[i])) {
    throw new Error(
      `UnsortedSegmentSum (wasm): segmentIds shape [${segmentIds.shape.join(',')}] must be a prefix of x shape [${x.shape.join(',')}]`,
    );
  }
  const innerShape = x.shape.slice(idsShape.length);
  let inner = 1;
  for (const d of innerShape) inner *= d;
  const outShape = [numSegments, ...innerShape];

  // Allocate first: malloc may grow the heap, which detaches previously taken views.
  const out = backend.makeOutput(outShape, x.dtype);
  const outVals = backend.typedArrayFromHeap(out) as Float32Array | Int32Array;
  const xVals = backend.typedArrayFromHeap(x) as Float32Array | Int32Array;
  const ids = backend.typedArrayFromHeap(segmentIds) as Int32Array;
  outVals.fill(0); // malloc'd memory is not zeroed
  const n = ids.length;
  if (inner === 1) {
    for (let i = 0; i < n; i++) {
      const s = ids[i]!;
      if (s >= 0 && s < numSegments) outVals[s] = outVals[s]! + xVals[i]!;
    }
  } else {
    for (let i = 0; i < n; i++) {
      const s = ids[i]!;
      if (s < 0 || s >= numSegments) continue;
      const src = i * inner;
      const dst = s * inner;
      for (let j = 0; j < inner; j++) outVals[dst + j] = outVals[dst + j]! + xVals[src + j]!;
    }
  }
  return out;
}

let registered = false;

/** Registers the missing wasm kernels (idempotent). Call before `tf.setBackend('wasm')`. */
export function registerWasmKernels(): void {
  if (registered) return;
  registered = true;
  // getKernel returns undefined (typed as KernelConfig) when nothing is registered.
  const existing = tf.getKernel('UnsortedSegmentSum', 'wasm') as tf.KernelConfig | undefined;
  if (existing === undefined) {
    tf.registerKernel({
      kernelName: 'UnsortedSegmentSum',
      backendName: 'wasm',
      kernelFunc: unsortedSegmentSumWasm,
    });
  }
}
