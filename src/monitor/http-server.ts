import { createServer, type Server } from 'node:http';
import { PitrError } from '../errors.js';

export interface MonitorHandlers {
  metrics(): Promise<{ contentType: string; body: string }>;
  health(): { ok: boolean; body: unknown };
}

/** Parse --listen: "9090" and ":9090" mean loopback; "0.0.0.0:9090" or "[::]:9090" must be asked for. */
export function parseListenAddress(input: string): { host: string; port: number } {
  const m = /^(?:(\[[^\]]+\]|[^:]*):)?(\d{1,5})$/.exec(input.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new PitrError('USAGE', `invalid --listen address "${input}"`, 'use HOST:PORT or PORT, e.g. 127.0.0.1:9090 (loopback by default)');
  }
  const host = m[1] ? m[1].replace(/^\[|\]$/g, '') : '127.0.0.1';
  return { host, port };
}

/** Serve GET /metrics and GET /healthz. Resolves once listening; returns the bound address. */
export async function startMonitorServer(address: string, handlers: MonitorHandlers): Promise<{ server: Server; url: string }> {
  const { host, port } = parseListenAddress(address);
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/metrics') {
      handlers.metrics().then(
        (m) => res.writeHead(200, { 'content-type': m.contentType }).end(m.body),
        (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(String(err)),
      );
    } else if (path === '/healthz') {
      const h = handlers.health();
      res.writeHead(h.ok ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify(h.body) + '\n');
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics or /healthz\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) =>
      reject(new PitrError('USAGE', `cannot listen on ${address}: ${(err as Error).message}`, 'choose a free port with --listen', { cause: err })),
    );
    server.listen(port, host, () => resolve());
  });
  const bound = server.address();
  const actualPort = typeof bound === 'object' && bound ? bound.port : port;
  return { server, url: `http://${host.includes(':') ? `[${host}]` : host}:${actualPort}` };
}
