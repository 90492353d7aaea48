"""Speed of the offline CheXpert-style labeler (clinical_bert.labeler) on the real IU X-Ray reports.

Usage: python benchmarks/bench_labeler.py [--repeat 3]

Labels the 3,955 OpenI IU X-Ray reports (findings + impression, from torchxrayvision's
NLMCXR_reports.tgz; the few with neither section count as blank rows) on one core and prints
reports per second (target >= 500; the original Java/Python labeler does one or two a second).
As a baseline measured in the same run it also times the stage every labeler needs before any
rule runs: normalising and sentence-splitting the same reports; the ratio says how much of the
time goes to mention extraction and the scope engine. The best of --repeat runs is reported.
"""
import argparse
import time

from clinical_bert.labeler import default_phrases, label_reports, normalize, sentences
from clinical_bert.text import iu_report, read_openi_reports


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs; the fastest is reported")
    a = ap.parse_args(argv)
    df = read_openi_reports()
    reports = [iu_report(r) for _, r in df.iterrows()]
    default_phrases()  # compile the phrase lists once, outside the timing (as a long run does)
    t_label = best_of(lambda: label_reports(reports), a.repeat)
    t_split = best_of(lambda: [sentences(normalize(r)) for r in reports], a.repeat)
    n = len(reports)
    print(f"{n} IU X-Ray reports, best of {a.repeat}")
    print(f"normalise + split only : {t_split:6.2f} s  {n / t_split:8.0f} reports/s")
    print(f"label_reports          : {t_label:6.2f} s  {n / t_label:8.0f} reports/s  (target >= 500)")
    print(f"labelling costs {t_label / t_split:.1f}x the text normalisation alone")


if __name__ == "__main__":
    main()
