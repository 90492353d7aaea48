"""Speed of `clinical-bert score` on 3,000 report pairs, and of the labeler on one very long sentence.

Usage: python benchmarks/bench_score.py [--pairs 3000] [--no-baseline] [--long-words 100000]

Pairs: the IU X-Ray reports (torchxrayvision's OpenI archive, findings + impression), each
scored against the next one, repeated to --pairs. Times `clinical_bert.score.main` end to end
(reading the CSV, the PTB tokenizer, METEOR in one Java process started inside the timing,
BLEU / ROUGE-L / CIDEr, labelling both sides, 1,000 bootstrap resamples, writing JSON and
markdown); target: under 60 s on 2 cores. Baseline, measured in the same run: the plain scores
without intervals (`metrics.nlg_scores` + `metrics.ce_scores`, METEOR already started), so the
ratio is the cost of the intervals and the command around them.

Table intervals (`--table-rows`, 0 skips): a report-generation table of that many rows on the
same pairs (each row's generated reports shifted by one more report): `metrics.report_stats` per row
(PTB tokenizer, BLEU / ROUGE-L / CIDEr statistics, labels; METEOR left out), then what a table of
the experiment notebooks does: 1,000-resample intervals of every score of every row and a paired
bootstrap of each row against the first on every score; target for the intervals: under 10 s.

Long sentence: `labeler.label_report` on one sentence of --long-words words and of a tenth of
that; the ratio of the two times is about 10 when the labeler is linear in the sentence length
(it was about 100 when it looked at every trigger of the sentence for every mention).
"""
import argparse
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

from clinical_bert import labeler, metrics, score
from clinical_bert.text import iu_report, read_openi_reports

LONG_UNIT = "there is no pleural effusion or pneumothorax and there is mild cardiomegaly with basilar atelectasis"


def pairs(n: int) -> pd.DataFrame:
    df = read_openi_reports()
    reports = [r for r in (iu_report(x) for _, x in df.iterrows()) if r.strip()]
    refs = [reports[i % len(reports)] for i in range(n)]
    hyps = [reports[(i + 1) % len(reports)] for i in range(n)]
    return pd.DataFrame({"id": [f"s{i}" for i in range(n)], "reference": refs, "generated": hyps})


def long_sentence(n_words: int) -> str:
    w = LONG_UNIT.split()
    return " ".join(w[i % len(w)] for i in range(n_words)) + "."


def table_intervals(df: pd.DataFrame, rows: int) -> None:
    "Time per-row statistics and a whole table's intervals and paired comparisons."
    refs, hyps = df["reference"].tolist(), df["generated"].tolist()
    t0 = time.perf_counter()
    stats = [metrics.report_stats(refs, hyps[r:] + hyps[:r]) for r in range(rows)]
    t_stats = time.perf_counter() - t0
    t0 = time.perf_counter()
    cis = [metrics.bootstrap_ci(s.x, s.statistic) for s in stats]
    t_ci = time.perf_counter() - t0
    keys = list(cis[0])
    n_pairs = 0
    for s in stats[1:]:
        n_pairs += len(metrics.paired_bootstrap(s.x, stats[0].x, s.statistic))  # every score from one set of resamples
    t_boot = time.perf_counter() - t0
    print(f"table of {rows} rows x {len(df)} pairs: per-report statistics {t_stats:6.1f} s ({t_stats / rows:.1f} s a row); "
          f"intervals of {len(keys)} scores per row {t_ci:5.2f} s, + {n_pairs} paired bootstraps (each row against the first, every score): "
          f"{t_boot:6.1f} s in all (target < 10 s)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3000)
    ap.add_argument("--no-baseline", action="store_true", help="skip the plain-scores baseline")
    ap.add_argument("--long-words", type=int, default=100_000, help="words in the long sentence (0 skips it)")
    ap.add_argument("--table-rows", type=int, default=3, help="rows of the interval table (0 skips it)")
    ap.add_argument("--only-table", action="store_true", help="time the table intervals only")
    a = ap.parse_args(argv)
    labeler.default_phrases()
    if a.table_rows:
        table_intervals(pairs(a.pairs), a.table_rows)
    if a.only_table:
        return
    if a.long_words:
        t = {}
        for n in (a.long_words // 10, a.long_words):
            text = long_sentence(n)
            t0 = time.perf_counter(); labeler.label_report(text); t[n] = time.perf_counter() - t0
        small, big = t[a.long_words // 10], t[a.long_words]
        print(f"labeler, one sentence of {a.long_words // 10:,} words: {small:6.2f} s; of {a.long_words:,} words: "
              f"{big:6.2f} s; ratio {big / small:.1f} (linear: about 10)")
    df = pairs(a.pairs)
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "pairs.csv"
        df.to_csv(src, index=False)
        metrics.close_meteor()  # the command starts METEOR inside the timing, as a user's first run does
        t0 = time.perf_counter()
        score.main([str(src), "--out", str(Path(d) / "scores")])
        t_score = time.perf_counter() - t0
        print((Path(d) / "scores.md").read_text().split("\n\n")[2])
    print(f"clinical-bert score, {a.pairs} pairs with METEOR and 1,000 resamples: {t_score:6.1f} s (target < 60 s)")
    if not a.no_baseline:
        refs, hyps = df["reference"].tolist(), df["generated"].tolist()
        metrics.meteor_scorer()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            metrics.nlg_scores(refs, hyps); metrics.ce_scores(refs, hyps)
            t_plain = time.perf_counter() - t0
        print(f"plain nlg_scores + ce_scores (METEOR warm, no intervals): {t_plain:6.1f} s; "
              f"score / plain = {t_score / t_plain:.2f}")


if __name__ == "__main__":
    main()
