'use strict';
// node recover.js FOLDER [REFERENCE.npy] [OUT.npy] [--ep cpu|webgpu]
// Run a recovery folder written by `gs-export recovery --measurements meas.npy -o FOLDER` (docs/recovery-graph.md):
// every rule of docs/recovery-graph.md section 12 checked first (../web/rules.mjs, shared with the browser page: files, sha256, the interface, the graph,
// the numbers), every inputs/NAME.npy fed to the graph input NAME,
// one session run does the whole recovery (optimiser, stopping, winner), the output `image` (C, H, W) is written
// to OUT.npy (default FOLDER/../recovered.npy) and, with a reference image ((C, H, W) float32 .npy in [0, 1]), its
// PSNR printed. --ep webgpu runs the session on onnxruntime-node's WebGPU provider (Dawn; Linux: a Vulkan driver it
// accepts, such as a GPU's, or Chromium's SwiftShader through VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json;
// Debian 12's lavapipe is refused by Dawn); the default is the CPU. Errors: one line on stderr, exit 2.
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');
const { readNpy, writeNpy } = require('./npy');
const { loadRules, readFolder } = require('./fs_source');

function psnr(a, b) {
  let s = 0;
  for (let i = 0; i < a.length; i++) { const d = a[i] - b[i]; s += d * d; }
  return 10 * Math.log10(a.length / s);
}

const EPS = ['cpu', 'webgpu'];

async function main() {
  const { GSError } = await loadRules();
  const args = process.argv.slice(2);
  let ep = 'cpu';
  const at = args.indexOf('--ep');
  if (at >= 0) {
    ep = args[at + 1];
    args.splice(at, 2);
    if (!EPS.includes(ep)) throw new GSError(`--ep must be one of ${EPS.join(', ')}`);
  }
  const [folder, refPath, outArg] = args;
  if (!folder) throw new GSError('usage: node recover.js FOLDER [REFERENCE.npy] [OUT.npy] [--ep cpu|webgpu]');
  const { graph, inputs, iface } = await readFolder(folder);   // every rule of docs/recovery-graph.md, section 12
  const feeds = {};
  for (const [name, a] of Object.entries(inputs)) feeds[name] = new ort.Tensor(a.dtype, a.data, a.shape);
  let session;
  try {
    // rule 9: intra- and inter-op spinning off (idle workers spinning take cores other work could use)
    session = await ort.InferenceSession.create(graph, {
      executionProviders: [ep], logSeverityLevel: 3,
      extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
    });
  } catch (e) {
    if (ep !== 'webgpu') throw e;
    const why = (e.message.match(/Failed to get a WebGPU adapter[^\n]*/) || [e.message.split('\n')[0]])[0];
    throw new GSError(`--ep webgpu: onnxruntime-node could not start WebGPU (${why}); on Linux it needs a Vulkan ` +
                      'driver Dawn accepts (a GPU\'s, or VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json)');
  }
  const t0 = Date.now();
  const out = await session.run(feeds);
  const seconds = (Date.now() - t0) / 1000;
  const image = out.image;
  const winner = Number(out.winner.data[0]);
  const outPath = outArg || path.join(path.dirname(path.resolve(folder)), 'recovered.npy');
  writeNpy(outPath, image.data, image.dims);
  let line = `${iface.model} c=${iface.cut}: restart ${winner + 1} of ${out.score.dims[0]} won after ` +
             `${Number(out.iterations.data[winner])} iterations, ${seconds.toFixed(1)} s on ${ep}`;
  if (refPath) line += `, PSNR ${psnr(image.data, readNpy(refPath).data).toFixed(2)} dB`;
  console.log(line);
  console.log(`wrote ${outPath}`);
}

main().catch((e) => { console.error(`error: ${e.message}`); process.exit(2); });
