#!/usr/bin/env bash
# A real Kubernetes control plane for the tests: etcd and kube-apiserver built from the Go module
# proxy (pinned in tests/kube/go/*/go.mod, go.sum committed), started on loopback with TLS.
#
#   tests/kube/kube.sh build          build what is missing (cached), print versions and build times
#   tests/kube/kube.sh bin            print the directory holding etcd, kube-apiserver, kubectl, helm
#   tests/kube/kube.sh up DIR         start etcd + kube-apiserver with state in DIR; DIR/kubeconfig is
#                                     the admin's (system:masters), DIR/kubeconfig-nobody a user with
#                                     no RBAC binding, DIR/env the variables the tests read; waits
#                                     for /readyz
#   tests/kube/kube.sh down DIR       stop both and remove DIR
#
# Cache: $TINKERBELL_CACHE (default /var/cache/tinkerbell-ci as root, else ~/.cache/tinkerbell-ci)
# holds the binaries under kube/<name>-<key>, the key a hash of the module's go.mod, go.sum, the
# Go version and this script's build line, so a changed pin or toolchain always rebuilds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

if [ "$(id -u)" = 0 ]; then cache_root=${TINKERBELL_CACHE:-/var/cache/tinkerbell-ci}
else cache_root=${TINKERBELL_CACHE:-$HOME/.cache/tinkerbell-ci}; fi
export GOCACHE=${GOCACHE_OVERRIDE:-$cache_root/go/build}
export GOMODCACHE=${GOMODCACHE_OVERRIDE:-$cache_root/go/mod}
export GOFLAGS=-buildvcs=false
export GOTOOLCHAIN=local

die() { echo "kube.sh: $*" >&2; exit 1; }

# Versions, read from the pins (one source of truth: the go.mod files).
pin() { # MODULE-DIR MODULE-PATH: the version go.mod requires (in or outside a require block)
  awk -v m="$2" '$1 == m {print $2; exit} $1 == "require" && $2 == m {print $3; exit}' "$here/go/$1/go.mod"
}
k8s_version=$(pin kubernetes k8s.io/kubernetes)
etcd_version=$(pin etcd go.etcd.io/etcd/server/v3)
helm_version=$(pin helm helm.sh/helm/v4)
[ -n "$k8s_version" ] && [ -n "$etcd_version" ] && [ -n "$helm_version" ] \
  || { echo "kube.sh: cannot read the pinned versions from $here/go/*/go.mod" >&2; exit 1; }

# The -ldflags that stamp a version into each binary (a module build has no git tree to read).
ldflags_for() {
  case "$1" in
    kubernetes)
      local minor=${k8s_version#v1.}; minor=${minor%%.*}
      local x
      for x in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        printf -- '-X %s.gitVersion=%s -X %s.gitMajor=1 -X %s.gitMinor=%s -X %s.gitTreeState=clean ' \
          "$x" "$k8s_version" "$x" "$x" "$minor" "$x"
      done ;;
    helm) printf -- '-X helm.sh/helm/v4/internal/version.version=%s ' "$helm_version" ;;
    etcd) ;;
  esac
  printf -- '-s -w'
}

key_for() {
  { cat "$here/go/$1/go.mod" "$here/go/$1/go.sum"; go version; ldflags_for "$1"; echo v1; } \
    | sha256sum | cut -c1-16
}

bin_dir() { echo "$cache_root/kube/bin-$(key_for kubernetes)-$(key_for etcd)-$(key_for helm)"; }

build_one() { # NAME: build the module's tools into $cache_root/kube/NAME-KEY, once
  local name=$1 out
  out="$cache_root/kube/$name-$(key_for "$name")"
  if [ -f "$out/.done" ]; then
    echo "$name: cached in $out (built in $(cat "$out/.done") s)"
    return
  fi
  command -v go >/dev/null || die "go not found (the project's machines have Go 1.26 at /usr/local/go/bin)"
  rm -rf "$out.tmp"; mkdir -p "$out.tmp"
  local start=$SECONDS pkgs
  pkgs=$(awk '/^tool \(/{t=1; next} t && /^\)/{t=0} t{print $1} /^tool [^(]/{print $2}' "$here/go/$name/go.mod")
  echo "$name: building $pkgs"
  # shellcheck disable=SC2086
  (cd "$here/go/$name" && go build -mod=readonly -trimpath -ldflags "$(ldflags_for "$name")" -o "$out.tmp/" $pkgs)
  echo $((SECONDS - start)) > "$out.tmp/.done"
  rm -rf "$out"; mv "$out.tmp" "$out"
  echo "$name: built in $(cat "$out/.done") s"
}

