#!/usr/bin/env bash
# rtseg's GPU check: every GPU path in one command, its figures kept in at most 8 files.
#
#   1. rtseg doctor --json                      -> doctor-checks.json
#   2. rtseg doctor --run (short budget)        -> doctor-run.json, doctor-run.md
#   3. rtseg bench baseline1 512x1024 fp16, eager and CUDA graphs          -> bench.json
#   4. rtseg profile-ops --space ssr --input 512x1024 --backend torch --device cuda --precision fp16
#      (the whole space; resumable)             -> lut-ssr-torch-fp16-512x1024.json
#   5. rtseg lut validate --samples 30 when the LUT is complete            -> validate.json
#   every step's output and wall time           -> log.txt, summary.txt
#
# The GPU machine has Python 3.12 with torch (CUDA), onnx, onnxruntime, opencv headless, typer
# and rich, and no package registry. fvcore and onnxslim (and what they import that torch and onnx
# do not bring) travel as wheels in .whl/ (git-ignored). Make them once on a machine with PyPI,
# from the repository root:
#
#   rm -rf .whl && mkdir .whl
#   pip download --python-version 3.12 --implementation cp --only-binary=:all: --no-deps \
#       --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
#       -d .whl/ onnxslim iopath portalocker tabulate termcolor tqdm colorama ml_dtypes packaging sympy mpmath \
#       typing_extensions pyyaml yacs pillow
#   pip wheel --no-deps -w .whl/ fvcore==0.1.5.post20221221   # fvcore ships only an sdist; its wheel is pure Python
#
# (about 20 MB). Then one device call, from the repository root, carrying the wheels:
#
#   run(command="bash search/gpu_check.sh", carry=[".whl"], timeout_s=600)
#
# Everything is written to $OUT (the device tool's output folder; rtseg-out/gpu-check elsewhere).
# A step that fails is logged and the next one runs. The whole command keeps to $BUDGET_S seconds
# (default 560): profile-ops gets what is left and, when stopped, keeps what it measured. To finish
# it in a second call, copy the returned lut-*.json to rtseg-out/gpu-check/ here and carry that
# folder too: run(command="bash search/gpu_check.sh", carry=[".whl", "rtseg-out/gpu-check"], ...);
# the LUT resumes and steps 1-3 are skipped when their files came back with it (SKIP_DONE=1).
set -u -o pipefail
START=$(date +%s)
BUDGET_S=${BUDGET_S:-560}
OUT=${OUT:-rtseg-out/gpu-check}
PREV=${PREV:-rtseg-out/gpu-check}
PY=${PY:-python3}
SKIP_DONE=${SKIP_DONE:-1}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
SUMMARY="$OUT/summary.txt"
SCRATCH=$(mktemp -d /tmp/rtseg-gpu-check.XXXXXX)
LUT="$OUT/lut-ssr-torch-fp16-512x1024.json"
export PYTHONUNBUFFERED=1

left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }
say() { echo "$*" | tee -a "$LOG" "$SUMMARY"; }
rtseg() { "$PY" -c 'import sys; sys.argv[0] = "rtseg"; from rtseg.cli import main; main()' "$@"; }
export -f rtseg
export PY

# step NAME SECONDS 'SHELL COMMAND': run it under a timeout (SIGTERM first: profile-ops then keeps
# what it measured), log its output and wall time; a failure never stops the script
step() {
    local name=$1 limit=$2 cmd=$3
    local budget; budget=$(left)
    if [ "$budget" -le 20 ]; then say "[$name] skipped: the budget is spent"; return 1; fi
    if [ "$limit" -gt "$budget" ]; then limit=$budget; fi
    echo "=== [$name] $cmd (limit ${limit}s)" >>"$LOG"
    local t0=$SECONDS rc
    timeout --signal=TERM --kill-after=15 "$limit" bash -c "$cmd" 2>>"$LOG"
    rc=$?
    say "[$name] rc=$rc in $((SECONDS - t0)) s$([ $rc -eq 124 ] && echo ' (stopped at its time limit)')"
    return $rc
}

: >"$SUMMARY"
say "rtseg GPU check, $(date -u +%FT%TZ), budget ${BUDGET_S}s, output in $OUT"
{ uname -m; "$PY" --version; nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader 2>&1; } | tee -a "$LOG" "$SUMMARY"

