#!/bin/sh
# trtq deploy's runner on the device. Run from the deploy folder:
#   sh bin/trtq-device.sh build NAME ONNX -- COMMAND...   COMMAND writes engines/NAME.partial/NAME.engine
#   sh bin/trtq-device.sh bench NAME TEGRASTATS -- COMMAND...   ('' = no tegrastats)
#   sh bin/trtq-device.sh plugin SRC_DIR OUT_DIR
#   sh bin/trtq-device.sh manifest
# Outputs are written as *.partial and renamed only when their step succeeds, so a dropped
# connection or a failed step never leaves a half-written engine, log or result behind. A
# failed step keeps its log as results/NAME.STEP.log.failed and prints its last lines.
set -u
mkdir -p engines results run

fail() {  # fail NAME STEP STATUS: keep the log, drop the other partial outputs
  log="results/$1.$2.log"
  [ -f "$log.partial" ] && mv -f "$log.partial" "$log.failed"
  rm -rf results/"$1".*.partial engines/"$1".partial "run/$1.$2.pgid"
  echo "trtq-device: $2 of $1 failed (status $3); last lines of $log.failed:" >&2
  tail -n 25 "$log.failed" >&2 2>/dev/null
  exit 1
}

claim() {  # claim NAME STEP: stop a run of the same step left behind by a dropped connection
  pidfile="run/$1.$2.pgid"
  if [ -f "$pidfile" ]; then
    old=$(cat "$pidfile" 2>/dev/null)
    if [ -n "$old" ] && kill -0 "-$old" 2>/dev/null; then
      echo "trtq-device: stopping the earlier $2 of $1 (process group $old)" >&2
      kill -TERM "-$old" 2>/dev/null
      i=0
      while kill -0 "-$old" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
      kill -KILL "-$old" 2>/dev/null
    fi
  fi
  # sshd starts each command in its own session, so our process group is this step's processes
  awk '{print $5}' "/proc/$$/stat" > "$pidfile"
}

publish() {  # publish NAME: every results/NAME.*.partial becomes its final name
  for f in results/"$1".*.partial; do
    [ -e "$f" ] && mv -f "$f" "${f%.partial}"
  done
  return 0
}

step_build() {
  name="$1"; onnx="$2"; shift 3
  engine="engines/$name.engine"
  want="$(sha256sum "$onnx" | cut -d' ' -f1) $*"
  if [ -s "$engine" ] && [ "$(cat "$engine.source" 2>/dev/null)" = "$want" ]; then
    echo "trtq-device: $engine is up to date"
    return 0
  fi
  claim "$name" build
  rm -rf "$engine" "$engine.source" "engines/$name.partial"
  mkdir -p "engines/$name.partial"  # the build's own folder: the engine, trtq's sidecar, temps
  built="engines/$name.partial/$name.engine"
  "$@" > "results/$name.build.log.partial" 2>&1 || fail "$name" build $?
  [ -s "$built" ] || { echo "no engine written to $built" >> "results/$name.build.log.partial"
                       fail "$name" build 1; }
  if [ -f "$built.json" ]; then  # trtq build's sidecar
    mv -f "$built.json" "results/$name.engine.json.partial"
  fi
  mv -f "$built" "$engine"
  rm -rf "engines/$name.partial"
  sha256sum "$engine" > "results/$name.engine.sha256.partial"
  wc -c < "$engine" | tr -d ' ' > "results/$name.engine.bytes.partial"
  printf '%s\n' "$want" > "$engine.source"
  publish "$name"
  rm -f "run/$name.build.pgid"
  echo "trtq-device: built $engine"
}

step_bench() {
  name="$1"; tegra="$2"; shift 3
  claim "$name" bench
  pid=""
  if [ -n "$tegra" ]; then
    "$tegra" --interval 100 --logfile "results/$name.tegrastats.log.partial" &
    pid=$!
  fi
  "$@" > "results/$name.bench.log.partial" 2>&1
  status=$?
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
  [ "$status" -eq 0 ] || fail "$name" bench "$status"
  publish "$name"
  rm -f "run/$name.bench.pgid"
  echo "trtq-device: benchmarked $name"
}

step_plugin() {
  src="$1"; out="$2"
  if [ -s "$out/liblogquant_trt.so" ] && [ "$(cat "$out/.source" 2>/dev/null)" = \
       "$(cat "$src"/* 2>/dev/null | sha256sum)" ]; then
    echo "trtq-device: plugin in $out is up to date"
    return 0
  fi
  rm -rf "$out.partial"
  status=0
  bash "$src/build_jetson.sh" "$out.partial" > results/plugin.build.log.partial 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    rm -rf "$out.partial"
    fail plugin build "$status"
  fi
  rm -rf "$out"
  mv "$out.partial" "$out"
  cat "$src"/* | sha256sum > "$out/.source"
  publish plugin
  echo "trtq-device: built the plugin in $out"
}

step_manifest() {
  (cd results && find . -maxdepth 1 -type f ! -name '*.partial' ! -name 'manifest.sha256*' \
     ! -name '.*' -exec sha256sum {} + | sed 's# \./# #' | sort -k 2) > results/manifest.sha256.partial \
    && mv -f results/manifest.sha256.partial results/manifest.sha256
}

command="${1:-}"
[ $# -gt 0 ] && shift
case "$command" in
  build) [ $# -ge 4 ] && [ "$3" = "--" ] || { echo "usage: build NAME ONNX -- COMMAND" >&2; exit 2; }
         step_build "$@" ;;
  bench) [ $# -ge 4 ] && [ "$3" = "--" ] || { echo "usage: bench NAME TEGRASTATS -- COMMAND" >&2; exit 2; }
         step_bench "$@" ;;
  plugin) [ $# -eq 2 ] || { echo "usage: plugin SRC_DIR OUT_DIR" >&2; exit 2; }
          step_plugin "$@" ;;
  manifest) step_manifest ;;
  *) echo "usage: trtq-device.sh build|bench|plugin|manifest ..." >&2; exit 2 ;;
esac
