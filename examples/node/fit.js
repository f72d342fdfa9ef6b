'use strict';
// node fit.js MODEL_DIR CUT IMAGE.npy [STEPS]
// Fit an image (a (3, H, W) float32 .npy in [0, 1], e.g. written by gs_onnx.io.images.load_image) with the
// cut generator: minimise ||G_c(z) - x||^2 / n over z by Adam (a simple optimiser; A = I), from z = 0.
// Writes recovered.npy beside IMAGE.npy and prints the PSNR as it goes.
const path = require('path');
const { loadModel, cutGenerator, objective } = require('./gs_onnx');
const { readNpy, writeNpy } = require('./npy');

function psnr(a, b) {
  let s = 0;
  for (let i = 0; i < a.length; i++) { const d = Math.min(1, Math.max(0, a[i])) - b[i]; s += d * d; }
  return 10 * Math.log10(a.length / s);
}

async function main() {
  const [dir, cutArg, imgPath, stepsArg] = process.argv.slice(2);
  const model = loadModel(dir);
  const gen = await cutGenerator(model, Number(cutArg));
  const x = readNpy(imgPath).data;
  const steps = Number(stepsArg || 200);
  const z = new Float32Array(gen.size);
  const m1 = new Float64Array(gen.size), m2 = new Float64Array(gen.size);
  const lr = 0.05, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  let last;
  for (let t = 1; t <= steps; t++) {
    const { f, g, x01 } = await objective(gen, z, null, x, x.length, x.length);
    last = x01;
    for (let i = 0; i < z.length; i++) {
      m1[i] = b1 * m1[i] + (1 - b1) * g[i];
      m2[i] = b2 * m2[i] + (1 - b2) * g[i] * g[i];
      z[i] -= lr * (m1[i] / (1 - b1 ** t)) / (Math.sqrt(m2[i] / (1 - b2 ** t)) + eps);
    }
    if (t === 1 || t % 50 === 0 || t === steps) console.log(`step ${t}: f ${f.toExponential(3)}, PSNR ${psnr(x01, x).toFixed(2)} dB`);
  }
  const out = path.join(path.dirname(imgPath), 'recovered.npy');
  writeNpy(out, last, [1, ...model.man.tensors[model.man.image.name]]);
  console.log(`wrote ${out}`);
}

main().catch((e) => { console.error(`error: ${e.message}`); process.exit(2); });
