#!/usr/bin/env bash
# profile.sh: where the floor's and the runners' CPU per call goes, at one load, by perf sampling.
#   bench/profile.sh MODE CONNS [PLUGIN] [OUTDIR] [NAME='CMD' ...]
# MODE is saturated (the floor spins 50 µs, as in the bench) or paced (10,000 calls/s, no spin).
# Without targets: the floor, then the sample runner as `dotnet fsi build.fsx bench` published it
# (artifacts/bench: jit-epoll and aot-epoll). Each target in turn: started on a socket of its own,
# loaded by loadgen for 2 s of warm-up and 10 s measured, `perf record -g` for 7 s of that window;
# then bench/split.py prints µs of CPU per call by category, one column per target.
# Needs perf, python3 and a bench run's artifacts/bench (loadgen, jit, aot, aot-symbols).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
mode=${1:?saturated or paced}; conns=${2:?connections}; plugin=${3:-say}; out=${4:-/tmp/runner-profile}
shift $(( $# > 4 ? 4 : $# ))
bench="$root/artifacts/bench"
loadgen="$bench/loadgen"
[ -x "$loadgen/loadgen" ] || { echo "no $loadgen/loadgen: run 'dotnet fsi build.fsx bench' first" >&2; exit 1; }
command -v perf >/dev/null || { echo "perf is not installed (Debian: apt-get install linux-perf)" >&2; exit 1; }

case $plugin in
  say) conf='{"body":"hello"}'; expect=stop ;;
  request-body-rewrite) conf='{"new_body":"rewritten"}'; expect=rewrite ;;
  *) echo "plugin: say or request-body-rewrite" >&2; exit 1 ;;
esac
case $mode in
  saturated) spin=50; load=() ;;
  paced) spin=0; load=(--rate 10000) ;;
  *) echo "mode: saturated or paced" >&2; exit 1 ;;
esac

mkdir -p "$out"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  # perf finds the AOT binary's symbols through its debug link, next to it.
  mkdir -p "$out/aot"
  cp "$bench/aot/SampleRunner" "$bench/aot-symbols/SampleRunner.dbg" "$out/aot/"
  targets=(jit-epoll="$bench/jit/SampleRunner" aot-epoll="$out/aot/SampleRunner")
fi
targets=(floor="$loadgen/floor --spin-us $spin --sock SOCK" "${targets[@]}")

names=()
# Whatever is still running when the script ends (a failed perf record under set -e, Ctrl-C) is
# stopped with it; the guard keeps set -u quiet on an empty list.
pids=()
trap '[ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true' EXIT
for t in "${targets[@]}"; do
  name=${t%%=*}; cmd=${t#*=}; sock="$out/$name.sock"; names+=("$name")
  rm -f "$sock"
  # The floor takes its socket as an argument, the runners from APISIX's variable.
  ( APISIX_LISTEN_ADDRESS="unix:$sock" APISIX_CONF_EXPIRE_TIME=3600 \
    DOTNET_PerfMapEnabled=1 DOTNET_EnableWriteXorExecute=0 exec ${cmd//SOCK/$sock} ) >"$out/$name.log" 2>&1 &
  pid=$!; pids+=("$pid")
  for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
  [ -S "$sock" ] || { echo "$name did not listen on $sock" >&2; kill $pid; exit 1; }
  "$loadgen/loadgen" --sock "$sock" --conns "$conns" --duration 10 --warmup 2 --pid $pid \
    --conf-name "$plugin" --conf-value "$conf" --expect-action "$expect" "${load[@]}" >"$out/$name.lg" 2>&1 &
  lg=$!; pids+=("$lg")
  sleep 3
  perf record -F 2999 -g -p $pid -o "$out/$name.data" -- sleep 7 >/dev/null 2>&1
  wait $lg || { echo "loadgen failed against $name:" >&2; cat "$out/$name.lg" >&2; kill $pid; exit 1; }
  kill $pid; wait $pid 2>/dev/null || true
  pids=()  # both reaped: their ids may be reused
  grep -E "^calls:|^latency" "$out/$name.lg" | sed "s/^/$name: /"
done

echo "$plugin, $mode, $conns connections"
python3 "$here/split.py" "$out" "${names[@]}"
