#!/usr/bin/env bash
# bench.sh: the epoll transport and the plain socket transport against the floor, JIT and Native
# AOT, in one interleaved compare.sh run per mode (paced 10,000 calls/s, then saturation).
#   tests/Apisix.Runner.Transport.Host/bench.sh [OUTDIR] [ROUNDS] [SECONDS] [extra NAME='CMD' targets...]
# Needs ../shared/loadgen (copied to OUTDIR/loadgen and built there), gcc, make, python3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-/tmp/transport-bench}; rounds=${2:-2}; secs=${3:-5}; shift $(( $# > 3 ? 3 : $# ))
loadgen_src=${LOADGEN:-$root/../../shared/loadgen}
[ -d "$loadgen_src" ] || loadgen_src=/work/shared/loadgen
mkdir -p "$out"
rm -rf "$out/loadgen" && cp -r "$loadgen_src" "$out/loadgen" && make -s -C "$out/loadgen"
# compare.sh names its sockets /tmp/lg-NAME.sock: another run on the same machine (another session's
# floor) would take over or delete ours. This copy gives them a prefix of its own.
tag="tb$$-"
sed -i "s|/tmp/lg-\$1.sock|/tmp/lg-${tag}\$1.sock|; s|--sock /tmp/lg-floor.sock|--sock /tmp/lg-${tag}floor.sock|" "$out/loadgen/compare.sh"
grep -q "lg-${tag}floor" "$out/loadgen/compare.sh" || { echo "could not patch compare.sh's socket paths" >&2; exit 1; }

dotnet build "$here" -c Release -nologo -v q
jit="dotnet $root/tests/Apisix.Runner.Transport.Host/bin/Release/net10.0/Apisix.Runner.Transport.Host.dll"
dotnet publish "$here" -c Release -r linux-x64 -p:PublishAot=true -p:TreatWarningsAsErrors=false \
  --artifacts-path "$out/aot-build" -o "$out/aot" -nologo -v q
aot="$out/aot/Apisix.Runner.Transport.Host"

targets=(epoll-jit="$jit bench" epoll-aot="$aot bench"
         socket-jit="$jit bench --transport socket" socket-aot="$aot bench --transport socket" "$@")
cd "$out/loadgen"
./compare.sh -d "$secs" -c "16 64" -r "$rounds" -s 0 -q 60 -o "$out/paced" \
  -l "--rate 10000 --expect-action stop" "${targets[@]}"
./compare.sh -d "$secs" -c "16 64" -r "$rounds" -s 0 -q 60 -o "$out/saturation" \
  -l "--expect-action stop" "${targets[@]}"
