#!/usr/bin/env bash
# Clients generated from the served /openapi.json work for the README's first webhook, as a user
# would generate and use them (examples/clients/; the generated code is not committed): Python (openapi-python-client, from PyPI) and TypeScript
# (openapi-typescript's types with openapi-fetch, from npm, type-checked by tsc in strict mode).
# Each subscribes a receiver of its own, publishes, verifies the signature with the Standard
# Webhooks library of its language, waits for the delivery to succeed, retries it and sees it again. The served document is
# also checked by openapi-spec-validator (it names the services, which `posthorn openapi` does
# not). Run by .ci/run after the tests; needs target/debug/posthorn, python3, node and npm.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/clients
rm -rf "$out" && mkdir -p "$out"
admin=ci-clients-admin-token-0123456789
target/debug/posthorn serve --listen 127.0.0.1:0 --admin-token "$admin" \
  --database "sqlite://$PWD/$out/posthorn.db" --allow-network 127.0.0.0/8 >"$out/serve.out" 2>"$out/serve.err" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do grep -q "listening on" "$out/serve.out" && break; sleep 0.1; done
base=$(sed -n 's/^posthorn listening on //p' "$out/serve.out")
[ -n "$base" ] || { cat "$out/serve.err" >&2; exit 1; }
curl -sf "$base/openapi.json" -o "$out/openapi.json"

pip() { python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "$@"; }
pip openapi-spec-validator "openapi-python-client>=0.21" "standardwebhooks>=1.0"
python3 -m openapi_spec_validator "$out/openapi.json"

# Python.
python3 -m openapi_python_client generate --path "$out/openapi.json" --output-path "$out/python" --overwrite
pip "./$out/python"
python3 examples/clients/python/first_webhook.py "$base" "$admin"

# TypeScript.
cp examples/clients/typescript/{package.json,tsconfig.json,first_webhook.ts} "$out/"
(
  cd "$out"
  npm install --silent --no-audit --no-fund --no-package-lock >/dev/null
  npx --no-install openapi-typescript openapi.json -o schema.ts
  npx --no-install tsc -p .
  node first_webhook.js "$base" "$admin"
)
if grep -q '"level":"ERROR"\|panicked' "$out/serve.err"; then
  echo "the server logged errors under the generated clients:" >&2
  grep '"level":"ERROR"\|panicked' "$out/serve.err" | head -20 >&2
  exit 1
fi
