"""``python -m qcheck merge OUT.json IN.json...``: one report from the JSON reports of a CI
matrix's shards (``--qcheck-shard=K/N``).

The merged JSON is what one run of every model would have written (its models in the same
order, the same verdicts), so the HTML report, the CSV tables and a JUnit file can be written
from it as from a run. Shards are checked before anything is written: every shard of the split
present once, all split the same way (see :mod:`qcheck.shards`), and no model reported twice.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qcheck.errors import QcheckError

_MERGED_KEYS = ("models", "passed", "suite_file_errors", "shard", "remedies")


def merge_reports(reports: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The report one run would have written, from ``(file name, report)`` pairs of its shards.

    QcheckError, naming the file, when a report is not a qcheck report, when the reports come
    from different qcheck versions or splits, when a shard is missing or given twice, or when a
    model is in two of them.
    """
    if not reports:
        raise QcheckError(None, "no reports to merge", "give the JSON reports of the shards (--qcheck-json)")
    first_name, first = reports[0]
    for name, report in reports:
        _check_shape(name, report)
        for field in ("schema_version", "qcheck_version"):
            if report.get(field) != first.get(field):
                raise QcheckError(name, f"has {field} {report.get(field)!r}, but {first_name} has {first.get(field)!r}",
                                  "merge the reports of one CI run, made by one qcheck version")
    _check_split(reports)
    models: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    for name, report in reports:
        for entry in report["models"]:
            key = (str(entry.get("model")), str(entry.get("suite_file", "")))
            if key in models:
                where = f" (suite file {key[1]})" if key[1] else ""
                raise QcheckError(name, f"reports {key[0]}{where}, which {models[key][0]} reports too",
                                  "each model must run in one shard: give every shard the same "
                                  "--qcheck-shard-costs file, or merge only the reports of one split")
            models[key] = (name, {**entry, "passed": _model_passed(entry)})
    errors = {(e["file"], e["message"]): e for _, r in reports for e in r.get("suite_file_errors", [])}
    merged = {key: value for key, value in first.items() if key not in _MERGED_KEYS}
    merged["models"] = [models[key][1] for key in sorted(models)]  # as one run orders them
    merged["suite_file_errors"] = [errors[pair] for pair in sorted(errors)]
    remedies = [table for _, report in reports for table in report.get("remedies", [])]  # each shard's models'
    if remedies:
        merged["remedies"] = sorted(remedies, key=lambda table: str(table.get("model")))
    # A shard's own verdict stands too: what made it fail may be nothing this merge can see.
    merged["passed"] = (all(entry["passed"] for entry in merged["models"]) and not errors
                        and all(report.get("passed") is True for _, report in reports))
    return merged


def _model_passed(entry: dict[str, Any]) -> bool:
    """A model passes when its entry says so plainly (``true``, not a truthy string) and none of
    its checks failed or could not be measured."""
    return entry.get("passed") is True and all(
        check.get("passed") is not False and check.get("status") not in ("failed", "error")
        for check in entry["checks"])


def _check_shape(name: str, report: Any) -> None:
    """QcheckError naming ``name`` unless ``report`` has the fields the merge reads, of their types."""
    if not isinstance(report, dict) or not isinstance(report.get("models"), list):
        raise QcheckError(name, "is not a qcheck JSON report (no 'models' list)")
    hint = "merge the JSON reports qcheck wrote (--qcheck-json), unedited"
    for i, entry in enumerate(report["models"]):
        if (not isinstance(entry, dict) or not isinstance(entry.get("model"), str)
                or not isinstance(entry.get("checks"), list)
                or not all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in entry["checks"])):
            raise QcheckError(name, f"models[{i}] is not a model's entry (a 'model' name and a 'checks' list, each "
                              "check with its 'name')", hint)
    errors = report.get("suite_file_errors", [])
    if not isinstance(errors, list) or not all(
            isinstance(e, dict) and isinstance(e.get("file"), str) and isinstance(e.get("message"), str)
            for e in errors):
        raise QcheckError(name, "'suite_file_errors' is not a list of {file, message}", hint)
    remedies = report.get("remedies", [])
    if not isinstance(remedies, list) or not all(isinstance(table, dict) for table in remedies):
        raise QcheckError(name, "'remedies' is not a list of the models' remedy tables", hint)
    shard = report.get("shard")
    if "shard" in report and not (isinstance(shard, dict) and all(
            type(shard.get(key)) is int for key in ("index", "count")) and isinstance(shard.get("groups"), dict)):
        raise QcheckError(name, "'shard' is not a shard's split (its index, count and groups)", hint)


