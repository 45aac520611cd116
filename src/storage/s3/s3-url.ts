import { invalidReplicaUrl as invalid } from '../registry.js';

/*
 * s3:// replica URLs: parsed and checked here, without the AWS SDK, so that parsing a URL (the
 * CLI, config checks) costs nothing; s3-options.ts turns the parameters into client options.
 */

export interface S3ReplicaUrl {
  scheme: 's3';
  bucket: string;
  /** Key prefix inside the bucket, without leading or trailing '/'; '' for the bucket root. */
  prefix: string;
  params: Record<string, string>;
  /** Normalized display form, s3://bucket/prefix?sorted-params. */
  url: string;
}

/**
 * Query parameters an s3:// URL may carry. Unknown ones are rejected rather than ignored: a
 * misspelt option silently ignored would send backups somewhere the user did not intend.
 * The S3 backend extends this list when it learns new options.
 */
export const S3_URL_PARAMS: readonly string[] = [
  'endpoint', 'region', 'force-path-style', 'sse', 'sse-kms-key-id', 'storage-class',
  'first-byte-timeout', 'request-timeout',
];

/** Parse and check an s3:// URL. Throws REPLICA_URL_INVALID. No I/O. */
export function parseS3Url(input: string): S3ReplicaUrl {
  // Parsed by hand: WHATWG URL would resolve "." and ".." in the prefix and accept userinfo.
  const m = /^s3:\/\/([^/?#]*)(\/[^?#]*)?(\?[^#]*)?$/i.exec(input);
  if (!m) {
    throw invalid(input, input.includes('#') ? 'S3 URLs take no "#" part' : 'S3 URLs look like s3://bucket/prefix');
  }
  const [, bucket = '', rawPath = '', rawQuery = ''] = m;

  if (bucket.includes('@')) {
    throw invalid(input, 'credentials do not belong in the replica URL',
      'Remove them; pitr reads AWS credentials from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or the usual AWS config.');
  }
  if (bucket === '') throw invalid(input, 'the bucket name is missing');
  if (bucket.includes(':')) {
    throw invalid(input, 'the bucket may not have a port', 'Give the server with ?endpoint=http://host:port.');
  }
  // Loose on purpose (legacy buckets allow capitals and underscores); strict enough to catch typos.
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$/.test(bucket)) {
    throw invalid(input, `"${bucket}" is not a valid bucket name`);
  }

  let segments: string[];
  try {
    segments = rawPath.split('/').filter((s) => s !== '').map((s) => decodeURIComponent(s));
  } catch {
    throw invalid(input, 'the prefix has a malformed percent-escape');
  }
  if (/\/\/./.test(rawPath)) throw invalid(input, 'the prefix may not contain empty segments ("//")');
  if (segments.some((s) => s === '.' || s === '..' || s.includes('/') || s.includes('\\'))) {
    throw invalid(input, 'the prefix may not contain ".", ".." or encoded separators');
  }
  const prefix = segments.join('/');

  const params: Record<string, string> = {};
  for (const [name, value] of new URLSearchParams(rawQuery)) {
    if (!S3_URL_PARAMS.includes(name)) {
      throw invalid(input, `unknown parameter "${name}"`, `Accepted parameters: ${S3_URL_PARAMS.join(', ')}.`);
    }
    if (name in params) throw invalid(input, `parameter "${name}" is given twice`);
    params[name] = value;
  }
  checkS3Params(input, params);

  const query = Object.keys(params)
    .sort()
    .map((k) => `${k}=${encodeURIComponent(params[k]!).replace(/%3A/g, ':').replace(/%2F/g, '/')}`)
    .join('&');
  const url = `s3://${bucket}${prefix === '' ? '' : `/${segments.map(encodeURIComponent).join('/')}`}${query === '' ? '' : `?${query}`}`;
  return { scheme: 's3', bucket, prefix, params, url };
}

function checkS3Params(input: string, params: Record<string, string>): void {
  const endpoint = params['endpoint'];
  if (endpoint !== undefined) {
    let ep: URL | undefined;
    try {
      ep = new URL(endpoint);
    } catch {
      ep = undefined;
    }
    if (ep === undefined || (ep.protocol !== 'http:' && ep.protocol !== 'https:')) {
      throw invalid(input, `endpoint "${endpoint}" is not an http:// or https:// URL`);
    }
    if (ep.username !== '' || ep.password !== '') {
      throw invalid(input, 'credentials do not belong in the endpoint',
        'Remove them; pitr reads AWS credentials from the environment or the usual AWS config.');
    }
  }
  const region = params['region'];
  if (region !== undefined && !/^[a-z0-9-]+$/i.test(region)) {
    throw invalid(input, `"${region}" is not a valid region`);
  }
  const pathStyle = params['force-path-style'];
  if (pathStyle !== undefined && pathStyle !== 'true' && pathStyle !== 'false') {
    throw invalid(input, `force-path-style must be true or false, not "${pathStyle}"`);
  }
}
