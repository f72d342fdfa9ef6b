'use strict';
// node recover.js FOLDER [REFERENCE.npy] [OUT.npy]
// Run a recovery folder written by `gs-export recovery --measurements meas.npy -o FOLDER` (docs/recovery-graph.md):
// every rule of docs/recovery-graph.md section 12 checked first (rules.js: files, sha256, the interface, the graph, the
// numbers), every inputs/NAME.npy fed to the graph input NAME,
// one session run does the whole recovery (optimiser, stopping, winner), the output `image` (C, H, W) is written
// to OUT.npy (default FOLDER/../recovered.npy) and, with a reference image ((C, H, W) float32 .npy in [0, 1]), its
// PSNR printed. Errors: one line on stderr, exit 2.
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');
const { readNpy, writeNpy } = require('./npy');
const { readFolder, GSError } = require('./rules');

function psnr(a, b) {
  let s = 0;
  for (let i = 0; i < a.length; i++) { const d = a[i] - b[i]; s += d * d; }
  return 10 * Math.log10(a.length / s);
}

async function main() {
  const [folder, refPath, outArg] = process.argv.slice(2);
  if (!folder) throw new GSError('usage: node recover.js FOLDER [REFERENCE.npy] [OUT.npy]');
  const { graph, inputs, iface } = readFolder(folder);   // every rule of docs/recovery-graph.md, section 12
  const feeds = {};
  for (const [name, a] of Object.entries(inputs)) feeds[name] = new ort.Tensor(a.dtype, a.data, a.shape);
  const session = await ort.InferenceSession.create(graph, { executionProviders: ['cpu'] });
  const t0 = Date.now();
  const out = await session.run(feeds);
  const seconds = (Date.now() - t0) / 1000;
  const image = out.image;
  const winner = Number(out.winner.data[0]);
  const outPath = outArg || path.join(path.dirname(path.resolve(folder)), 'recovered.npy');
  writeNpy(outPath, image.data, image.dims);
  let line = `${iface.model} c=${iface.cut}: restart ${winner + 1} of ${out.score.dims[0]} won after ` +
             `${Number(out.iterations.data[winner])} iterations, ${seconds.toFixed(1)} s`;
  if (refPath) line += `, PSNR ${psnr(image.data, readNpy(refPath).data).toFixed(2)} dB`;
  console.log(line);
  console.log(`wrote ${outPath}`);
}

main().catch((e) => { console.error(`error: ${e.message}`); process.exit(2); });
