#!/bin/sh
# Test stand-in for tink-worker (hookos/test.sh only, never shipped): prints the environment
# HookOS gives the worker as "ENV name=value" lines (the token as its length only), then exits 3
# so the test can see HookOS restart it.
echo "ENV-WORKER start pid=$$"
for v in TINKERBELL_GRPC_AUTHORITY WORKER_ID ID TINKERBELL_TLS TINKERBELL_INSECURE_TLS \
         HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy; do
  eval "val=\${$v-<unset>}"
  echo "ENV $v=$val"
done
echo "ENV TINKERBELL_WORKER_TOKEN.len=${#TINKERBELL_WORKER_TOKEN}"
echo "ENV-WORKER exit 3"
exit 3
