import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { invalidReplicaUrl as invalid } from '../registry.js';

export interface FileReplicaUrl {
  scheme: 'file';
  /** Absolute directory path. */
  path: string;
  /** Normalized display form, file:///abs/path. */
  url: string;
}

/** A file:// URL, or a bare directory path resolved against `cwd`. No I/O. */
export function parseFileReplica(input: string, cwd: string): FileReplicaUrl {
  return /^file:/i.test(input) ? parseFileUrl(input) : parseBarePath(input, cwd);
}

function parseBarePath(input: string, cwd: string): FileReplicaUrl {
  if (input.includes('\0')) throw invalid(input, 'paths may not contain NUL');
  if (input === '~' || input.startsWith('~/')) {
    // Only a shell expands "~"; from a config file it would become a directory named "~".
    throw invalid(input, '"~" is not expanded here', 'Give the full path, e.g. /home/me/backups.');
  }
  const abs = path.resolve(cwd, input);
  return { scheme: 'file', path: abs, url: pathToFileURL(abs).href };
}

function parseFileUrl(input: string): FileReplicaUrl {
  if (!/^file:\/\//i.test(input)) {
    throw invalid(input, 'file URLs must start with file:// and name an absolute path',
      'Write file:///abs/path, or give a relative path without "file:".');
  }
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    throw invalid(input, 'it is not a valid file URL');
  }
  if (url.search !== '' || url.hash !== '') {
    throw invalid(input, 'file URLs take no "?" or "#" part', 'Percent-encode them (%3F, %23) if they are part of the path.');
  }
  let p: string;
  try {
    p = fileURLToPath(url);
  } catch {
    // file://relative/x parses with host "relative": the classic mistake for a relative path.
    throw invalid(input, 'file URLs must be absolute (file:///abs/path); "file://" followed by a name is a host, not a relative path',
      'Write file:///abs/path, or give a relative path without "file://".');
  }
  const abs = path.resolve(p);
  return { scheme: 'file', path: abs, url: pathToFileURL(abs).href };
}
