// Builds the page tokend serves at / into one directory (by default
// ../server/web/assets): index.html and app.css copied as they are, and
// app.js bundled by esbuild from src/app.js with @twilio/voice-sdk.
//
// The output is reproducible: the same sources, lock file and esbuild
// version give the same bytes (no timestamps, no absolute paths, no source
// maps). `make check-web` relies on that.
//
// usage: node build.mjs [outdir]
import { build } from 'esbuild';
import { copyFile, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const outdir = path.resolve(process.argv[2] ?? path.join(here, '..', 'server', 'web', 'assets'));
const copied = ['index.html', 'app.css'];
const bundled = 'app.js';

const sdk = JSON.parse(await readFile(path.join(here, 'node_modules', '@twilio', 'voice-sdk', 'package.json'), 'utf8'));

await mkdir(outdir, { recursive: true });
// Remove what an earlier build left, and only that: the directory holds
// nothing else (server/web embeds all of it).
for (const name of await readdir(outdir)) {
  if (copied.includes(name) || name === bundled || name.endsWith('.LEGAL.txt')) {
    await rm(path.join(outdir, name));
  } else {
    throw new Error(`${path.join(outdir, name)}: not a build output; refusing to build over it`);
  }
}

const result = await build({
  absWorkingDir: here,
  entryPoints: ['src/app.js'],
  outfile: path.join(outdir, bundled),
  write: false,
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: ['es2020'],
  minify: true,
  legalComments: 'eof',
  charset: 'utf8',
  sourcemap: false,
  metafile: true,
  logLevel: 'warning',
  define: {
    __VOICE_SDK_PACKAGE__: JSON.stringify(`${sdk.name}@${sdk.version}`),
  },
});
if (result.errors.length > 0) {
  process.exit(1);
}

// A banner naming every package in the bundle with its version and
// licence, read from the installed packages (sorted: reproducible).
const packages = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = /^node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
  if (m && !packages.has(m[1])) {
    const pj = JSON.parse(await readFile(path.join(here, 'node_modules', m[1], 'package.json'), 'utf8'));
    packages.set(m[1], `${pj.name}@${pj.version} (${pj.license})`);
  }
}
const banner = `/*! tokend page, built by web/build.mjs. Bundles: ${[...packages.keys()].sort().map((k) => packages.get(k)).join(', ')}. */\n`;
const [out] = result.outputFiles;
await writeFile(out.path, banner + out.text);

for (const name of copied) {
  await copyFile(path.join(here, 'src', name), path.join(outdir, name));
}
console.error(`web: built ${[...copied, bundled].join(', ')} into ${path.relative(process.cwd(), outdir) || '.'} (${sdk.name}@${sdk.version})`);
