// A tiny app for the compose example: notes in a SQLite database that pitr replicates.
//   POST /notes  (the body is the note)   GET /notes   (every note, as JSON)
// It uses the better-sqlite3 that the pitr image already has in /app/node_modules (this file is
// mounted at /app/example/server.mjs so that Node finds it there).
import { createServer } from 'node:http';
import Database from 'better-sqlite3';

const dbPath = process.env.APP_DB ?? '/data/app.db';
const port = Number(process.env.PORT ?? 8080);

const db = new Database(dbPath);
// pitr replicates WAL databases only, and the app needs a busy_timeout: pitr briefly holds the
// write lock when it restarts a WAL that never stops growing.
db.pragma('journal_mode = WAL');
db.pragma('busy_timeout = 5000');
db.exec('CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL, at TEXT NOT NULL)');
const insert = db.prepare('INSERT INTO notes (body, at) VALUES (?, ?)');
const all = db.prepare('SELECT id, body, at FROM notes ORDER BY id');

const server = createServer((req, res) => {
  if (req.url !== '/notes') {
    res.writeHead(404).end('not found\n');
    return;
  }
  if (req.method === 'GET') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(`${JSON.stringify(all.all())}\n`);
    return;
  }
  if (req.method === 'POST') {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const { lastInsertRowid } = insert.run(Buffer.concat(chunks).toString('utf8'), new Date().toISOString());
      res.writeHead(201, { 'content-type': 'application/json' }).end(`${JSON.stringify({ id: Number(lastInsertRowid) })}\n`);
    });
    return;
  }
  res.writeHead(405).end('method not allowed\n');
});

// pitr forwards SIGTERM to the app it started; close cleanly so the last commits are in the WAL
// before pitr's final upload.
process.on('SIGTERM', () => {
  server.close(() => {
    db.close();
    process.exit(0);
  });
});

server.listen(port, '0.0.0.0', () => console.log(`notes app on :${port}, database ${dbPath}`));
