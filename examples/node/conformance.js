'use strict';
// node conformance.js KIT
// Run the JavaScript reader (../web/rules.mjs, the page's too: docs/recovery-graph.md, section 12) on every folder of a conformance kit
// (python examples/conformance/make_kit.py KIT) and compare with KIT/kit.json: valid folders must run (the image
// finite, of image_shape; where the Python reader left its image beside the folder, the same to 1e-4), invalid ones
// must be refused by the rule kit.json names. One line per folder; exit 1 if any is not handled as kit.json says.
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');
const { loadRules, readFolder } = require('./fs_source');
const { readNpy } = require('./npy');

async function run(folder) {
  let r;
  try {
    r = await readFolder(folder);
  } catch (e) {
    if (!(e instanceof (await loadRules()).GSError)) throw e;
    const m = /\(rule (\d+)\)$/.exec(e.message);
    return { outcome: 'refuse', rule: m ? Number(m[1]) : null, message: e.message };
  }
  const feeds = {};
  for (const [name, a] of Object.entries(r.inputs)) feeds[name] = new ort.Tensor(a.dtype, a.data, a.shape);
  const session = await ort.InferenceSession.create(r.graph, { executionProviders: ['cpu'], intraOpNumThreads: 1 });
  // rule 9: in chunks, bounded by the plan
  const budget = 'steps' in r.inputs ? Number(r.inputs.steps.data[0]) * Number(r.inputs.step_iters.data[0])
    : Number(r.inputs.max_iterations.data[0]);
  const chunk = Math.max(1, Math.floor(Number(r.inputs.chunk.data[0]) / 2));
  let start = 0, runs = 0, out;
  for (;;) {
    runs += 1;
    if (runs > Math.ceil(budget / chunk) + 1) return { outcome: 'refuse', rule: 9, message: 'still running past its plan' };
    feeds.start = new ort.Tensor('int64', BigInt64Array.from([BigInt(start)]), []);
    feeds.chunk = new ort.Tensor('int64', BigInt64Array.from([BigInt(chunk)]), []);
    out = await session.run(feeds);
    if (!out.running.data[0]) break;
    for (const [inName, outName] of Object.entries(r.iface.resume.state)) {
      const t = out[outName];
      feeds[inName] = new ort.Tensor(t.type, t.data, t.dims);
    }
    start += chunk;
  }
  const image = out.image;
  const ok = JSON.stringify(Array.from(image.dims)) === JSON.stringify(r.iface.image_shape)
    && image.data.every(Number.isFinite) && 'residual' in out;
  return { outcome: ok ? 'run' : 'bad output', image };
}

async function main() {
  const kit = process.argv[2];
  if (!kit) throw new Error('usage: node conformance.js KIT');
  const spec = JSON.parse(fs.readFileSync(path.join(kit, 'kit.json'), 'utf8'));
  let wrong = 0;
  for (const e of spec.folders) {
    const folder = path.join(kit, e.folder);
    const got = await run(folder);
    let good = got.outcome === e.expect && (e.expect === 'run' || got.rule === e.rule);
    let extra = '';
    const py = path.join(path.dirname(folder), `${path.basename(folder)}.python.npy`);
    if (good && got.image && fs.existsSync(py)) {
      const p = readNpy(py).data;
      let d = 0;
      for (let i = 0; i < p.length; i++) d = Math.max(d, Math.abs(p[i] - got.image.data[i]));
      extra = `, ${d.toExponential(1)} from Python's image`;
      if (!(d <= 1e-4)) good = false;
    }
    if (!good) wrong += 1;
    const words = got.outcome === 'run' ? `ran${extra}` : `${got.outcome} (rule ${got.rule}): ${got.message || ''}`;
    console.log(`${good ? 'ok  ' : 'FAIL'} ${e.folder}: ${words}`.slice(0, 240));
  }
  console.log(`${spec.folders.length - wrong} of ${spec.folders.length} folders handled as kit.json says`);
  process.exit(wrong ? 1 : 0);
}

main().catch((e) => { console.error(`error: ${e.message}`); process.exit(2); });
