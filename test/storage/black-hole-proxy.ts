import { Agent as HttpAgent, createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/**
 * A loopback HTTP proxy in front of a real S3 server that can go dark the way a hung load
 * balancer or a dead network path does: connections are still accepted, requests are never
 * answered, and the connections that were open go silent too. Requests are forwarded unchanged
 * (Host included, so SigV4 signatures still verify).
 *
 * A request the proxy was already forwarding when it went dark still reaches the server whole
 * (only its answer is lost), so the server never sees half an upload: s3rver would store one as a
 * truncated object, which real S3 never publishes.
 */
export class BlackHoleProxy {
  private server!: Server;
  private readonly upstreamAgent = new HttpAgent({ keepAlive: true });
  private dark = false;
  private readonly open = new Set<Socket>();
  /** Connections that went silent: nothing on them is answered again. */
  private readonly dead = new Set<Socket>();
  /** Per connection, how to silence the answer it is being sent right now. */
  private readonly answering = new Map<Socket, () => void>();
  /** Requests accepted and never answered. */
  swallowed = 0;
  /** Requests sent on to the server. */
  forwarded = 0;
  /** Connections accepted. */
  connections = 0;
  port = 0;

  private constructor(private readonly upstream: URL) {}

  static async start(upstreamEndpoint: string): Promise<BlackHoleProxy> {
    const p = new BlackHoleProxy(new URL(upstreamEndpoint));
    p.server = createServer((req, res) => p.handle(req, res));
    // A black hole closes nothing, and a live proxy need not either: idle and held connections stay
    // open until the client closes them (Node would close idle ones after 5 s, held ones at 5 min).
    p.server.keepAliveTimeout = 0;
    p.server.requestTimeout = 0;
    p.server.on('connection', (socket: Socket) => {
      p.connections++;
      p.open.add(socket);
      if (p.dark) p.dead.add(socket);
      socket.once('close', () => {
        p.open.delete(socket);
        p.dead.delete(socket);
        p.answering.delete(socket);
      });
    });
    await new Promise<void>((resolve) => p.server.listen(0, '127.0.0.1', resolve));
    p.port = (p.server.address() as { port: number }).port;
    return p;
  }

  /** http://127.0.0.1:PORT, to use as a replica URL's endpoint. */
  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Go dark: from now on accept connections but answer nothing; every open connection goes silent. */
  blackHole(): void {
    this.dark = true;
    for (const socket of this.open) {
      this.dead.add(socket);
      this.answering.get(socket)?.();
    }
  }

  /**
   * Answer new connections again. The ones that went silent stay open and silent with `keepDead`
   * (a middlebox that lost their state and drops their packets: the client learns only by
   * waiting), else they are closed, as a restarted server would.
   */
  recover(opts: { keepDead?: boolean } = {}): void {
    this.dark = false;
    if (opts.keepDead === true) return;
    for (const socket of this.dead) socket.destroy();
    this.dead.clear();
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.upstreamAgent.destroy();
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const socket = req.socket;
    if (this.dead.has(socket)) {
      // Accepted, read, never answered: a load balancer whose backends are gone. (Left unread, an
      // upload larger than the socket buffers would stall mid-body instead, which is the socket
      // inactivity timeout's case, not the first-byte timeout's.)
      this.swallowed++;
      req.resume();
      return;
    }
    this.forwarded++;
    const up = request({
      host: this.upstream.hostname,
      port: this.upstream.port,
      method: req.method,
      path: req.url,
      headers: req.headers,
      agent: this.upstreamAgent,
    }, (answer) => {
      if (this.dead.has(socket)) {
        // The connection went dark while the server worked: its answer is lost.
        this.swallowed++;
        answer.resume();
        return;
      }
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
      this.answering.set(socket, () => {
        answer.unpipe(res);
        answer.resume();
      });
      answer.once('end', () => this.answering.delete(socket));
    });
    up.on('error', () => {
      if (this.dead.has(socket)) return;
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(up);
  }
}
