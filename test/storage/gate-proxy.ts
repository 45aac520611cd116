import { Agent as HttpAgent, createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

/**
 * Send `req` on to `upstream` unchanged (method, path, headers: Host included, so SigV4 signatures
 * still verify) and its answer back to `res`; `onResponse` sees the status when the answer's
 * headers arrive. 502 when the upstream cannot be reached.
 */
export function forwardRequest(req: IncomingMessage, res: ServerResponse, upstream: URL, agent: HttpAgent, onResponse?: (status: number) => void): void {
  const up = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers, agent }, (ur) => {
    onResponse?.(ur.statusCode ?? 0);
    res.writeHead(ur.statusCode ?? 502, ur.headers);
    ur.pipe(res);
  });
  up.on('error', () => {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  });
  req.pipe(up);
  req.resume();
}

/**
 * A loopback HTTP proxy in front of a real S3 server that can hold chosen requests until the test
 * lets them go: "this upload is slow" made deterministic, with the real protocol on both sides.
 * Requests are forwarded unchanged (Host included, so SigV4 signatures still verify).
 */
export class GateProxy {
  private server!: Server;
  private readonly upstreamAgent = new HttpAgent({ keepAlive: true });
  private held: (() => void)[] = [];
  private match: ((method: string, path: string) => boolean) | undefined;
  /** Requests held so far (released or not). */
  heldCount = 0;
  port = 0;

  private constructor(private readonly upstream: URL) {}

  static async start(upstreamEndpoint: string): Promise<GateProxy> {
    const p = new GateProxy(new URL(upstreamEndpoint));
    p.server = createServer((req, res) => p.handle(req, res));
    await new Promise<void>((resolve) => p.server.listen(0, '127.0.0.1', resolve));
    p.port = (p.server.address() as { port: number }).port;
    return p;
  }

  /** http://127.0.0.1:PORT, to use as a replica URL's endpoint. */
  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** From now on, hold every request for which `match(method, decoded path)` is true. */
  hold(match: (method: string, path: string) => boolean): void {
    this.match = match;
  }

  /** Stop holding, and forward what is held. */
  release(): void {
    this.match = undefined;
    const held = this.held;
    this.held = [];
    for (const go of held) go();
  }

  async close(): Promise<void> {
    this.release();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.upstreamAgent.destroy();
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = decodeURIComponent((req.url ?? '').split('?')[0] ?? '');
    // Paused (not read) while held: the body waits in the socket like a slow upload's would.
    req.pause();
    const forward = (): void => forwardRequest(req, res, this.upstream, this.upstreamAgent);
    if (this.match?.(req.method ?? '', path)) {
      this.heldCount++;
      this.held.push(forward);
    } else {
      forward();
    }
  }
}