# -- the wheels: install only what does not import already, beside the tree (no system change) ----
export PYTHONPATH="$PWD:$PWD/.pydeps${PYTHONPATH:+:$PYTHONPATH}"
need=()
for pair in fvcore:fvcore iopath:iopath portalocker:portalocker tabulate:tabulate termcolor:termcolor tqdm:tqdm \
            onnxslim:onnxslim colorama:colorama ml_dtypes:ml_dtypes packaging:packaging sympy:sympy mpmath:mpmath \
            typing_extensions:typing_extensions yaml:pyyaml yacs:yacs PIL:pillow; do
    "$PY" -c "import ${pair%%:*}" 2>/dev/null || need+=("${pair##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    if [ -d .whl ]; then
        say "installing from .whl/: ${need[*]}"
        if ! "$PY" -m pip install --no-index --find-links .whl --target .pydeps --no-deps --quiet "${need[@]}" >>"$LOG" 2>&1; then
            # no pip: a wheel is a zip of its packages
            mkdir -p .pydeps
            for pkg in "${need[@]}"; do
                w=$(ls .whl/ 2>/dev/null | grep -i "^${pkg//-/_}-" | head -1)
                [ -n "$w" ] && "$PY" -m zipfile -e ".whl/$w" .pydeps >>"$LOG" 2>&1
            done
        fi
    else
        say "missing and no .whl/ to install from: ${need[*]} (see the top of this script)"
    fi
fi

# -- resume what a previous call returned --------------------------------------------------------
for f in doctor-checks.json doctor-run.json doctor-run.md bench.json lut-ssr-torch-fp16-512x1024.json; do
    if [ -f "$PREV/$f" ] && [ "$PREV" != "$OUT" ]; then cp "$PREV/$f" "$OUT/$f"; say "resumed $f from $PREV"; fi
done
done_before() { [ "$SKIP_DONE" = 1 ] && [ -s "$OUT/$1" ]; }

# 1. what the machine can do
done_before doctor-checks.json || step "doctor" 60 "rtseg doctor --json >'$OUT/doctor-checks.json'"

# 2. every path end to end, on a short budget (8 minutes is what it is sized for; 2.5 here)
if ! done_before doctor-run.json; then
    step "doctor --run" 240 "rtseg doctor --run --minutes 2.5 --out '$SCRATCH/doctor' >>'$LOG'"
    [ -f "$SCRATCH/doctor/doctor.json" ] && cp "$SCRATCH/doctor/doctor.json" "$OUT/doctor-run.json"
    [ -f "$SCRATCH/doctor/doctor.md" ] && cp "$SCRATCH/doctor/doctor.md" "$OUT/doctor-run.md" && sed -n '/^## Steps/,$p' "$SCRATCH/doctor/doctor.md" | grep '^| ' >>"$SUMMARY"
fi

# 3. baseline1 at 512x1024, fp16, batch 1: eager and CUDA graphs
if ! done_before bench.json; then
    common="baseline1 --backend torch --input 512x1024 --device cuda --precision fp16 --warmup 50 --iters 500 --json"
    step "bench eager" 90 "rtseg bench $common >'$SCRATCH/eager.json'"
    step "bench CUDA graphs" 90 "rtseg bench $common --cuda-graphs >'$SCRATCH/graphs.json'"
    "$PY" - "$SCRATCH/eager.json" "$SCRATCH/graphs.json" "$OUT/bench.json" <<'EOF' 2>>"$LOG" | tee -a "$SUMMARY"
import json, sys
rows, out = [], {}
for name, path in (("eager", sys.argv[1]), ("cuda_graphs", sys.argv[2])):
    try:
        d = json.load(open(path))
    except Exception as exc:
        out[name] = {"error": str(exc)}
        continue
    out[name] = d
    for r in d.get("results", []):
        print(f"bench {name}: median {r['median_ms']:.4f} ms, p90 {r['p90_ms']:.4f} ms, {r['fps']:.0f} FPS on {r['device']}")
json.dump(out, open(sys.argv[3], "w"), indent=2)
EOF
fi

# 4. the whole ssr space at 512x1024 (resumes a LUT that came back from an earlier call)
step "profile-ops" $(( $(left) - 75 )) \
    "rtseg profile-ops --space ssr --input 512x1024 --backend torch --device cuda --precision fp16 --out '$LUT' >>'$LOG'"
"$PY" - "$LUT" <<'EOF' 2>>"$LOG" | tee -a "$SUMMARY"
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as exc:
    print(f"profile-ops: no LUT ({exc})"); sys.exit()
p = d.get("provenance", {})
print(f"profile-ops: {len(d.get('entries', {}))} of {d.get('expected_entries')} entries, complete={d.get('complete')}, "
      f"profiling_s={p.get('profiling_s')} over {p.get('runs')} run(s), calibration={'calibration' in d}, device={p.get('device', {}).get('name')}")
EOF

# 5. is the LUT predictive (goal: MAPE <= 5%, Kendall tau >= 0.9)?
if "$PY" -c "import json,sys; sys.exit(0 if json.load(open('$LUT')).get('complete') else 1)" 2>/dev/null; then
    step "lut validate" 120 "rtseg lut validate '$LUT' --samples 30 --json >'$OUT/validate.json'"
    "$PY" -c "
import json; d = json.load(open('$OUT/validate.json'))
print(f\"lut validate: {d['samples']} archs, MAPE {100 * d['mape']:.2f}%, within 10% {100 * d['within_10pct']:.0f}%, Kendall tau {d['kendall_tau']:.3f}\")
" 2>>"$LOG" | tee -a "$SUMMARY"
else
    say "[lut validate] not run: the LUT is not complete yet (run this script again with the LUT carried, see the top)"
fi

say "total $(( $(date +%s) - START )) s"
rm -rf "$SCRATCH"
