/*
 * Regenerates the chart from a results file:
 *   tsx bench/chart.ts bench/results/<timestamp>.json [docs/benchmarks.svg]
 */
import fs from 'node:fs';
import { chartSvg, type Target } from './lib/report.ts';

const [input, output = 'docs/benchmarks.svg'] = process.argv.slice(2);
if (!input) {
  process.stderr.write('usage: tsx bench/chart.ts <results.json> [out.svg]\n');
  process.exit(2);
}
const r = JSON.parse(fs.readFileSync(input, 'utf8')) as {
  mode: string;
  startedAt: string;
  machine: { cpus: number; cpuModel: string; node: string; redis: string; bullmq: string };
  loadAverage: { start: number[] };
  targets: Target[];
};
const m = r.machine;
fs.writeFileSync(
  output,
  chartSvg(
    r.targets,
    `Darkroom vs bare BullMQ — targets (${r.mode} run)`,
    `${m.cpus} × ${m.cpuModel}, node ${m.node}, redis ${m.redis}, bullmq ${m.bullmq}; ${r.startedAt.slice(0, 16).replace('T', ' ')} UTC; load ${r.loadAverage.start[0]}`,
  ),
);
process.stdout.write(`${output}\n`);
