"""One readable line per epoch from fairseq's JSON log, for recipes that run fairseq-train.

fairseq-train with ``--log-format json`` prints, per epoch, a ``| train |`` summary line and a
``| valid |`` line (plus, every few updates, ``train_inner`` lines). The recipes keep all of that
in each run's log file and show a person only

    [rdrop s1] epoch 12/200 | train 4.123 | valid 4.567 (best 4.550, epoch 10) | valid bleu 35.21 |
               41m12s, 3.4 min/epoch, <= 11h left (stops after 5 epochs without improvement: 2 so far)

where the time left is an estimate from this process's epochs (an upper bound when --patience
may end the run sooner). "best" follows the metric fairseq keeps checkpoint_best.pt by and counts
--patience with (``--best-checkpoint-metric``, default loss): for another metric the line shows it
beside the loss, e.g. ``valid 0.985 | valid mcc 31.20 (best 34.90, epoch 3)``.
"""
import json
import time


def _json_payload(line, marker):
    if marker not in line:
        return None
    start = line.find("{")
    if start < 0:
        return None
    try:
        return json.loads(line[start:])
    except json.JSONDecodeError:
        return None


def format_duration(seconds):
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s"


class EpochProgress:
    """Feed it fairseq's output lines; it returns a progress line after each validation."""

    def __init__(self, max_epoch=None, patience=0, clock=time.monotonic, metric="loss", maximize=False):
        self.max_epoch, self.patience, self.clock = max_epoch, patience, clock
        self.metric, self.maximize = metric, maximize  # fairseq's --best-checkpoint-metric, --maximize-...
        self.start = clock()
        self.first_epoch = None  # the first epoch this process trained (a resumed run starts later)
        self.valid = None  # the validation line of the epoch whose summary comes next
        self.best = None  # (the metric's best value, epoch)
        self.since_best = 0

    def replay(self, lines):
        """Take in an earlier attempt's log (a resumed run): the best epoch so far and the count
        without improvement carry on; the timing counts this process's epochs only."""
        for line in lines:
            self.feed(line)
        self.first_epoch, self.start = None, self.clock()

    def feed(self, line):
        """The progress line once an epoch's summary is in, else None. fairseq logs an epoch's
        validation first, then its ``| train |`` summary: the line comes with the latter."""
        valid = _json_payload(line, "| valid |")
        if valid is not None and "valid_loss" in valid:
            value = self._metric(valid)
            # strictly better, as fairseq's --patience counts
            if self.best is None or (value > self.best[0] if self.maximize else value < self.best[0]):
                self.best, self.since_best = (value, int(valid["epoch"])), 0
            else:
                self.since_best += 1
            self.valid = valid
            return None
        train = _json_payload(line, "| train |")
        if train is None or "train_loss" not in train:
            return None
        epoch = int(train["epoch"])
        if self.first_epoch is None:
            self.first_epoch = epoch
        valid = self.valid if self.valid is not None and int(self.valid["epoch"]) == epoch else None
        self.valid = None
        return self._line(epoch, float(train["train_loss"]), valid)

    def _metric(self, valid):
        """The validation line's value of the checkpoint metric (nan where fairseq did not log it)."""
        return float(valid.get(f"valid_{self.metric}", "nan"))

    def _line(self, epoch, train_loss, valid):
        of = f"/{self.max_epoch}" if self.max_epoch else ""
        parts = [f"epoch {epoch}{of}", f"train {train_loss:.3f}"]
        if valid is not None:
            if self.metric == "loss":
                parts.append(f"valid {float(valid['valid_loss']):.3f} (best {self.best[0]:.3f}, epoch {self.best[1]})")
            else:
                parts.append(f"valid {float(valid['valid_loss']):.3f}")
                parts.append(f"valid {self.metric} {self._metric(valid):.2f} "
                             f"(best {self.best[0]:.2f}, epoch {self.best[1]})")
            if "valid_bleu" in valid:
                parts.append(f"valid bleu {float(valid['valid_bleu']):.2f}")
        elapsed = self.clock() - self.start
        per_epoch = elapsed / (epoch - self.first_epoch + 1)
        timing = f"{format_duration(elapsed)}, {per_epoch / 60:.1f} min/epoch"
        if self.max_epoch:
            left = per_epoch * (self.max_epoch - epoch)
            timing += f", {'<= ' if self.patience else '~'}{format_duration(left)} left"
        if self.patience:
            timing += (f" (stops after {self.patience} epochs without improvement: "
                       f"{self.since_best} so far)")
        parts.append(timing)
        return " | ".join(parts)
