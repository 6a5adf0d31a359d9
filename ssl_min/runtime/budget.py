"""A time budget for pretraining: how many steps fit in M minutes on this machine, measured.

The cpu preset promises the best encoder a 2-core CPU learns in 20 minutes, and the CPUs this
project runs on differ about 3x in speed (2 AVX2 cores in fp32 against 2 AVX512-BF16 cores in
bf16). A fixed max_steps either wastes the fast machine's minutes or overruns on the slow one, so
with `--max_minutes M`:

  1. the clock starts with the command: decoding the cache counts against the budget;
  2. after PROBE_STEPS steps (the warm-up's learning rate does not depend on the total), the mean
     wall-clock time of the steps since step SKIP_STEPS (data waits and checkpoints included) gives
         max_steps = step + floor(MARGIN * (M * 60 - elapsed) / seconds_per_step),
     capped by --max_steps when that is given; the cosine schedule then ends at max_steps;
  3. config.json and every checkpoint hold the max_steps chosen, so the schedule is written down
     and `--resume` continues it (the budget is not measured again; rerunning with that
     --max_steps and no budget gives the same run);
  4. if the machine slows down so much that the clock runs out anyway, training stops at the
     budget with a checkpoint and says so (the schedule had not reached its end).

    budget = TimeBudget(minutes, start=time.time(), cap=max_steps)
    budget.tick(step)          after every step; -> the planned max_steps at PROBE_STEPS, else None
    budget.expired()           True once the clock has passed the budget
"""
import math
import time

PROBE_STEPS, SKIP_STEPS, MARGIN = 50, 10, 0.92


class TimeBudget:
    def __init__(self, minutes: float, start: float, cap: int = 0, clock=time.time):
        if minutes <= 0:
            raise ValueError(f"a time budget must be > 0 minutes, got {minutes}")
        self.seconds, self.start, self.cap, self.clock = 60 * minutes, start, cap, clock
        self.planned, self.seconds_per_step, self.spent, self._t_skip, self._first = None, None, None, None, None

    def tick(self, step: int):
        """Called after each optimizer step with the steps done so far (counted from this start,
        which may be a resume's). -> max_steps once, at the probe's end; None otherwise."""
        if self.planned is not None:
            return None
        now = self.clock()
        if self._first is None:
            self._first = step - 1                     # the step this process started from
        done = step - self._first
        if done == SKIP_STEPS:
            self._t_skip = now
        if done < PROBE_STEPS:
            return None
        self.seconds_per_step = (now - self._t_skip) / (PROBE_STEPS - SKIP_STEPS)
        self.spent = now - self.start
        left = self.seconds - self.spent
        fit = step + max(0, math.floor(MARGIN * left / self.seconds_per_step))
        self.planned = min(fit, self.cap) if self.cap else fit
        return self.planned

    def expired(self) -> bool:
        return self.clock() - self.start >= self.seconds

    def report(self, step: int) -> str:
        """The plan made at `step`, in one line (the log's)."""
        return (f"time budget {self.seconds / 60:g} min: {self.spent / 60:.1f} min spent by step {step} (cache "
                f"included), {self.seconds_per_step:.3f} s/step measured over steps {step - PROBE_STEPS + SKIP_STEPS}"
                f"..{step} -> max_steps {self.planned}" + (f" (capped by --max_steps {self.cap})"
                                                           if self.cap and self.planned == self.cap else ""))
