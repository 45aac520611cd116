import { PitrError, isPitrError } from '../errors.js';
import { buildCatalog } from '../catalog/catalog.js';
import { planRestore, type RestorePlan, type RestoreTarget } from './plan.js';
import type { ReplicaView } from './replica-view.js';
import type { Logger } from '../log.js';

/** Thrown by the steps that read one object when that object is bad: restore replans without it. */
export class DamagedObjectError extends Error {
  constructor(
    readonly key: string,
    readonly original: PitrError,
  ) {
    super(original.message);
  }
}

/** Read one planned object: a corrupt or vanished one becomes DamagedObjectError naming it. */
export async function readingObject<T>(key: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isPitrError(err, 'OBJECT_CORRUPT') || isPitrError(err, 'OBJECT_NOT_FOUND')) throw new DamagedObjectError(key, err);
    throw err;
  }
}

/** Why an object is bad, without repeating its key ("checksum mismatch ..."). */
function reasonOf(key: string, err: PitrError): string {
  const msg = err.message;
  const at = msg.indexOf(' is corrupt: ');
  if (at >= 0 && msg.slice(0, at).includes(key)) return msg.slice(at + ' is corrupt: '.length);
  return msg.includes(key) ? msg.replace(key, 'it') : msg;
}

/**
 * Plan, and run `attempt` with the plan; when it finds an object bad, plan again without that
 * object (the plan stays a pure function of the listing, the marker and the damaged objects) and
 * retry, until a plan works or none is left. A refusal after a replan that is about that object
 * keeps the read's own error (OBJECT_CORRUPT naming it), completed with what is restorable.
 */
export async function withReplanning<T>(
  view: ReplicaView,
  target: RestoreTarget,
  url: string,
  damaged: Map<string, string>,
  log: Logger,
  attempt: (plan: RestorePlan) => Promise<T>,
): Promise<{ plan: RestorePlan; value: T }> {
  let plan = planRestore(view.catalog, target, url);
  for (;;) {
    try {
      return { plan, value: await attempt(plan) };
    } catch (err) {
      if (!(err instanceof DamagedObjectError) || damaged.has(err.key)) throw err instanceof DamagedObjectError ? err.original : err;
      damaged.set(err.key, reasonOf(err.key, err.original));
      log.warn('object is damaged; planning around it', { key: err.key, reason: damaged.get(err.key) });
      const catalog = buildCatalog(view.objects, { marker: view.marker, damaged });
      try {
        plan = planRestore(catalog, target, url);
      } catch (planErr) {
        if (isPitrError(planErr, 'OBJECT_CORRUPT') && planErr.message.includes(err.key)) throw planErr;
        if (isPitrError(planErr)) {
          throw new PitrError(planErr.code, `${err.original.message}; without it: ${planErr.message}`, planErr.hint, { cause: err.original });
        }
        throw planErr;
      }
    }
  }
}
