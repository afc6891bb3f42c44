"""MkDocs hooks: pages filled at build time from the package and the repository, so that the
site cannot drift from them. `<!-- cli-help -->` becomes every `rrae-fast` command's `--help`;
`<!-- results -->` becomes `benchmarks/RESULTS.md`."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cli_help() -> str:
    from rrae_fast import cli  # the installed package (the site is built where it is installed)

    out = []
    parser_help = _capture(cli.main, ["--help"])
    out.append("## rrae-fast\n\n```text\n" + parser_help + "```\n")
    commands = ["train", "evaluate", "table1", "table2", "budgets", "sweep-contractive"]
    commands += ["rollback", "demo"]
    commands += ["data fetch", "data lenet", "data list"]
    for command in commands:
        text = _capture(cli.main, [*command.split(), "--help"])
        out.append(f"## rrae-fast {command}\n\n```text\n{text}```\n")
    return "\n".join(out)


def _capture(main, argv) -> str:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.suppress(SystemExit):
        main(argv)
    return buffer.getvalue()


def on_page_markdown(markdown: str, page, config, files) -> str:
    if "<!-- cli-help -->" in markdown:
        markdown = markdown.replace("<!-- cli-help -->", _cli_help())
    if "<!-- results -->" in markdown:
        results = (ROOT / "benchmarks" / "RESULTS.md").read_text()
        # Its figures and files live beside it in benchmarks/, outside the site: named, with
        # their path in the repository, instead of linked.
        results = re.sub(r"!?\[([^\]]*)\]\((?!https?:)([^)]+)\)", r"\1 (`benchmarks/\2`)", results)
        markdown = markdown.replace("<!-- results -->", results)
    return markdown
