'use strict';
// node check.js MODEL_DIR CUT Z.npy A.npy|identity Y.npy OUT_DIR
// The cut generator's image x01 = G_c(z) and the objective's gradient at z, written as .npy for comparison
// with the Python runtime (tests/test_node.py).
const path = require('path');
const { loadModel, cutGenerator, objective } = require('./gs_onnx');
const { readNpy, writeNpy } = require('./npy');

async function main() {
  const [dir, cutArg, zPath, aPath, yPath, out] = process.argv.slice(2);
  const model = loadModel(dir);
  const gen = await cutGenerator(model, Number(cutArg));
  const z = readNpy(zPath).data;
  const y = readNpy(yPath).data;
  const n = model.man.tensors[model.man.image.name].reduce((a, b) => a * b, 1);
  const A = aPath === 'identity' ? null : readNpy(aPath).data;
  const { f, g, x01 } = await objective(gen, z, A, y, y.length, n);
  writeNpy(path.join(out, 'image.npy'), x01, [1, ...model.man.tensors[model.man.image.name]]);
  writeNpy(path.join(out, 'grad.npy'), g, [1, gen.size]);
  console.log(JSON.stringify({ f, size: gen.size, inputs: gen.inputs }));
}

main().catch((e) => { console.error(`error: ${e.message}`); process.exit(2); });
