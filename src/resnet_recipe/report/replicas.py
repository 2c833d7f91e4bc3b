"""Replicas: runs that differ only in their seed, their spread, whether two families of
them differ by more than that spread explains, and when a run reached a target accuracy.

    families(reports)            [(family name, [reports])], replicas together
    spread(values)               n, mean, sd, min, max
    difference_test(a, b)        Welch's t-test of two families' top-1, or why none
    reference_in_spread(v, ref)  whether a reference top-1 lies within the measured range
    time_to_target(runs, t)      first epoch (and its wall time) at validation top-1 >= t

A family is what the workflow's `seeds` make of a run: the runs NAME.seed1, NAME.seed2,
... whose settings (report.json: training, network and input settings) are the same but
for the seed. Any other run is a family of one; two runs of other names are never taken for
replicas, even with the same settings (a sweep point may repeat a run, seed and all: two
copies of one experiment are no spread).

The test of two families is Welch's t-test (two-sided, unequal variances): the difference
of the mean top-1 over its standard error from both families' sample variances, against
Student's t with the Welch-Satterthwaite degrees of freedom. With few seeds it rests on the
seeds' top-1 being roughly normal (a sum of many small random effects: initialisation, data
order, augmentation), which 3 to 5 seeds cannot check. A permutation test needs no such
assumption, but with 3 seeds against 3 it has 20 arrangements, so its smallest two-sided p
is 0.1 and it could never call any difference real at 0.05. With one seed on either side
there is no spread to compare with: no judgement.

This module imports neither MXNet, DALI nor pandas: `resnet-recipe compare` uses it.
"""

import math
import re

from scipy.special import stdtr

from resnet_recipe.report.flat_settings import run_settings

# The level below which the test calls a difference real.
SIGNIFICANCE = 0.05
# A replica's name: the family's and its seed.
REPLICA_NAME = re.compile(r"^(?P<family>.+)\.seed\d+$")
# How far a reference may lie from the measured range and still be in it: the measured
# top-1 is a fraction times 100, whose last bits may differ from the reference's text.
TOLERANCE = 1e-9
# Settings a replica may differ in from the others of its family.
REPLICA_SETTINGS = ("seed", "seeds")


def family_of(run):
    """The family a run's name says: NAME for NAME.seedN, else the name itself."""
    match = REPLICA_NAME.match(run)
    return match.group("family") if match else run


def replica_key(report):
    """What the replicas of one family share: its name, and their settings but the seed
    (as text)."""
    settings = run_settings(report)
    shared = sorted((k, v) for k, v in settings.items() if k not in REPLICA_SETTINGS)
    return repr((family_of(report["run"]), shared))


def seed_of(report):
    return report.get("settings", {}).get("seed")


def families(reports):
    """[(family name, [reports by seed])] of training reports, in the order each family's
    first report comes."""
    groups = {}
    for report in reports:
        groups.setdefault(replica_key(report), []).append(report)
    named = []
    for members in groups.values():
        members = sorted(members, key=lambda report: (str(seed_of(report)), report["run"]))
        named.append((family_of(members[0]["run"]), members))
    return named


def spread(values):
    """{n, mean, sd, min, max} of the numbers in `values` (None left out); sd is the sample
    standard deviation (n - 1), None below two values; all None for no value."""
    values = [float(value) for value in values if value is not None and not math.isnan(value)]
    if not values:
        return {"n": 0, "mean": None, "sd": None, "min": None, "max": None}
    mean = sum(values) / len(values)
    sd = None
    if len(values) > 1:
        sd = math.sqrt(sum((value - mean) ** 2 for value in values) / (len(values) - 1))
    return {"n": len(values), "mean": mean, "sd": sd, "min": min(values), "max": max(values)}


def spread_text(stats, digits):
    """'76.12 ± 0.08 (76.03 to 76.21)', or the one value of a family of one seed."""
    if stats["n"] == 0:
        return ""
    number = f"{{:.{digits}g}}" if digits > 2 else f"{{:.{digits}f}}"
    if stats["n"] == 1:
        return number.format(stats["mean"])
    mean, sd, low, high = (number.format(stats[key]) for key in ("mean", "sd", "min", "max"))
    return f"{mean} ± {sd} ({low} to {high})"


