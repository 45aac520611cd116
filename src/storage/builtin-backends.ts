import { registerBackend } from './registry.js';
import { fileBackend } from './file/file-backend.js';
import { s3Backend } from './s3/s3-backend.js';

// The backends pitr ships. Their descriptors are light (URL parsing only); each loads its
// implementation when a replica of its scheme is first opened. A new backend adds a line here.
registerBackend(fileBackend);
registerBackend(s3Backend);