cmd_build() {
  mkdir -p "$cache_root/kube"
  build_one kubernetes
  build_one etcd
  build_one helm
  local bd; bd=$(bin_dir)
  # Builds of other pins or toolchains are never used again.
  local keep="kubernetes-$(key_for kubernetes) etcd-$(key_for etcd) helm-$(key_for helm) $(basename "$bd")" old
  for old in "$cache_root"/kube/*; do
    [ -e "$old" ] || continue
    case " $keep " in *" $(basename "$old") "*) ;; *) rm -rf "$old" ;; esac
  done
  if [ ! -d "$bd" ]; then
    rm -rf "$bd.tmp"; mkdir -p "$bd.tmp"
    ln -s "../kubernetes-$(key_for kubernetes)/kube-apiserver" "$bd.tmp/kube-apiserver"
    ln -s "../kubernetes-$(key_for kubernetes)/kubectl" "$bd.tmp/kubectl"
    ln -s "../etcd-$(key_for etcd)/server" "$bd.tmp/etcd"
    ln -s "../helm-$(key_for helm)/helm" "$bd.tmp/helm"
    mv "$bd.tmp" "$bd"
  fi
  echo "kube-apiserver: $("$bd/kube-apiserver" --version)"
  echo "kubectl: $("$bd/kubectl" version --client 2>/dev/null | head -n1)"
  echo "etcd: $("$bd/etcd" --version | head -n1)"
  echo "helm: $("$bd/helm" version --short)"
  echo "pins: k8s.io/kubernetes $k8s_version, go.etcd.io/etcd/server/v3 $etcd_version, helm.sh/helm/v4 $helm_version"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# pki DIR: a CA, etcd's and the apiserver's serving certificates, client certificates (the admin
# in system:masters, the apiserver as etcd client, and "nobody" without any RBAC binding), and
# the service-account signing key.
pki() {
  local d=$1/pki
  mkdir -p "$d"; chmod 700 "$d"
  (
    cd "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 \
      -subj "/CN=tinkerbell-test-ca" 2>/dev/null
    sign() { # NAME SUBJ EXT
      openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
      printf '%s\n' "$3" > "$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    local san="subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
    sign etcd "/CN=etcd" "$san
extendedKeyUsage=serverAuth,clientAuth"
    sign apiserver "/CN=kube-apiserver" "$san
extendedKeyUsage=serverAuth"
    sign apiserver-etcd-client "/CN=kube-apiserver-etcd-client" "extendedKeyUsage=clientAuth"
    sign admin "/O=system:masters/CN=admin" "extendedKeyUsage=clientAuth"
    sign nobody "/CN=nobody" "extendedKeyUsage=clientAuth"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    chmod 600 ./*.key
  )
}

kubeconfig() { # FILE URL USER
  local d; d=$(dirname "$1")/pki
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: $2
    certificate-authority-data: $(base64 -w0 < "$d/ca.crt")
users:
- name: $3
  user:
    client-certificate-data: $(base64 -w0 < "$d/$3.crt")
    client-key-data: $(base64 -w0 < "$d/$3.key")
contexts:
- name: test
  context: {cluster: test, user: $3, namespace: default}
current-context: test
EOF
  chmod 600 "$1"
}

cmd_up() {
  local dir=${1:?usage: kube.sh up DIR}
  [ ! -e "$dir/apiserver.pid" ] || die "$dir already has a control plane (kube.sh down $dir first)"
  cmd_build > /dev/null
  local bd; bd=$(bin_dir)
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  pki "$dir"
  local etcd_port peer_port api_port
  etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)
  local p=$dir/pki
  "$bd/etcd" --name test --data-dir "$dir/etcd" \
    --listen-client-urls "https://127.0.0.1:$etcd_port" --advertise-client-urls "https://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "test=http://127.0.0.1:$peer_port" \
    --cert-file "$p/etcd.crt" --key-file "$p/etcd.key" --client-cert-auth --trusted-ca-file "$p/ca.crt" \
    --listen-metrics-urls "" --unsafe-no-fsync --quota-backend-bytes 2147483648 \
    > "$dir/etcd.log" 2>&1 &
  echo $! > "$dir/etcd.pid"
  "$bd/kube-apiserver" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --etcd-servers "https://127.0.0.1:$etcd_port" \
    --etcd-cafile "$p/ca.crt" --etcd-certfile "$p/apiserver-etcd-client.crt" --etcd-keyfile "$p/apiserver-etcd-client.key" \
    --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
    --client-ca-file "$p/ca.crt" \
    --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
    --service-account-issuer https://kubernetes.default.svc \
    --allow-privileged=true --authorization-mode Node,RBAC --service-cluster-ip-range 10.96.0.0/16 \
    --endpoint-reconciler-type none \
    --cert-dir "$dir/apiserver-certs" \
    > "$dir/apiserver.log" 2>&1 &
  echo $! > "$dir/apiserver.pid"
  local url="https://127.0.0.1:$api_port"
  kubeconfig "$dir/kubeconfig" "$url" admin
  kubeconfig "$dir/kubeconfig-nobody" "$url" nobody
  local start=$SECONDS
  until "$bd/kubectl" --kubeconfig "$dir/kubeconfig" get --raw /readyz > /dev/null 2>&1; do
    if ! kill -0 "$(cat "$dir/apiserver.pid")" 2>/dev/null || ! kill -0 "$(cat "$dir/etcd.pid")" 2>/dev/null; then
      tail -n 20 "$dir/etcd.log" "$dir/apiserver.log" >&2
      cmd_down "$dir" || true
      die "the control plane exited before /readyz"
    fi
    if [ $((SECONDS - start)) -ge 120 ]; then
      tail -n 20 "$dir/apiserver.log" >&2
      cmd_down "$dir" || true
      die "kube-apiserver not ready after 120 s"
    fi
    sleep 0.5
  done
  cat > "$dir/env" <<EOF
TINKERBELL_TEST_KUBECONFIG=$dir/kubeconfig
TINKERBELL_TEST_KUBECONFIG_NOBODY=$dir/kubeconfig-nobody
TINKERBELL_TEST_KUBE_BIN=$bd
EOF
  echo "kube-apiserver ready at $url in $((SECONDS - start)) s (state in $dir)"
}

cmd_down() {
  local dir=${1:?usage: kube.sh down DIR} f pid
  [ -d "$dir" ] || return 0
  for f in apiserver etcd; do
    if [ -f "$dir/$f.pid" ]; then
      pid=$(cat "$dir/$f.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$dir"
}

case "${1:-}" in
  build) cmd_build ;;
  bin) cmd_build > /dev/null; bin_dir ;;
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  *) echo "usage: $0 build | bin | up DIR | down DIR" >&2; exit 2 ;;
esac
