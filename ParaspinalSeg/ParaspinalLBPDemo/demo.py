"""The digital-twin trial end to end, the way the trial's teams would run it (``make demo``,
``paraspinal-lbp-demo``, ``python -m ParaspinalLBPDemo``).

simulate the trial with an imaging cohort (phantom MRI, also as DICOM studies) → randomise the cohort
through the central randomisation service → segment every DICOM study from the seeds the simulator
placed (one click per muscle per level, as a user would; ``paraspinal-seg batch``: DICOM SEGs, QC page)
→ measurement table → radiomics batch →
model training + report + bundle → calculator command → trial analysis report → index.html.

Every step is the module's own command line run as a subprocess (modules exchange files, never
each other's internals), so this is also a worked example of the batch interfaces. Steps whose
outputs already exist are skipped, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import html
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

SMALL = {"n": 314, "with_mri": 40, "imputations": 5}
FULL = {"n": 314, "with_mri": 314, "imputations": 20}


class StepFailedError(RuntimeError):
    """A module's command line failed; the message carries the command and the tail of its log."""


def _run(args: Sequence[str], log: Path) -> None:
    """Run ``python -m <args>``; on failure raise with the tail of its log (kept in ``log``)."""
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"$ python -m {' '.join(map(str, args))}\n")
        fh.flush()
        proc = subprocess.run([sys.executable, "-m", *map(str, args)], stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(encoding="utf-8").splitlines()[-15:])
        raise StepFailedError(f"step failed: python -m {' '.join(map(str, args))}\n{tail}\n(full log: {log})")