def _check_split(reports: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Every shard of one split, each once; or no shard information at all (plain runs)."""
    shards = [(name, report.get("shard")) for name, report in reports]
    sharded = [(name, shard) for name, shard in shards if isinstance(shard, dict)]
    if not sharded:
        return
    if len(sharded) != len(shards):
        plain = next(name for name, shard in shards if not isinstance(shard, dict))
        raise QcheckError(plain, "is not a shard's report (it was not run with --qcheck-shard), unlike "
                          f"{sharded[0][0]}", "merge the reports of the shards of one run")
    first_name, first = sharded[0]
    seen: dict[int, str] = {}
    for name, shard in sharded:
        if shard.get("count") != first.get("count") or shard.get("digest") != first.get("digest"):
            moved = sorted(g for g in set(first.get("groups", {})) | set(shard.get("groups", {}))
                           if first.get("groups", {}).get(g) != shard.get("groups", {}).get(g))
            raise QcheckError(name, f"was split differently from {first_name} ({_split(shard)} against "
                              f"{_split(first)}): " + (f"{', '.join(moved[:5])} moved" if moved else "")
                              + "; some models would be reported twice or not at all",
                              "give every shard the same --qcheck-shard-costs file (or caches restored from "
                              "the same run), and merge the reports of one CI run")
        index = int(shard.get("index", 0))
        unfinished = shard.get("unfinished")
        if not isinstance(unfinished, list):
            raise QcheckError(name, "does not say which of its models finished ('shard.unfinished')",
                              "merge the JSON reports qcheck wrote (--qcheck-json), unedited")
        if unfinished:
            raise QcheckError(name, f"is shard {index}/{shard.get('count')} of a run that did not finish: "
                              f"{', '.join(str(g).removeprefix('model:') for g in unfinished[:5])} did not finish "
                              "all their checks (a cancelled job, -x, a crash), so its report is not their verdict",
                              "run the shard again to its end, then merge")
        if index in seen:
            raise QcheckError(name, f"is shard {index}/{shard.get('count')}, as {seen[index]} is")
        seen[index] = name
    count = int(first.get("count", 0))
    missing = sorted(set(range(1, count + 1)) - set(seen))
    if missing:
        lost = sorted(g for g, part in first.get("groups", {}).items() if part in missing)
        absent = ", ".join(f"{index}/{count}" for index in missing)
        raise QcheckError(None, f"the report of shard(s) {absent} is missing: {', '.join(lost[:5]) or 'its models'} "
                          "would not be reported", "give the JSON reports of every shard")


def _split(shard: dict[str, Any]) -> str:
    return f"{shard.get('index')}/{shard.get('count')}, balanced by {shard.get('balanced_by')}"


def merged_costs(reports: Sequence[tuple[str, dict[str, Any]]], earlier: dict[str, float]) -> dict[str, float]:
    """What each group cost in the shards, over ``earlier`` costs (the larger of the two)."""
    from qcheck.shards import most

    return most(earlier, *(r.get("shard", {}).get("costs", {}) for _, r in reports if isinstance(r.get("shard"), dict)))


def junit_xml(report: dict[str, Any]) -> bytes:
    """The report as JUnit XML: a test case per check (``model``, ``check[variant]``), failed or
    in error as in the run."""
    import xml.etree.ElementTree as ET

    cases = []
    for entry in report["models"]:
        for check in entry.get("checks", []):
            name = f"{check['name']}[{check['variant']}]" if check.get("variant") else str(check["name"])
            case = ET.Element("testcase", classname=f"qcheck.{entry['model']}", name=name)
            status = check.get("status")
            if status in ("failed", "error"):
                child = ET.SubElement(case, "failure" if status == "failed" else "error",
                                      message=str(check.get("message", ""))[:500])
                child.text = str(check.get("message", ""))
            elif status == "skipped":
                ET.SubElement(case, "skipped", message=str(check.get("message", ""))[:500])
            cases.append(case)
    suite = ET.Element("testsuite", name="qcheck", tests=str(len(cases)),
                       failures=str(sum(1 for c in cases if c.find("failure") is not None)),
                       errors=str(sum(1 for c in cases if c.find("error") is not None)),
                       skipped=str(sum(1 for c in cases if c.find("skipped") is not None)))
    suite.extend(cases)
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    text: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return text + b"\n"


def main(argv: Sequence[str]) -> int:
    """Merge the reports; 0 when the merged report passes, 1 when it does not, 2 on an error."""
    import pytest

    from qcheck.files import InputFiles, atomic_write, write_json

    parser = argparse.ArgumentParser(prog="python -m qcheck merge", description=(
        "Merge the JSON reports of --qcheck-shard runs into the report one run would have written."))
    parser.add_argument("out", type=Path, help="the merged JSON report to write")
    parser.add_argument("reports", type=Path, nargs="+", help="the shards' JSON reports (--qcheck-json)")
    parser.add_argument("--html", type=Path, help="also write the HTML report here")
    parser.add_argument("--csv", type=Path, metavar="DIR", help="also write the CSV tables into this folder")
    parser.add_argument("--junit", type=Path, help="also write a JUnit XML file here (a test case per check)")
    parser.add_argument("--costs", type=Path, metavar="FILE", help=(
        "write what each model cost (the larger of this file's and the shards' figures), for "
        "--qcheck-shard-costs in the next run"))
    args = parser.parse_args(argv)
    inputs = InputFiles()
    reports = []
    try:
        _distinct_outputs(args)
        for path in args.reports:
            inputs.add(path, "shard report")
            reports.append((str(path), _read(path)))
        merged = merge_reports(reports)
        written = []
        write_json(args.out, merged, named_by_user=True, never=inputs)
        written.append(f"JSON report written to {args.out}")
        if args.html:
            from datetime import UTC, datetime

            from qcheck.report.html import write_report

            write_report(args.html, merged, generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
                         never=inputs)
            written.append(f"HTML report written to {args.html}")
        if args.csv:
            from qcheck.report.csv_tables import write_tables

            tables = write_tables(args.csv, merged, never=inputs)
            written.append(f"{len(tables)} CSV table(s) written to {args.csv}")
        if args.junit:
            atomic_write(args.junit, junit_xml(merged), named_by_user=True, never=inputs)
            written.append(f"JUnit XML written to {args.junit}")
        if args.costs:
            from qcheck.shards import costs_document, read_costs

            earlier = read_costs(args.costs) if args.costs.exists() else {}
            write_json(args.costs, costs_document(merged_costs(reports, earlier)), named_by_user=True, never=inputs)
            written.append(f"costs written to {args.costs}")
    except QcheckError as exc:
        print(f"qcheck merge: {exc.render()}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"qcheck merge: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except pytest.UsageError as exc:  # a costs file that is not one
        print(f"qcheck merge: {exc}", file=sys.stderr)
        return 2
    models = merged["models"]
    failing = [m["model"] for m in models if not m.get("passed")]
    print(f"qcheck merge: {len(reports)} report(s), {len(models)} model(s), "
          + ("all passed" if merged["passed"] else f"not passed: {', '.join(failing) or 'suite file errors'}"))
    for line in written:
        print(f"qcheck merge: {line}")
    return 0 if merged["passed"] else 1


def _distinct_outputs(args: argparse.Namespace) -> None:
    """QcheckError when two outputs are one file (links followed): the later would replace the earlier."""
    seen: dict[Path, str] = {}
    for option, path in (("OUT", args.out), ("--html", args.html), ("--junit", args.junit), ("--costs", args.costs)):
        if path is None:
            continue
        where = path.resolve()
        if where in seen:
            raise QcheckError(path, f"is given as {option} and as {seen[where]}: one would be written over the other",
                              "give each output its own path")
        seen[where] = option


def _read(path: Path) -> dict[str, Any]:
    from qcheck.inputs import read_regular

    if not path.exists():
        raise QcheckError(path, "does not exist", "give the JSON reports the shards wrote (--qcheck-json)")
    text = read_regular(path, "report")  # a FIFO or a device is refused, never read
    try:
        report = json.loads(text)
    except RecursionError:
        raise QcheckError(path, "is not a qcheck JSON report (nested too deeply to read)") from None
    except ValueError as exc:
        raise QcheckError(path, f"is not JSON ({exc})") from None
    if not isinstance(report, dict):
        raise QcheckError(path, "is not a qcheck JSON report")
    return report
