"""Options the Python recipes, benchmarks and tests pass to fairseq's command-line tools, each with
its reason said once here (``fairseq_flags.sh`` holds the same for the shell recipes)."""

# fairseq-fixed 0.12.3.1's batch_by_size drops a last batch smaller than
# --required-batch-size-multiple (default 8): fairseq-generate silently skips the last (n mod 8)
# test sentences (checked: 12 sentences give 8 hypotheses), and every epoch a few training and
# validation sentences. With 1 every sentence is kept (fairseq 0.12.2 keeps them anyway;
# docs/compatibility.md has the command that shows the difference).
KEEP_LAST_BATCH = ("--required-batch-size-multiple", "1")