class Demo:
    """One demo run in ``out``; ``steps`` records what ran and how long it took."""

    def __init__(
        self, out: Path, n: int, with_mri: int, imputations: int, seed: int, quick_model: bool
    ) -> None:
        self.out, self.n, self.k, self.imputations, self.seed = out, n, with_mri, imputations, seed
        self.quick_model = quick_model
        self.trial = out / "trial"
        self.log = out / "demo.log"
        self.steps: list[tuple[str, float, str]] = []

    def step(self, name: str, done: bool, func) -> None:
        """Run ``func`` unless ``done`` (resume), timing it."""
        t0 = time.perf_counter()
        status = "skipped (already done)" if done else "ran"
        if not done:
            func()
        self.steps.append((name, time.perf_counter() - t0, status))
        print(f"[demo] {name}: {status} ({time.perf_counter() - t0:.1f} s)", flush=True)

    def simulate(self) -> None:
        _run(
            [
                "TrialAnalysisLib",
                "simulate",
                "--out",
                self.trial,
                "--n",
                self.n,
                "--seed",
                self.seed,
                "--with-mri",
                self.k,
                "--mri-workers",
                2,
                "--mri-dicom",
            ],
            self.log,
        )

    def imaging_cases(self) -> pd.DataFrame:
        p = pd.read_csv(self.trial / "participants.csv", dtype={"participant_id": str})
        p = p[p["has_mri"].astype(str).str.lower().isin(["true", "1"])]
        return p[["participant_id", "mri_dir"]].reset_index(drop=True)

    def segment(self) -> None:
        """The imaging cohort from its DICOM studies with ``paraspinal-seg batch`` (the Dixon pair picked from
        the headers, one DICOM SEG per case, QC page; resumable); stops if a case failed."""
        rows = [
            {"case_id": row.participant_id, "dicom": self.trial / row.mri_dir / "dicom",
             "seeds": self.trial / row.mri_dir / "seeds.mrk.json", "levels": self.trial / row.mri_dir / "levels.mrk.json"}
            for row in self.imaging_cases().itertuples()
        ]  # fmt: skip
        manifest = self.out / "imaging_cases.csv"
        pd.DataFrame(rows).to_csv(manifest.with_suffix(".tmp"), index=False)
        manifest.with_suffix(".tmp").replace(manifest)
        seg = self.out / "segmentation"
        _run(
            [
                "ParaspinalSegLib",
                "batch",
                "--manifest",
                manifest,
                "--out-dir",
                seg,
                "--dicom-seg",
                "--jobs",
                2,
            ],
            self.log,
        )
        status = pd.read_csv(seg / "status.csv", dtype={"case_id": str}, keep_default_na=False)
        failed = status[status["status"] != "ok"]
        if len(failed):
            first = failed.iloc[0]
            raise StepFailedError(
                f"{len(failed)} case(s) failed to segment, first {first['case_id']}: {first['reason']}"
            )

    def collect_measurements(self) -> None:
        """The cohort's measurement table (the batch's combined table) where the later steps read it."""
        tmp = self.out / "measurements.csv.tmp"
        shutil.copyfile(self.out / "segmentation" / "measurements.csv", tmp)
        tmp.replace(self.out / "measurements.csv")

    def radiomics(self) -> None:
        rows = []
        for row in self.imaging_cases().itertuples():
            seg = self.out / "segmentation" / "cases" / row.participant_id
            rows.append(
                {
                    "case_id": row.participant_id,
                    "image": self.trial / row.mri_dir / "t1w.nii.gz",
                    "labels": seg / "labels.nii.gz",
                    "label_names": seg / "labels.json",
                }
            )
        manifest = self.out / "cohort.csv"
        pd.DataFrame(rows).to_csv(manifest, index=False)
        _run(
            [
                "ParaspinalRadiomicsLib",
                "batch",
                "--manifest",
                manifest,
                "--params",
                "protocol-mri",
                "--out",
                self.out / "features.csv",
                "--jobs",
                "2",
            ],
            self.log,
        )

    def model(self) -> None:
        args = [
            "LBPRiskModelLib",
            "train",
            "--clinical",
            self.trial,
            "--features",
            self.out / "features.csv",
            "--measurements",
            self.out / "measurements.csv",
            "--outcome",
            "responder:m12:10",
            "--out",
            self.out / "model_bundle",
        ]
        _run([*args, "--quick"] if self.quick_model else args, self.log)
        _run(
            [
                "LBPRiskModelLib",
                "report",
                "--model",
                self.out / "model_bundle",
                "--out",
                self.out / "model_report.html",
            ],
            self.log,
        )

    def analysis(self) -> None:
        _run(
            [
                "TrialAnalysisLib",
                "analyze",
                "--data",
                self.trial,
                "--out",
                self.out / "trial_report",
                "--imputations",
                self.imputations,
                "--seed",
                self.seed,
            ],
            self.log,
        )

    def randomization(self) -> None:
        """Central randomisation service: the simulated cohort randomised through it (see demo_run)."""
        _run(
            [
                "TrialAnalysisLib.randomization_server.demo_run",
                "--trial",
                self.trial,
                "--out",
                self.out / "randomization",
            ],
            self.log,
        )

    def index(self) -> Path:
        """index.html linking every report, table and figure of the run."""
        links = []
        for label, rel in [
            ("Trial analysis report (HTML)", "trial_report/report.html"),
            ("Trial analysis report (PDF)", "trial_report/report.pdf"),
            ("Prediction model report", "model_report.html"),
            ("Model card", "model_bundle/model_card.html"),
            ("Measurement table (ParaspinalSeg)", "measurements.csv"),
            ("Segmentation QC contact sheet (paraspinal-seg batch from DICOM)", "segmentation/qc.html"),
            ("Segmentation status per case", "segmentation/status.csv"),
            ("Radiomic feature table (ParaspinalRadiomics)", "features.csv"),
            ("Central randomisation of the cohort (service, exports, audit)", "randomization/summary.html"),
            ("Randomisation export: randomized.csv", "randomization/export/randomized.csv"),
            ("Randomisation audit log verification", "randomization/audit_verify.txt"),
            ("Simulated trial data + data dictionary", "trial/data_dictionary.csv"),
            ("Planted truth", "trial/truth.json"),
            ("Run log", "demo.log"),
        ]:
            if (self.out / rel).exists():
                links.append(f'<li><a href="{html.escape(rel)}">{html.escape(label)}</a></li>')
        figures = sorted(
            p.relative_to(self.out).as_posix()
            for p in self.out.glob("**/*.png")
            if "trial/mri" not in p.as_posix() and "segmentation/cases" not in p.as_posix()
        )
        figs = "".join(
            f'<figure><a href="{f}"><img src="{f}" alt="{f}"></a><figcaption>{f}</figcaption></figure>'
            for f in figures
        )
        rows = "".join(
            f"<tr><td>{html.escape(n)}</td><td>{s}</td><td>{t:.1f} s</td></tr>" for n, t, s in self.steps
        )
        truth = json.loads((self.trial / "truth.json").read_text(encoding="utf-8"))
        page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>ParaspinalLBP demo run</title><style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
