"""The options of a run: their definitions, and their resolution.

One table, :data:`RUN_OPTIONS`, defines every option of ``ecmpi run`` and of
:func:`ecmpi.run` (name, converter, default, help); the command line, the TOML
config file, the Python keyword arguments and the option table of docs/cli.md
(``python -m ecmpi.options --markdown``) are all built from it. Each
algorithm's ``hyperparameters`` are options too.

Resolution, from lowest to highest precedence: the defaults, the config of a
resumed log (``--resume``), a TOML file (``--config``, same keys, ``-`` or
``_`` alike, a ``[hyperparameters]`` table flattened), then the command line or the keyword
arguments. When resuming only :data:`RESUME_MAY_CHANGE` may differ from the
log's config. Resolution is pure (no MPI; no I/O but the config file): every
rank gets the same result or the same :class:`UsageError`.
"""

from __future__ import annotations

import argparse
import difflib
import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import tomllib

from .comm import COLLECTIVES
from .errors import UsageError
from .problems.data import SCALES

__all__ = [
    "CONFIG_TABLES",
    "CONTROL_OPTIONS",
    "MAX_INT",
    "RESUME_MAY_CHANGE",
    "RUN_OPTIONS",
    "Option",
    "OptionParser",
    "UsageError",
    "add_run_arguments",
    "markdown_table",
    "peek_algorithm",
    "prescan",
    "read_config",
    "resolve_options",
    "resolve_run_options",
    "write_docs",
]


class OptionParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` that raises :class:`UsageError` instead of exiting.

    Options are matched by their full names only (``--step`` is not ``--steps``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see `{self.prog} --help`)")


# ---------------------------------------------------------------------------------------
# converters: raw value (string from argv, TOML or Python value) -> checked value
# ---------------------------------------------------------------------------------------
#: the largest value an integer option takes (steps, sizes, seeds)
MAX_INT = 10**12


def _int(v: Any) -> int:
    """An integer (``1e6`` and ``1_000`` accepted) of magnitude at most :data:`MAX_INT`."""
    if isinstance(v, bool):
        raise ValueError(f"must be an integer, got {v!r}")
    if isinstance(v, float):
        if not v.is_integer():
            raise ValueError(f"must be an integer, got {v!r}")
        i = int(v)
    elif isinstance(v, int):
        i = v
    else:
        try:
            i = int(str(v).replace("_", ""))
        except ValueError:
            try:
                f = float(v)  # accepts 1e6
            except ValueError:
                raise ValueError(f"must be an integer, got {v!r}") from None
            if not f.is_integer():
                raise ValueError(f"must be an integer, got {v!r}") from None
            i = int(f)
    if abs(i) > MAX_INT:
        raise ValueError(f"must be at most {MAX_INT:.0e} in magnitude, got {v!r}")
    return i


def _nonneg_int(v: Any) -> int:
    i = _int(v)
    if i < 0:
        raise ValueError(f"must be a non-negative integer, got {v!r}")
    return i


def _pos_int(v: Any) -> int:
    i = _int(v)
    if i < 1:
        raise ValueError(f"must be a positive integer, got {v!r}")
    return i


def _float(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError(f"must be a number, got {v!r}")
    f = float(v)
    if math.isnan(f):
        raise ValueError("must be a number, got NaN")
    return f


def _pos_float(v: Any) -> float:
    f = _float(v)
    if not (f > 0 and math.isfinite(f)):
        raise ValueError(f"must be a positive number, got {v!r}")
    return f


def _nonneg_float(v: Any) -> float:
    f = _float(v)
    if not (f >= 0 and math.isfinite(f)):
        raise ValueError(f"must be a non-negative number, got {v!r}")
    return f


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be true or false, got {v!r}")


def _str(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"must be a non-empty string, got {v!r}")
    return v.strip()


def _path(v: Any) -> str:
    return _str(str(v) if isinstance(v, Path) else v)


def _x0(v: Any) -> str:
    s = _str(v)
    if s in ("init", "zeros", "ones") or s.startswith("star+") or s.startswith("const:"):
        if s.startswith(("star+", "const:")):
            _float(s.split("+", 1)[1] if s.startswith("star+") else s.split(":", 1)[1])
        return s
    raise ValueError(f"must be init, zeros, ones, star+C (x* + C) or const:C, got {v!r}")


def _hidden(v: Any) -> str:
    from .problems.mlp import parse_hidden

    return ",".join(map(str, parse_hidden(str(v)))) or "none"


def _unit_interval(v: Any) -> float:
    f = _float(v)
    if not 0 <= f < 1:
        raise ValueError(f"must be in [0, 1), got {v!r}")
    return f


def _choice(*choices: str) -> Callable[[Any], str]:
    def conv(v: Any) -> str:
        s = _str(v)
        if s not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {v!r}")
        return s

    conv.choices = choices  # type: ignore[attr-defined]
    return conv


# ---------------------------------------------------------------------------------------
# the option table
# ---------------------------------------------------------------------------------------
class Option(NamedTuple):
    """One run option.

    Attributes:
        convert: raw value -> checked value (raises ValueError with the reason).
        default: the value when nobody sets it (None: unset).
        help: one line for ``--help``.
        flag: a ``--name`` without a value (sets True).
        metavar: the value's name in docs/cli.md.
        default_doc: how docs/cli.md shows the default (default: from ``default``).
        doc: more words for docs/cli.md, after ``help``.
    """

    convert: Callable[[Any], Any]
    default: Any
    help: str
    flag: bool = False
    metavar: str = ""
    default_doc: str | None = None
    doc: str = ""


#: run option -> its definition; ``None`` default = unset
RUN_OPTIONS: dict[str, Option] = {
    "problem": Option(
        _choice("lsq", "logreg", "quadratic", "mlp"),
        "lsq",
        "objective: lsq, logreg, quadratic, mlp",
        metavar="NAME",
    ),
    "dataset": Option(
        _str,
        None,
        "dataset spec, e.g. synthetic:n=4000,d=100 or sklearn:breast_cancer",
        metavar="SPEC",
        default_doc="(required for lsq/logreg)",
        doc="; also `syn:d=256`, `libsvm:PATH`, `hdf5:PATH` (docs/problems.md)",
    ),
    "scale": Option(_choice(*SCALES), "none", "feature scaling", metavar="NAME"),
    "bias": Option(_bool, False, "append a constant feature", flag=True),
    "dtype": Option(
        _choice("float64", "float32"),
        "float64",
        "floating-point type of data and iterate",
        metavar="NAME",
    ),
    "l2": Option(
        _nonneg_float, None, "l2 regularization lambda", metavar="LAMBDA", default_doc="0"
    ),
    "l2_rel": Option(
        _nonneg_float,
        None,
        "l2 relative to the data's smoothness: lambda = R * L",
        metavar="R",
        doc="; give `--l2` or `--l2-rel`, not both",
    ),
    "kappa": Option(_pos_float, None, "condition number of the quadratic problem", metavar="K"),
    "dim": Option(_pos_int, None, "dimension of the quadratic problem", metavar="D"),
    "hidden": Option(
        _hidden,
        None,
        "hidden layer widths of the mlp problem",
        metavar="W[,W...]",
        default_doc="64,64",
        doc="; `none` for a linear softmax classifier",
    ),
    "test_fraction": Option(
        _unit_interval,
        None,
        "share of rows the mlp problem holds out (split by --seed)",
        metavar="F",
        default_doc="0.2",
    ),
    "compressor": Option(
        _str,
        "none",
        "compressor spec, e.g. qsgd:levels=4,bucket=512 or topk:k=2",
        metavar="SPEC",
        doc="(docs/compressors.md)",
    ),
    "collective": Option(
        _choice(*COLLECTIVES),
        "allgather",
        "collective algorithm",
        metavar="NAME",
    ),
    "steps": Option(_nonneg_int, 100, "step budget", metavar="N"),
    "target": Option(
        _nonneg_float,
        None,
        "stop once f - f* <= TARGET (checked at logged rows)",
        metavar="EPS",
    ),
    "max_bits": Option(
        _pos_float,
        None,
        "stop once the per-worker uplink bits reach this budget",
        metavar="B",
        doc="(`bits_up`)",
    ),
    "lr": Option(
        _pos_float,
        None,
        "step size (default: the algorithm's, usually 1/L)",
        metavar="ETA",
        default_doc="the algorithm's, usually 1/L",
    ),
    "batch_size": Option(
        _nonneg_int, 1, "minibatch rows per worker (0: full local gradient)", metavar="N"
    ),
    "seed": Option(_nonneg_int, 0, "seed of every random draw", metavar="S"),
    "x0": Option(
        _x0,
        "init",
        "start: init, zeros, ones, star+C (x* + C) or const:C",
        metavar="SPEC",
        doc="; `init` is zeros, except mlp: its He initialization from --seed",
    ),
    "out": Option(
        _path,
        None,
        "HDF5 log file (default: no log)",
        metavar="FILE.h5",
        default_doc="no log",
        doc="(docs/hdf5.md); an existing file is refused without `--overwrite`, and always "
        "where it is an input (the dataset file, the config file) or not a regular file",
    ),
    "overwrite": Option(_bool, False, "replace an existing --out file", flag=True),
    "log_every": Option(_pos_int, 1, "steps between logged rows", metavar="N"),
    "checkpoint_every": Option(
        _nonneg_int,
        0,
        "steps between checkpoints in the log (0: on signal only)",
        metavar="N",
        doc="; the signals are SIGTERM, SIGUSR1 and SIGINT",
    ),
    "progress_every": Option(
        _pos_int,
        None,
        "steps between progress lines when not on a terminal",
        metavar="N",
        default_doc="about 20 lines",
        doc="(rank 0; a bar on a terminal)",
    ),
    "on_nonfinite": Option(
        _choice("error", "skip"),
        "error",
        "NaN/Inf iterate: stop (error) or undo the step",
        metavar="ACTION",
        doc="(`error` names the step)",
    ),
    "diverge_factor": Option(
        _pos_float,
        1e6,
        "diverged when f - f* > FACTOR * (f(x0) - f*)",
        metavar="FACTOR",
        default_doc="1e6",
        doc="(status `diverged`, checked at logged rows)",
    ),
    "quiet": Option(_bool, False, "no progress display and no summary table", flag=True),
}
#: options that may change when resuming (the rest must match the log's config)
RESUME_MAY_CHANGE = ("steps", "target", "max_bits", "checkpoint_every", "progress_every", "quiet")
_FLAGS = tuple(k for k, o in RUN_OPTIONS.items() if o.flag)

#: options that choose where the others come from; not stored in the log's config
CONTROL_OPTIONS: dict[str, Option] = {
    "config": Option(
        _path,
        None,
        "TOML file with the same keys as the options",
        metavar="FILE.toml",
        doc="(see below)",
    ),
    "resume": Option(
        _path,
        None,
        "continue the run logged in this file from its checkpoint",
        metavar="FILE.h5",
        doc="(same rank count; only "
        + ", ".join(f"`{k}`" for k in RESUME_MAY_CHANGE)
        + " may change)",
    ),
}


#: the tables a config file may hold (flattened into the options)
CONFIG_TABLES = ("hyperparameters",)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _norm_key(k: str) -> str:
    return k.strip().lstrip("-").replace("-", "_")


def _hyper_converter(h: Any) -> Callable[[Any], Any]:
    base = {bool: _bool, int: _int, float: _float, str: _str}.get(h.type, h.type)

    def conv(v: Any) -> Any:
        if v is None and h.default is None:
            return None
        out = base(v)
        if h.choices is not None and out not in h.choices:
            raise ValueError(f"must be one of {', '.join(map(str, h.choices))}, got {v!r}")
        return out

    return conv


# ---------------------------------------------------------------------------------------
# command line and config file
# ---------------------------------------------------------------------------------------
def add_run_arguments(p: argparse.ArgumentParser, alg_cls: Any) -> None:
    """Add ALGORITHM, the control options, the run options and ``alg_cls``'s hyperparameters."""
    p.add_argument("algorithm", nargs="?", help="algorithm name (see `ecmpi info`)")
    for name, opt in CONTROL_OPTIONS.items():
        p.add_argument(_flag(name), help=opt.help)
    g = p.add_argument_group("run options")
    for name, opt in RUN_OPTIONS.items():
        if opt.flag:
            g.add_argument(
                _flag(name),
                dest=name,
                action="store_const",
                const=True,
                default=argparse.SUPPRESS,
                help=opt.help,
            )
        else:
            g.add_argument(
                _flag(name),
                dest=name,
                default=argparse.SUPPRESS,
                metavar="V",
                help=f"{opt.help} (default: {opt.default})",
            )
    if alg_cls is not None and alg_cls.hyperparameters:
        h = p.add_argument_group(f"{alg_cls.name} hyperparameters")
        for hp in alg_cls.hyperparameters:
            extra = f"; one of {', '.join(map(str, hp.choices))}" if hp.choices else ""
            h.add_argument(
                _flag(hp.name),
                dest=hp.name,
                default=argparse.SUPPRESS,
                metavar="V",
                help=f"{hp.help} (default: {hp.default}{extra})",
            )


def read_config(path: str) -> dict[str, Any]:
    """The TOML file at ``path`` as ``{option: value}``.

    Keys are normalized (``batch-size`` is ``batch_size``); the tables of
    :data:`CONFIG_TABLES` are flattened. An unknown table, or one option given twice
    (under two spellings, or in a table and at the top), is a :class:`UsageError`.
    """
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from None
    out: dict[str, Any] = {}
    spelled: dict[str, str] = {}

    def put(key: str, value: Any, where: str) -> None:
        name = _norm_key(key)
        if name in out:
            raise UsageError(
                f"config file {path}: {name} is given twice ({spelled[name]} and {where})"
            )
        out[name], spelled[name] = value, where

    for k, v in data.items():
        if isinstance(v, dict):
            if _norm_key(k) not in CONFIG_TABLES:
                raise UsageError(
                    f"config file {path}: unknown table [{k}]; the options are top-level "
                    f"keys, and the tables are {', '.join(f'[{t}]' for t in CONFIG_TABLES)}"
                )
            for k2, v2 in v.items():
                if isinstance(v2, dict):
                    raise UsageError(f"config file {path}: unknown table [{k}.{k2}]")
                put(k2, v2, f"{k}.{k2}")
        else:
            put(k, v, k)
    return out


def prescan(argv: Sequence[str]) -> argparse.Namespace:
    """ALGORITHM, ``--config`` and ``--resume``, found before the full parser can be built.

    Every option but the flags takes one value (``--name V`` or ``--name=V``).
    """
    found = argparse.Namespace(algorithm=None, config=None, resume=None)
    flags = {_flag(f) for f in _FLAGS} | {"-h", "--help"}
    it = iter(argv)
    for a in it:
        if a.startswith("-"):
            name, eq, val = a.partition("=")
            if name in flags:
                continue
            if not eq:
                val = next(it, None)
            if name in ("--config", "--resume"):
                setattr(found, name[2:], val)
        elif found.algorithm is None:
            found.algorithm = a
    return found


def peek_algorithm(argv: Sequence[str]) -> Any:
    """The algorithm class named by ``argv`` (or its config file), or None."""
    from .algorithms import get

    known = prescan(argv)
    name = known.algorithm or (read_config(known.config).get("algorithm") if known.config else None)
    if name is None:
        return None
    try:
        return get(name)
    except (ValueError, ImportError, AttributeError) as exc:
        raise UsageError(str(exc)) from None


# ---------------------------------------------------------------------------------------
# resolution
# ---------------------------------------------------------------------------------------
def _algorithm_class(name: Any, base: Mapping[str, Any]) -> Any:
    from .algorithms import get

    if name is None:
        raise UsageError("ecmpi run: give an ALGORITHM (or --resume FILE.h5)")
    try:
        alg_cls = get(str(name))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except (ImportError, AttributeError) as exc:
        raise UsageError(
            f"algorithm {name!r} is not available in this installation: {exc}"
        ) from None
    if base and base.get("algorithm") not in (None, alg_cls.name, name):
        raise UsageError(
            f"cannot resume: the log was written by {base.get('algorithm')!r}, not {name!r}"
        )
    return alg_cls


def _combine(
    alg_cls: Any,
    toml: dict[str, Any],
    config_path: str | None,
    given: dict[str, Any],
    base: Mapping[str, Any],
    label: Callable[[str], str],
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Defaults, then ``base`` (a resumed config), then ``toml``, then ``given``; checked."""
    toml.pop("algorithm", None)
    hypers = {h.name: h for h in alg_cls.hyperparameters}
    unknown = sorted(k for k in toml if k not in RUN_OPTIONS and k not in hypers)
    if unknown:
        raise UsageError(
            f"config file {config_path}: unknown key(s) {', '.join(unknown)} "
            f"(for {alg_cls.name}); options are those of `ecmpi run {alg_cls.name} --help`"
        )

    opts: dict[str, Any] = {k: o.default for k, o in RUN_OPTIONS.items()}
    hp: dict[str, Any] = {k: h.default for k, h in hypers.items()}
    if base:
        opts.update({k: v for k, v in base.items() if k in RUN_OPTIONS})
        hp.update({k: v for k, v in base.get("hyperparameters", {}).items() if k in hypers})
    explicit: dict[str, Any] = {**toml, **given}
    for k, raw in explicit.items():
        conv = RUN_OPTIONS[k].convert if k in RUN_OPTIONS else _hyper_converter(hypers[k])
        try:
            val = conv(raw)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{label(k)}: {exc}") from None
        if k in RUN_OPTIONS:
            opts[k] = val
        else:
            hp[k] = val
    if base:
        changed = [
            k
            for k, v in explicit.items()
            if k not in RESUME_MAY_CHANGE
            and (
                opts.get(k, hp.get(k))
                != (base.get(k) if k in RUN_OPTIONS else base.get("hyperparameters", {}).get(k))
            )
        ]
        if changed:
            raise UsageError(
                "cannot resume with different settings: "
                + ", ".join(label(k) for k in sorted(changed))
                + f" (only {', '.join(RESUME_MAY_CHANGE)} may change)"
            )
    _check_together(opts, base)
    opts["algorithm"] = alg_cls.name
    return alg_cls, opts, hp


def _check_together(opts: dict[str, Any], base: Mapping[str, Any]) -> None:
    """Checks across options."""
    if opts["l2"] is not None and opts["l2_rel"] is not None:
        raise UsageError("give either --l2 or --l2-rel, not both")
    if opts["problem"] == "quadratic":
        if opts["dataset"] is None and (opts["kappa"] is None or opts["dim"] is None):
            raise UsageError(
                "--problem quadratic needs --kappa and --dim (or a quadratic: dataset)"
            )
    else:
        if opts["kappa"] is not None or opts["dim"] is not None:
            raise UsageError("--kappa and --dim apply to --problem quadratic only")
        if opts["problem"] == "mlp" and opts["l2_rel"] is not None:
            raise UsageError("--l2-rel needs the smoothness L, which --problem mlp lacks; use --l2")
        if opts["dataset"] is None:
            example = "sklearn:digits" if opts["problem"] == "mlp" else "synthetic:n=4000,d=100"
            raise UsageError(f"--problem {opts['problem']} needs --dataset, e.g. {example}")
    if opts["problem"] != "mlp" and (opts["hidden"] or opts["test_fraction"] is not None):
        raise UsageError("--hidden and --test-fraction apply to --problem mlp only")
    from . import compressor

    try:
        compressor(opts["compressor"])
    except (TypeError, ValueError) as exc:
        raise UsageError(f"--compressor: {exc}") from None
    if opts["overwrite"] and opts["out"] is None:
        raise UsageError("--overwrite needs --out")
    if opts["checkpoint_every"] and opts["out"] is None and not base:
        raise UsageError("--checkpoint-every needs --out (checkpoints live in the log)")


def resolve_run_options(
    argv: Sequence[str], *, resumed_config: dict[str, Any] | None = None
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Parse ``ecmpi run`` arguments into ``(algorithm class, options, hyperparameters)``.

    Pure (no MPI, no I/O but the config file): every rank gets the same result or
    the same :class:`UsageError`. ``resumed_config`` is the config of a log given
    with ``--resume``: its values are the base, and only :data:`RESUME_MAY_CHANGE`
    may differ.
    """
    known = prescan(argv)
    toml = read_config(known.config) if known.config else {}
    base = dict(resumed_config or {})
    name = known.algorithm or toml.get("algorithm") or base.get("algorithm")
    alg_cls = _algorithm_class(name, base)
    parser = OptionParser(prog="ecmpi run")
    add_run_arguments(parser, alg_cls)
    ns = vars(parser.parse_args(list(argv)))
    given = {k: v for k, v in ns.items() if k not in ("algorithm", *CONTROL_OPTIONS)}
    return _combine(alg_cls, toml, known.config, given, base, _flag)


def resolve_options(
    algorithm: str | None,
    options: Mapping[str, Any],
    *,
    config: str | None = None,
    resumed_config: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """:func:`resolve_run_options` for Python keyword arguments.

    Args:
        algorithm: the algorithm's name (None: the config file's or the resumed log's).
        options: run options and hyperparameters by name (``batch_size=32``); a value
            of None leaves the option at its default.
        config: a TOML file, below ``options`` in precedence.
        resumed_config: the config of the log being resumed.

    Raises:
        UsageError: an unknown name, an invalid value or a forbidden combination.
    """
    toml = read_config(str(config)) if config is not None else {}
    base = dict(resumed_config or {})
    name = algorithm or toml.get("algorithm") or base.get("algorithm")
    alg_cls = _algorithm_class(name, base)
    hypers = {h.name for h in alg_cls.hyperparameters}
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(k for k in options if k not in RUN_OPTIONS and k not in hypers)
    if unknown:
        known = [*RUN_OPTIONS, *CONTROL_OPTIONS, *sorted(hypers)]
        hints = [difflib.get_close_matches(k, known, n=1) for k in unknown]
        hint = "; ".join(f"{k}: did you mean {h[0]}?" for k, h in zip(unknown, hints) if h)
        raise UsageError(
            f"unknown option(s) {', '.join(unknown)} for {alg_cls.name}"
            + (f" ({hint})" if hint else "")
            + "; options are "
            f"{', '.join(RUN_OPTIONS)}, config, resume"
            + (f" and its hyperparameters {', '.join(sorted(hypers))}" if hypers else "")
        )
    return _combine(alg_cls, toml, config, given, base, str)


# ---------------------------------------------------------------------------------------
# docs/cli.md
# ---------------------------------------------------------------------------------------
DOCS_BEGIN = "<!-- begin: option table (python -m ecmpi.options --write-docs docs/cli.md) -->"
DOCS_END = "<!-- end: option table -->"


def _doc_default(opt: Option) -> str:
    if opt.default_doc is not None:
        return opt.default_doc
    if opt.default is None:
        return ""
    if opt.flag:
        return "on" if opt.default else "off"
    if isinstance(opt.default, str):
        return f"`{opt.default}`"
    return f"{opt.default:g}" if isinstance(opt.default, float) else str(opt.default)


def markdown_table() -> str:
    """The option table of docs/cli.md, from :data:`CONTROL_OPTIONS` and :data:`RUN_OPTIONS`."""
    lines = ["| option | default | meaning |", "|---|---|---|"]
    for name, opt in {**RUN_OPTIONS, **CONTROL_OPTIONS}.items():
        flag = f"`{_flag(name)}`" if opt.flag else f"`{_flag(name)} {opt.metavar or 'V'}`"
        meaning = re.sub(r" \(default: [^)]*\)", "", opt.help)
        choices = getattr(opt.convert, "choices", None)
        if choices and not meaning.endswith(", ".join(choices)):
            meaning += ": " + ", ".join(f"`{c}`" for c in choices)
        if opt.doc:
            meaning += opt.doc if opt.doc.startswith(";") else " " + opt.doc
        lines.append(f"| {flag} | {_doc_default(opt)} | {meaning.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def write_docs(path: str | Path, *, check: bool = False) -> bool:
    """Put :func:`markdown_table` between the markers in ``path``.

    Returns:
        True when the file already held the current table. With ``check`` nothing is
        written.
    """
    path = Path(path)
    text = path.read_text()
    head, sep, rest = text.partition(DOCS_BEGIN)
    _, sep2, tail = rest.partition(DOCS_END)
    if not (sep and sep2):
        raise ValueError(f"{path}: the markers {DOCS_BEGIN!r} and {DOCS_END!r} are missing")
    new = f"{head}{DOCS_BEGIN}\n{markdown_table()}{DOCS_END}{tail}"
    if new == text:
        return True
    if not check:
        path.write_text(new)
    return False


def _main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m ecmpi.options", description="The run option table for docs/cli.md."
    )
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--markdown", action="store_true", help="print the Markdown table")
    g.add_argument("--write-docs", metavar="FILE", help="regenerate the table in FILE")
    g.add_argument("--check-docs", metavar="FILE", help="exit 1 when FILE's table is stale")
    args = p.parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown_table())
        return 0
    if args.write_docs:
        write_docs(args.write_docs)
        return 0
    return 0 if write_docs(args.check_docs, check=True) else 1


if __name__ == "__main__":
    sys.exit(_main())
