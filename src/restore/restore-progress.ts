/** How far a restore is. */
export interface RestoreProgress {
  /** 'apply': fetching objects and writing pages; 'check': PRAGMA integrity_check of the result. */
  phase: 'apply' | 'check';
  /** Stored bytes of the plan's objects applied so far; the snapshot's advance with its pages. */
  doneBytes: number;
  /** Stored bytes of every object in the plan. */
  totalBytes: number;
  segmentsDone: number;
  segments: number;
}
