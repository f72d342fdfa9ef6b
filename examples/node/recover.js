'use strict';
// node recover.js FOLDER [REFERENCE.npy] [OUT.npy]
// Run a recovery folder written by `gs-export recovery --measurements meas.npy -o FOLDER` (docs/recovery-graph.md):
// every file checked against the sha256 in FOLDER/recovery.json, every inputs/NAME.npy fed to the graph input NAME,
// one session run does the whole recovery (optimiser, stopping, winner), the output `image` (C, H, W) is written
// to OUT.npy (default FOLDER/../recovered.npy) and, with a reference image ((C, H, W) float32 .npy in [0, 1]), its
// PSNR printed. Errors: one line on stderr, exit 2.
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const ort = require('onnxruntime-node');
const { readNpy, writeNpy } = require('./npy');

class GSError extends Error {}

function inside(folder, rel) {
  if (typeof rel !== 'string' || !rel || path.isAbsolute(rel) || rel.includes('\\') || rel.split('/').includes('..')) {
    throw new GSError(`${JSON.stringify(rel)} is not a relative path inside the recovery folder`);
  }
  const p = path.join(folder, rel);
  if (!fs.existsSync(p) || !fs.statSync(p).isFile()) throw new GSError(`${rel} is missing from ${folder}`);
  const real = fs.realpathSync(p), root = fs.realpathSync(folder);
  if (!real.startsWith(root + path.sep)) throw new GSError(`${rel} escapes the recovery folder`);
  return p;
}

function verified(folder, files, rel) {
  const data = fs.readFileSync(inside(folder, rel));
  if (crypto.createHash('sha256').update(data).digest('hex') !== files[rel]) {
    throw new GSError(`${rel} does not match its sha256 in recovery.json`);
  }
  return data;
}

function psnr(a, b) {
  let s = 0;
  for (let i = 0; i < a.length; i++) { const d = a[i] - b[i]; s += d * d; }
  return 10 * Math.log10(a.length / s);
}

async function main() {
  const [folder, refPath, outArg] = process.argv.slice(2);
  if (!folder) throw new GSError('usage: node recover.js FOLDER [REFERENCE.npy] [OUT.npy]');
  const ifacePath = path.join(folder, 'recovery.json');
  if (!fs.existsSync(ifacePath)) throw new GSError(`${folder} has no recovery.json`);
  const iface = JSON.parse(fs.readFileSync(ifacePath, 'utf8'));
  if (iface.format !== 'gs-onnx-recovery' || iface.format_version !== 1) throw new GSError(`${ifacePath}: not a recovery interface v1`);
  const files = iface.files || {};
  const graph = verified(folder, files, iface.graph);
  const feeds = {};
  const tmp = fs.mkdtempSync(path.join(require('os').tmpdir(), 'gs-recovery-'));
  try {
    for (const [name, spec] of Object.entries(iface.inputs)) {
      const bytes = verified(folder, files, spec.file);
      const p = path.join(tmp, `${name}.npy`);   // read back the verified bytes, never the path a second time
      fs.writeFileSync(p, bytes);
      const a = readNpy(p);
      if (a.dtype !== spec.dtype || JSON.stringify(a.shape) !== JSON.stringify(spec.shape)) {
        throw new GSError(`${spec.file} holds ${a.dtype} [${a.shape}], expected ${spec.dtype} [${spec.shape}]`);
      }
      feeds[name] = new ort.Tensor(a.dtype, a.data, a.shape);
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
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