figure{{display:inline-block;width:31%;margin:.5%}}img{{width:100%}}td{{padding:2px 8px}}</style></head><body>
<h1>ParaspinalLBP — digital-twin METNLBP trial</h1>
<p>{self.n} participants simulated (seed {self.seed}); {len(self.imaging_cases())} with phantom MRI, written as
DICOM studies and segmented from them (<code>paraspinal-seg batch --dicom-seg</code>: a DICOM SEG per case in
<code>segmentation/cases/&lt;id&gt;/segmentation.dcm</code>, <a href="segmentation/qc.html">QC page</a>) from one
seed per muscle per level. Planted 12-month ODI effect: {truth.get("treatment_effect_odi_12m")} points.</p>
<h2>Outputs</h2><ul>{"".join(links)}</ul>
<p>Serve the calculator: <code>python -m LBPRiskModelLib serve --model {html.escape(str(self.out / "model_bundle"))}</code></p>
<h2>Steps</h2><table>{rows}</table><h2>Figures</h2>{figs}</body></html>"""
        path = self.out / "index.html"
        path.write_text(page, encoding="utf-8")
        return path

    def run(self) -> Path:
        """All steps in order (resuming), then the index page."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.step(
            "simulate trial + imaging cohort",
            (self.trial / "truth.json").exists()
            and len(self.imaging_cases()) >= self.k
            and all((self.trial / d / "dicom").is_dir() for d in self.imaging_cases()["mri_dir"]),
            self.simulate,
        )
        self.step(
            "central randomisation service (TrialAnalysis)",
            (self.out / "randomization" / "summary.html").exists(),
            self.randomization,
        )
        self.step("segment the DICOM cohort from seeds (ParaspinalSeg batch)", False, self.segment)
        self.step("collect measurement tables", False, self.collect_measurements)
        self.step("radiomics batch (ParaspinalRadiomics)", False, self.radiomics)
        self.step(
            "train model, report, bundle (LBPRiskModel)",
            (self.out / "model_report.html").exists(),
            self.model,
        )
        self.step(
            "trial analysis report (TrialAnalysis)",
            (self.out / "trial_report" / "report.html").exists(),
            self.analysis,
        )
        return self.index()


def build_parser() -> argparse.ArgumentParser:
    """``paraspinal-lbp-demo`` / ``python -m ParaspinalLBPDemo`` options."""
    p = argparse.ArgumentParser(prog="paraspinal-lbp-demo", description=__doc__)
    p.add_argument("--out", type=Path, default=Path("demo-out"), help="output directory (resumes if present)")
    p.add_argument(
        "--full", action="store_true", help="314 participants all with MRI, 20 imputations, protocol model"
    )
    p.add_argument("--n", type=int, help="participants (default 314)")
    p.add_argument("--with-mri", type=int, help="imaging cohort size (default 40; --full 314)")
    p.add_argument(
        "--imputations", type=int, help="multiple imputations for the report (default 5; --full 20)"
    )
    p.add_argument("--seed", type=int, default=1)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``paraspinal-lbp-demo`` console script (``make demo``)."""
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run the demo and print where the results are."""
    cfg = dict(FULL if args.full else SMALL)
    for key in ("n", "with_mri", "imputations"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    t0 = time.perf_counter()
    demo = Demo(args.out.resolve(), cfg["n"], cfg["with_mri"], cfg["imputations"], args.seed, not args.full)
    try:
        index = demo.run()
    except StepFailedError as exc:
        print(f"[demo] {exc}", file=sys.stderr)
        print("[demo] fix the cause and re-run: finished steps are kept and skipped", file=sys.stderr)
        return 1
    print(f"\n[demo] finished in {time.perf_counter() - t0:.0f} s. Open {index}")
    print(f"[demo] calculator: python -m LBPRiskModelLib serve --model {demo.out / 'model_bundle'}")
    return 0
