"""How ``--help`` reads: options in sections (input, sampling, measures, gate, outputs), choices, examples.

Built on click's own API: each option carries the name of its section, a :class:`SectionedCommand`
writes one help section per name, and :class:`Choice` keeps the project's one-line "did you mean"
error for a value outside the set.
"""
from __future__ import annotations

from typing import Optional, Sequence

import click

from ..errors import EXIT_USAGE, UsageError, check_choice

#: section name -> the heading --help gives it, in the order --help lists them
SECTIONS = {
    "input": "Input",
    "sampling": "Sampling",
    "measures": "Measures",
    "gate": "Gate",
    "outputs": "Outputs",
    "other": "Other",
}


class OneLineError(click.ClickException):
    """A bad option value as one line on stderr (``error: ...``) with exit code 2, like every other usage error."""

    exit_code = EXIT_USAGE

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


class Choice(click.Choice):
    """click.Choice (``[a|b|c]`` in --help, shell completion) whose error is the one-line "did you mean"."""

    def convert(self, value, param, ctx):
        if value in self.choices:
            return value
        flag = param.opts[-1] if param is not None and param.opts else "value"
        try:
            return check_choice(flag, str(value), [str(c) for c in self.choices])
        except UsageError as exc:
            raise OneLineError(str(exc)) from None


class SectionOption(click.Option):
    """An option that knows which help section lists it."""

    def __init__(self, *args, section: str = "other", **kwargs):
        if section not in SECTIONS:
            raise ValueError(f"unknown help section {section!r}; one of {', '.join(SECTIONS)}")
        super().__init__(*args, **kwargs)
        self.section = section


def option(section: str, *decls: str, **kwargs):
    """``click.option`` listed under ``section`` in --help."""
    return click.option(*decls, cls=SectionOption, section=section, **kwargs)


class SectionedCommand(click.Command):
    """A command whose --help lists its options one section per group, then its examples."""

    def __init__(self, *args, examples: Optional[Sequence[str]] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.examples = list(examples or [])

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: dict[str, list[tuple[str, str]]] = {name: [] for name in SECTIONS}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
            if record is not None:
                rows[getattr(param, "section", "other")].append(record)
        for name, heading in SECTIONS.items():
            if rows[name]:
                with formatter.section(heading):
                    formatter.write_dl(rows[name])

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        if self.examples:
            formatter.write_paragraph()
            formatter.write_text("Examples:")
            formatter.indent()
            for line in self.examples:  # written as is: a command line must not be re-wrapped
                formatter.write(f"{'':>{formatter.current_indent}}{line}\n")
            formatter.dedent()
