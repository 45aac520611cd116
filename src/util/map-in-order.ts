// Moved to bounded.ts with pitr's other bounded-concurrency helpers; kept so importers need not change at once.
export { mapInOrder } from './bounded.js';
