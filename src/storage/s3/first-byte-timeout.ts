import { AsyncLocalStorage } from 'node:async_hooks';
import { Agent as HttpAgent, type ClientRequest } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';

/**
 * The short wait for the store's first answer, which is how a dead connection is told from a slow
 * transfer. A request waits on the store twice: for its connection (TCP, and TLS), and from the
 * moment it is sent, body included, until the answer's headers arrive. Nothing is in transfer
 * then, so a store that says nothing for a few seconds is not answering: a connection black-holed
 * by a dead peer, a lost NAT or load-balancer entry, or a pooled keep-alive socket that died while
 * it sat idle. While a body moves (an upload's parts, a download's bytes) this clock does not
 * run: a stall there is the SDK's socket-inactivity timeout's to catch, so a slow but live
 * transfer is never cut, however long it takes.
 *
 * "Sent" is when the last byte is handed to the OS. An upload's last bytes may still sit in the
 * kernel's send buffer and in the network's queues then, and delivering them is transfer too. TCP
 * sizes that buffer to about two windows: on a slow link, or one with deep queues, it drains about
 * as slowly as the body went out, so an upload waits longer by the time its body took to send, up
 * to `maxMs`. A fixed allowance per byte would not do: one low enough for slow uplinks keeps a
 * catch-up batch of a few MB waiting tens of seconds on a dead connection that took it in at once.
 *
 * After a first-byte timeout the agent's idle keep-alive sockets are closed too: they were opened
 * before the failure and are likely as dead as the one that just failed (a store or path that went
 * dark kills them all), and each would otherwise cost the next requests one timeout apiece. The
 * retry then opens a fresh connection (with a fresh DNS lookup), which AWS advises for a slow
 * request as well.
 */

/** Thrown into a request the store did not answer in time; the request runner retries it at once. */
export class FirstByteTimeoutError extends Error {
  constructor(readonly ms: number, readonly waitingFor: 'connection' | 'response') {
    super(waitingFor === 'connection'
      ? `no connection within ${ms} ms`
      : `no response within ${ms} ms of sending the request`);
    // The name S3 tooling (and isRetryable) knows a timeout by.
    this.name = 'TimeoutError';
  }
}

/** True when `err`, or an error it wraps, is a first-byte timeout. */
export function isFirstByteTimeout(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 4; depth++) {
    if (e instanceof FirstByteTimeoutError) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/** How long a request may wait for the store: `ms`, plus, after an upload, up to `maxMs` in all for its delivery. */
export interface FirstByteLimit {
  ms: number;
  maxMs: number;
}

/** How long the store may take to answer a request whose sending (body included) took `sendingMs`. */
export function answerWaitMs(limit: FirstByteLimit, sendingMs: number): number {
  // In tenths of a second: the few ms a small request takes to send are noise, not delivery.
  const delivery = Math.floor(Math.max(0, sendingMs) / 100) * 100;
  return Math.max(limit.ms, Math.min(limit.maxMs, limit.ms + delivery));
}

// The limit of the attempt that is running. An attempt's HTTP request is created deep inside the
// SDK, where no option of ours reaches; the async context of the attempt does.
const attemptLimit = new AsyncLocalStorage<FirstByteLimit>();

/** Runs `fn` (one attempt: an SDK call) so that each request it sends waits for the store at most as `limit` says. */
export function withFirstByteTimeout<T>(limit: FirstByteLimit, fn: () => Promise<T>): Promise<T> {
  return attemptLimit.run(limit, fn);
}

export interface WatchedAgents {
  httpAgent: HttpAgent;
  httpsAgent: HttpsAgent;
}

/**
 * Keep-alive agents for the SDK's NodeHttpHandler on which every request is watched as described
 * above: `defaultLimit` for requests sent outside withFirstByteTimeout. No socket limit: the
 * client's permits bound the requests in flight, and a download's socket stays busy while the
 * caller reads it, after its permit is returned.
 */
export function watchedAgents(defaultLimit: FirstByteLimit): WatchedAgents {
  const httpAgent = new HttpAgent({ keepAlive: true });
  const httpsAgent = new HttpsAgent({ keepAlive: true });
  for (const agent of [httpAgent, httpsAgent]) {
    onEachRequest(agent, (req) => watch(req, attemptLimit.getStore() ?? defaultLimit, () => closeIdleSockets(agent)));
  }
  return { httpAgent, httpsAgent };
}

type AddRequest = (this: HttpAgent, req: ClientRequest, options: object) => void;

/**
 * Calls `see` with each request the agent is given. Agent#addRequest is where http.request hands
 * every ClientRequest to its agent; not in Node's typings, but the hook agents have overridden for
 * a decade (agent-base, agentkeepalive). Node has no public per-agent request event.
 */
function onEachRequest(agent: HttpAgent, see: (req: ClientRequest) => void): void {
  const target = agent as HttpAgent & { addRequest?: AddRequest };
  const addRequest = target.addRequest;
  if (typeof addRequest !== 'function') {
    throw new Error('node:http Agent has no addRequest method: S3 requests cannot be given a first-byte timeout on this Node version');
  }
  target.addRequest = function (this: HttpAgent, req: ClientRequest, options: object): void {
    see(req);
    addRequest.call(this, req, options);
  };
}

/** Destroys `req` with a FirstByteTimeoutError when the store keeps it waiting past `limit` (see the top of this file). */
function watch(req: ClientRequest, limit: FirstByteLimit, onTimeout: () => void): void {
  let hasSocket = false;
  let connected = false;
  let connectedAt = 0;
  let sent = false;
  let sentAt = 0;
  let over = false;
  let timer: NodeJS.Timeout | undefined;
  const update = (): void => {
    const waiting = !over && ((hasSocket && !connected) || sent);
    if (waiting && timer === undefined) {
      const ms = sent ? answerWaitMs(limit, sentAt - connectedAt) : limit.ms;
      timer = setTimeout(() => {
        timer = undefined;
        over = true;
        onTimeout();
        req.destroy(new FirstByteTimeoutError(ms, sent ? 'response' : 'connection'));
      }, ms);
    } else if (!waiting && timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
    }
  };
  req.once('socket', (socket: Socket) => {
    hasSocket = true;
    // A pooled socket is connected already; a new one is ready once TCP (and TLS) is up.
    connected = !socket.connecting;
    connectedAt = Date.now();
    if (!connected) {
      socket.once(socket instanceof TLSSocket ? 'secureConnect' : 'connect', () => {
        connected = true;
        connectedAt = Date.now();
        update();
      });
    }
    update();
  });
  // 'finish': the request and its whole body are handed to the OS.
  req.once('finish', () => {
    sent = true;
    sentAt = Date.now();
    if (!connected) connectedAt = sentAt;
    update();
  });
  const end = (): void => {
    over = true;
    update();
  };
  // 'response' comes with the headers; 100 Continue is 'information', not an answer.
  req.once('response', end);
  req.once('close', end);
}

/** Closes the agent's idle keep-alive sockets, so that the next request opens a fresh connection. */
function closeIdleSockets(agent: HttpAgent): void {
  // Each closed socket leaves the pool through the agent's own 'close' handling.
  for (const sockets of Object.values(agent.freeSockets)) {
    for (const socket of [...(sockets ?? [])]) socket.destroy();
  }
}
