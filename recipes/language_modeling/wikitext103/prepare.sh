#!/usr/bin/env bash
# WikiText-103 (tokenised, <unk>) -> fairseq binaries, as fairseq's examples/language_model/README.md.
#
#   WT103_SHA256=<sha256 of wikitext-103-v1.zip> bash recipes/language_modeling/wikitext103/prepare.sh
#   RDROP_DATA_DIR=/data bash ...   # reads /data/wikitext-103/wiki.{train,valid,test}.tokens instead
#
# The zip has no published sha256; WT103_SHA256 must name the one of a copy you trust (the download
# is deleted on mismatch).  Output: $WORK/bin (default work/wikitext103/bin at the repo root).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
WORK="${WORK:-$REPO/work/wikitext103}"
WORKERS="${WORKERS:-8}"
URL=https://wikitext.smerity.com/wikitext-103-v1.zip   # was s3.amazonaws.com/research.metamind.io
mkdir -p "$WORK"
[[ -f "$WORK/binarize.done" ]] && { echo "[stage] binarize: already done ($WORK/bin)"; exit 0; }

if [[ -n "${RDROP_DATA_DIR:-}" ]]; then
  TEXT="$RDROP_DATA_DIR/wikitext-103"
else
  TEXT="$WORK/wikitext-103"
  if [[ ! -f "$WORK/unzip.done" ]]; then
    : "${WT103_SHA256:?set WT103_SHA256 to the sha256 of wikitext-103-v1.zip (none is published), or RDROP_DATA_DIR}"
    PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" python - "$URL" "$WORK/wikitext-103-v1.zip" "$WT103_SHA256" <<'PY'
import sys
from recipes.common.data import download
download(*sys.argv[1:])
PY
    rm -rf "$TEXT" && unzip -q "$WORK/wikitext-103-v1.zip" -d "$WORK" && touch "$WORK/unzip.done"
  fi
fi
for split in train valid test; do
  [[ -f "$TEXT/wiki.$split.tokens" ]] || { echo "prepare.sh: $TEXT/wiki.$split.tokens is missing" >&2; exit 2; }
done

rm -rf "$WORK/bin.tmp"
fairseq-preprocess --only-source \
  --trainpref "$TEXT/wiki.train.tokens" --validpref "$TEXT/wiki.valid.tokens" \
  --testpref "$TEXT/wiki.test.tokens" --destdir "$WORK/bin.tmp" --workers "$WORKERS"
rm -rf "$WORK/bin" && mv "$WORK/bin.tmp" "$WORK/bin" && touch "$WORK/binarize.done"
