/**
 * Learning-rate schedules as pure functions of the update number (fairseq's
 * optim/lr_scheduler, v0.10.2).
 *   inverse_sqrt: linear warmup from warmup_init_lr to lr over W updates, then lr*sqrt(W/u)
 *   fixed:        lr (fairseq's `fixed` with its optional warmup)
 * `numUpdates` is the number of updates done so far (the lr for the next update).
 */
export type LrSchedulerName = 'inverse_sqrt' | 'fixed';

export interface LrSchedule {
  scheduler: LrSchedulerName;
  lr: number;
  warmupUpdates: number;
  /** -1 means 0 with warmup, else lr (fairseq's default). */
  warmupInitLr: number;
}

export function learningRate(s: LrSchedule, numUpdates: number): number {
  const warmupInit = s.warmupInitLr < 0 ? (s.warmupUpdates > 0 ? 0 : s.lr) : s.warmupInitLr;
  switch (s.scheduler) {
    case 'inverse_sqrt': {
      if (s.warmupUpdates > 0 && numUpdates < s.warmupUpdates) {
        return warmupInit + (numUpdates * (s.lr - warmupInit)) / s.warmupUpdates;
      }
      // decay factor lr*sqrt(W); W = 1 without warmup, as fairseq
      return s.lr * Math.sqrt(Math.max(1, s.warmupUpdates)) / Math.sqrt(Math.max(1, numUpdates));
    }
    case 'fixed': {
      if (s.warmupUpdates > 0 && numUpdates < s.warmupUpdates) return (s.lr * (numUpdates + 1)) / s.warmupUpdates;
      return s.lr;
    }
    default: {
      const never: never = s.scheduler;
      throw new Error(`unknown lr scheduler ${String(never)}`);
    }
  }
}
