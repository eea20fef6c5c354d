# Shared by the CPU baseline-vs-R-Drop recipes (wikitext2/run.sh, scitldr/run.sh); source it.
# The caller defines `train NAME CRITERION_ARGS...` and sets WORK, REPO, PYTHON, SETTING.

# done_or_run NAME CMD...: run CMD once; a $WORK/NAME.done marker records success.
done_or_run() {
  if [[ -f "$WORK/$1.done" ]]; then echo "[stage] $1: already done"; return; fi
  echo "[stage] $1"; "${@:2}"; touch "$WORK/$1.done"
}

# train_pair BASELINE_ARRAY_NAME RDROP_ARRAY_NAME: both runs side by side (one thread each,
# same seed and settings), once: a train.done marker makes a rerun skip them.
train_pair() {
  local -n base_args=$1 rdrop_args=$2
  local start status pid_base pid_rdrop
  start=$(date +%s)
  if [[ ! -f "$WORK/train.done" ]]; then
    echo "[stage] train: baseline and R-Drop in parallel (logs: $WORK/{baseline,rdrop}/train.log)"
    train baseline "${base_args[@]}" & pid_base=$!
    train rdrop "${rdrop_args[@]}" & pid_rdrop=$!
    status=0; wait $pid_base || status=$?; wait $pid_rdrop || status=$?
    if [[ $status -ne 0 ]]; then
      echo "run.sh: training failed; see the end of $WORK/{baseline,rdrop}/train.log" >&2
      tail -5 "$WORK/baseline/train.log" "$WORK/rdrop/train.log" >&2; exit 1
    fi
    touch "$WORK/train.done"
  fi
  echo "[time] training: $(( $(date +%s) - start ))s"
}

# plot_pair SLUG TITLE ALPHA: validation curves, baseline vs R-Drop. docs/img holds the curves
# of the settings a user reports; tiny (tests) keeps its own in $WORK. PLOT overrides the path.
plot_pair() {
  local default_plot="$REPO/docs/img/$1_${SETTING}_valid.png"
  [[ "$SETTING" == tiny ]] && default_plot="$WORK/valid.png"
  PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" - "$WORK" "${PLOT:-$default_plot}" "$2 ($SETTING)" "$3" <<'PY'
import sys
from recipes.common.plot import plot_runs, read_valid_stats
work, png, title, alpha = sys.argv[1:]
curves = {"baseline": read_valid_stats(f"{work}/baseline/train.log"),
          f"R-Drop (alpha {alpha})": read_valid_stats(f"{work}/rdrop/train.log")}
print("[plot]", plot_runs(curves, png, f"{title}: validation", ("valid_loss", "valid_ppl")))
PY
}
