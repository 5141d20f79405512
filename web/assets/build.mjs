// Builds the front-end bundles into ../static/dist (run by `npm run build`, i.e. `make assets`).
//   viewer.js            case diagram (bpmn-js NavigatedViewer)
//   studio-index.js      studio list page: the templates of 新建流程(简易模式)
//   studio.js/studio.css procedure studio: bpmn-js Modeler (Chinese), properties panel with the XiangFlow
//                        provider, bpmnlint (.bpmnlintrc compiled here), the Chinese form builder, dmn-js
// Everything comes from node_modules; nothing is fetched at run time.
import { copyFileSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import * as esbuild from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.resolve(here, '../static/dist');
const require = createRequire(import.meta.url);
const LOCAL_PLUGIN = 'bpmnlint-plugin-xiangflow';
const localPluginDir = path.join(here, 'src', LOCAL_PLUGIN);

// bpmnlint resolves rules with node's require; our own plugin lives in src/, not node_modules
function pluginRequire() {
  const base = createRequire(path.join(here, 'package.json'));
  const mapped = (id) => (id === LOCAL_PLUGIN || id.startsWith(LOCAL_PLUGIN + '/'))
    ? path.join(localPluginDir, id.slice(LOCAL_PLUGIN.length)) : id;
  const req = (id) => base(mapped(id));
  req.resolve = (id) => base.resolve(mapped(id));
  return req;
}

// `import lintConfig from '../.bpmnlintrc'`: compile the linter configuration into a module at build time
const bpmnlintrc = {
  name: 'bpmnlintrc',
  setup(build) {
    build.onResolve({ filter: /\.bpmnlintrc$/ }, (args) => ({ path: path.resolve(args.resolveDir, args.path), namespace: 'bpmnlintrc' }));
    build.onLoad({ filter: /.*/, namespace: 'bpmnlintrc' }, async (args) => {
      const compileConfig = require('bpmnlint/lib/support/compile-config');
      const NodeResolver = require('bpmnlint/lib/resolver/node-resolver');
      const config = JSON.parse(readFileSync(args.path, 'utf8'));
      const contents = await compileConfig(config, new NodeResolver({ require: pluginRequire() }));
      return { contents, loader: 'js', resolveDir: here };
    });
  },
};

// bpmn-js (diagram-js-ui) needs preact >= 10.29, form-js-editor pins <= 10.15.1 in its own node_modules: the
// form-js viewer components it renders must use that same preact instance, or their hooks find no context
const formJsPreact = {
  name: 'form-js-preact',
  setup(build) {
    const editorDir = path.join(here, 'node_modules/@bpmn-io/form-js-editor');
    const editorRequire = createRequire(path.join(editorDir, 'package.json'));
    build.onResolve({ filter: /^preact(\/.*)?$/ }, (args) => {
      if (!/[\\/]@bpmn-io[\\/]form-js-(viewer|editor)[\\/]/.test(args.importer)) return undefined;
      return { path: editorRequire.resolve(args.path) };
    });
  },
};

const common = { bundle: true, minify: process.env.XF_NO_MINIFY ? false : true, format: 'iife', logLevel: 'warning', legalComments: 'none' };

await esbuild.build({ ...common, entryPoints: [path.join(here, 'src/viewer.js')], outfile: path.join(out, 'viewer.js') });
await esbuild.build({ ...common, entryPoints: [path.join(here, 'src/studio-index.js')], outfile: path.join(out, 'studio-index.js') });
for (const css of ['diagram-js.css', 'bpmn-js.css']) {
  copyFileSync(path.join(here, 'node_modules/bpmn-js/dist/assets', css), path.join(out, css));
}

await esbuild.build({
  ...common,
  entryPoints: { studio: path.join(here, 'src/studio.js') },
  outdir: out,
  plugins: [bpmnlintrc, formJsPreact],
  alias: { [LOCAL_PLUGIN]: localPluginDir },
  loader: { '.woff': 'dataurl', '.woff2': 'dataurl', '.ttf': 'dataurl', '.eot': 'empty', '.svg': 'dataurl' },
  define: { 'process.env.NODE_ENV': '"production"' },
});
