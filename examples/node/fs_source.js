'use strict';
// A recovery folder on disk as a source for the shared reader (../web/rules.mjs, docs/recovery-graph.md section 12):
// read(rel, rule, maxBytes) refuses, by that rule, a file that is missing, not a regular file, reached through a link
// that leaves the folder, larger than maxBytes, or larger than Node can hold in one Buffer (2 GiB: rule 5 says a
// reader refuses such a file by name rather than fail on it).
const fs = require('fs');
const path = require('path');

const MAX_NODE_FILE = 2 ** 31 - 1;   // what fs.readFileSync can hold in one Buffer

// The shared reader is an ES module; CommonJS loads it once, asynchronously.
let rules = null;
async function loadRules() {
  rules = rules || await import('../web/rules.mjs');
  return rules;
}

function fsSource(folder, { fail }) {
  return {
    label: folder,
    async read(rel, rule, maxBytes) {
      const p = path.join(folder, rel);
      let st;
      try { st = fs.statSync(p); } catch (e) { throw fail(rule, `${rel} is missing from ${folder}`); }
      if (!st.isFile()) throw fail(rule, `${rel} is not a regular file`);
      const real = fs.realpathSync(p), root = fs.realpathSync(folder);
      if (!real.startsWith(root + path.sep)) throw fail(rule, `${rel} escapes the recovery folder`);
      if (st.size > maxBytes) throw fail(rule, `${rel} is larger than ${maxBytes} bytes`);
      if (st.size > MAX_NODE_FILE) throw fail(5, `${rel} is ${st.size} bytes: this reader holds files up to 2 GiB`);
      return fs.readFileSync(p);
    },
  };
}

// Every rule of section 12 on the folder at `folder`: { graph, inputs, iface, reference }, or a rules.GSError.
async function readFolder(folder) {
  const r = await loadRules();
  return r.readFolder(fsSource(folder, r));
}

module.exports = { loadRules, readFolder };
