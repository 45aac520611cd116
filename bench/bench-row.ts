/** One measured number from a benchmark: what, how much, in which unit, and how it was measured. */
export interface BenchRow {
  name: string;
  value: number;
  unit: string;
  how: string;
}