def welch(a, b):
    """(t, degrees of freedom, two-sided p) of Welch's t-test of samples a and b (two values
    each at least). Both without spread: p 0 when the means differ, 1 when not."""
    sa, sb = spread(a), spread(b)
    var_a, var_b = sa["sd"] ** 2 / sa["n"], sb["sd"] ** 2 / sb["n"]
    difference = sa["mean"] - sb["mean"]
    if var_a + var_b == 0:
        # No spread on either side: any difference is beyond it.
        return (
            math.copysign(math.inf, difference) if difference else 0.0,
            math.nan,
            float(difference == 0),
        )
    t = difference / math.sqrt(var_a + var_b)
    df = (var_a + var_b) ** 2 / (var_a**2 / (sa["n"] - 1) + var_b**2 / (sb["n"] - 1))
    return t, df, float(2.0 * stdtr(df, -abs(t)))


def difference_test(a, b, what="top-1"):
    """Whether two families' values (a, b: top-1 per seed, percent) differ by more than
    their seed spread explains: {verdict: "differ", "no difference shown" or "no
    judgement", sentence, difference, t, df, p}."""
    sa, sb = spread(a), spread(b)
    result = {"difference": None, "t": None, "df": None, "p": None}
    if sa["n"] < 2 or sb["n"] < 2:
        fewest = min(sa["n"], sb["n"])
        sentence = (
            f"no judgement: {fewest} seed{'s' if fewest != 1 else ''} on one side; the seed"
            f" spread of {what} needs at least 2 seeds on each"
        )
        return {**result, "verdict": "no judgement", "sentence": sentence}
    t, df, p = welch(a, b)
    result.update(difference=sa["mean"] - sb["mean"], t=t, df=df, p=p)
    caveat = f"Welch's t-test, {sa['n']} vs {sb['n']} seeds, p = {p:.3g}"
    if sa["n"] < 5 or sb["n"] < 5:
        caveat += "; with under 5 seeds a side it assumes the seeds' spread is normal"
    if p < SIGNIFICANCE:
        verdict = "differ"
        sentence = (
            f"{what} differs by {result['difference']:+.2f} points, more than the seed"
            f" spread explains ({caveat})"
        )
    else:
        verdict = "no difference shown"
        sentence = (
            f"{what} differs by {result['difference']:+.2f} points, within what the seed"
            f" spread explains ({caveat})"
        )
    return {**result, "verdict": verdict, "sentence": sentence}


def reference_in_spread(values, reference):
    """A sentence on where the reference top-1 lies against the measured top-1 per seed:
    within their range or outside it (and how many standard deviations from the mean)."""
    stats = spread(values)
    if stats["n"] == 0 or reference is None or math.isnan(reference):
        return ""
    where = (
        "within" if stats["min"] - TOLERANCE <= reference <= stats["max"] + TOLERANCE else "outside"
    ) + f" the measured range {stats['min']:.2f} to {stats['max']:.2f}"
    if stats["n"] < 2:
        return f"reference {reference:.2f} lies {where} (one seed: no spread to judge by)"
    if stats["sd"]:
        where += f", {(reference - stats['mean']) / stats['sd']:+.1f} sd from the mean"
    return f"reference {reference:.2f} lies {where} of {stats['n']} seeds"


def time_to_target(epoch_lists, target_percent):
    """(epoch, hours) at which the mean validation top-1 of runs (metrics.jsonl lines of
    each: one run, or a family's replicas at the epochs all of them have) first reached
    target_percent; the hours are the mean over the runs of their training wall time to
    the end of that epoch (None for metrics without epoch_seconds). (None, None) when no
    epoch reached it."""
    by_epoch = [{line["epoch"]: line for line in epochs} for epochs in epoch_lists]
    common = sorted(set.intersection(*(set(lines) for lines in by_epoch))) if by_epoch else []
    for epoch in common:
        mean = sum(lines[epoch]["val_top1"] for lines in by_epoch) / len(by_epoch)
        if 100.0 * mean >= target_percent:
            hours = [time_to_epoch(lines, epoch) for lines in by_epoch]
            return epoch, (None if None in hours else sum(hours) / len(hours))
    return None, None


def time_to_epoch(lines_by_epoch, epoch):
    """Hours of training to the end of `epoch`, None without epoch_seconds."""
    seconds = [lines_by_epoch[e].get("epoch_seconds") for e in lines_by_epoch if e <= epoch]
    return None if None in seconds else sum(seconds) / 3600.0
