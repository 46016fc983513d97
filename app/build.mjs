// Builds the app into the folder given as the only argument (scripts/build-app passes
// server/assets/app, which the server embeds). Deterministic: the same sources and
// pinned packages give the same bytes, which CI checks.
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";

const out = process.argv[2];
if (!out) throw new Error("usage: node build.mjs <output folder>");
mkdirSync(out, { recursive: true });

// The WebAssembly is fetched as its own file (and cached by the service worker), not
// inlined as base64: smaller on the wire, and compiled while it streams. So every import
// of the two packages' full entry points goes to their `slim` ones (esbuild's `alias`
// would rewrite `.../slim` imports too).
const slimAutomerge = {
  name: "slim-automerge",
  setup(b) {
    b.onResolve({ filter: /^@automerge\/automerge(-repo)?$/ }, (args) =>
      b.resolve(`${args.path}/slim`, { kind: args.kind, resolveDir: args.resolveDir }),
    );
  },
};

await build({
  entryPoints: ["src/main.js"],
  outfile: join(out, "app.js"),
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2022"],
  minify: true,
  legalComments: "eof",
  plugins: [slimAutomerge],
  logLevel: "warning",
});
copyFileSync("node_modules/@automerge/automerge/dist/automerge.wasm", join(out, "automerge.wasm"));

// The page, style, icon, manifest and service worker are served from src/ as they are;
// what changes with a build is named by one hash of everything the app is made of.
const hash = createHash("sha256");
for (const file of ["app.js", "automerge.wasm"]) hash.update(readFileSync(join(out, file)));
for (const file of ["index.html", "app.css", "icon.svg", "manifest.webmanifest", "sw.js"]) {
  hash.update(readFileSync(join("src", file)));
}
const version = hash.digest("hex").slice(0, 16);
writeFileSync(join(out, "version.js"), `self.LOTSE_VERSION = "${version}";\n`);
console.log(`built the app into ${out} (version ${version})`);
