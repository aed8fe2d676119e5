#!/usr/bin/env bash
# Growth curve of the topology engine, and what syntax costs: for each size and each style of
# writing the prefix and binding tables (simple, inline, dotted, subtables, quoted, one-file; see
# SynthStyle in harness/src/synth.rs), one process (so peak RSS is its own) generates the
# synthetic topology, and measures a baseline TOML parse of the same files, the full compile
# (read, validate, tries, every location's desired set), its peak RSS (VmHWM), the parse alone,
# the plan of a change touching 1% of the bindings, and a customer file's toggle compiled
# against the running generation in full and incrementally. Prints one JSON line per run, then per
# size a table of each style's compile time, parse time and peak RSS (medians over the runs) as
# ratios to the simple style measured in the same run. With --runs N the styles are run N times
# in turn (simple, inline, ..., simple, inline, ...), so a load that comes and goes hits each.
#
#   bash harness/benches/topology_scale.sh [--runs N] [--styles "simple inline ..."] [BINDINGS ...]
#
# Defaults: 1 run, every style, 300000 and 1000000 bindings.
set -euo pipefail
cd "$(dirname "$0")/../.."
styles="simple inline dotted subtables quoted one-file"
runs=1
while [ $# -gt 0 ]; do
  case "$1" in
    --styles) styles="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    *) break ;;
  esac
done
sizes="${*:-300000 1000000}"
case " $styles " in
  *" simple "*) ;;
  *) styles="simple $styles" ;;  # the baseline of the ratios
esac
cargo build --release --locked -p topologyd-harness --bin topology_scale
results="$(mktemp)"
trap 'rm -f "$results"' EXIT
for size in $sizes; do
  for _ in $(seq "$runs"); do
    for style in $styles; do
      ./target/release/topology_scale --style "$style" "$size" | tee -a "$results"
    done
  done
done
python3 - "$results" <<'EOF'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
for size in dict.fromkeys(run["bindings"] for run in runs):
    medians = {}
    for style in dict.fromkeys(run["style"] for run in runs):
        same = [run for run in runs if run["bindings"] == size and run["style"] == style]
        medians[style] = {key: statistics.median(run[key] for run in same)
                          for key in ("input_mib", "compile_s", "parse_s", "peak_rss_after_compile_mib",
                                      "toggle_full_s", "toggle_incremental_s")}
        medians[style]["runs"] = len(same)
    base = medians["simple"]
    print(f"\n{size} bindings, medians: each style against the simple style of this run")
    print(f"{'style':<10} {'runs':>4} {'input MiB':>9} {'compile s':>9} {'x simple':>8} "
          f"{'parse s':>8} {'x simple':>8} {'peak MiB':>8} {'x simple':>8}")
    for style, m in medians.items():
        print(f"{style:<10} {m['runs']:>4} {m['input_mib']:>9.1f} {m['compile_s']:>9.3f} "
              f"{m['compile_s'] / base['compile_s']:>8.2f} {m['parse_s']:>8.3f} "
              f"{m['parse_s'] / base['parse_s']:>8.2f} {m['peak_rss_after_compile_mib']:>8.0f} "
              f"{m['peak_rss_after_compile_mib'] / base['peak_rss_after_compile_mib']:>8.2f}")
    print("a customer file's toggle compiled against the running generation, same run: "
          "incremental against full")
    for style, m in medians.items():
        print(f"{style:<10} full {m['toggle_full_s']:.3f} s, incremental "
              f"{m['toggle_incremental_s']:.3f} s "
              f"({m['toggle_incremental_s'] / m['toggle_full_s']:.2f}x)")
EOF
