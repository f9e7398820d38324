#!/usr/bin/env bash
# Builds the krew archive and its manifest:
#   dist/release/kubectl-pwru-VERSION.tar.gz   bin/, dist/, helpers, manifests/, production node_modules
#   dist/release/pwru.yaml                     manifests/krew/pwru.yaml with VERSION, URI and SHA256 filled in
# Usage: manifests/krew/release.sh URI_PREFIX   (where the archive will be downloadable from)
# Run after `npm run build` (helpers and TypeScript built).
set -euo pipefail
cd "$(dirname "$0")/../.."
prefix=${1:?usage: manifests/krew/release.sh URI_PREFIX}
version=$(node -p 'require("./package.json").version')
name="kubectl-pwru-${version}"
out=dist/release
stage="$out/$name"
rm -rf "$stage" && mkdir -p "$stage"
cp -r package.json package-lock.json bin manifests "$stage/"
mkdir -p "$stage/dist" && cp -r dist/package.json dist/src dist/runner "$stage/dist/"
for arch in amd64 arm64; do
  if [ -x "helper/build/$arch/pwru-helper" ]; then
    mkdir -p "$stage/helper/build/$arch" && cp "helper/build/$arch/pwru-helper" "$stage/helper/build/$arch/"
  fi
done
(cd "$stage" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund > /dev/null)
tar -C "$out" -czf "$out/$name.tar.gz" "$name"
sha=$(sha256sum "$out/$name.tar.gz" | cut -d' ' -f1)
VERSION="$version" URI="${prefix%/}/$name.tar.gz" SHA256="$sha" \
  node -e 'process.stdout.write(require("fs").readFileSync(process.argv[1], "utf8").replace(/\$\{(VERSION|URI|SHA256)\}/g, (_, k) => process.env[k]))' \
  manifests/krew/pwru.yaml > "$out/pwru.yaml"
echo "$out/$name.tar.gz ($sha)"
echo "$out/pwru.yaml"
