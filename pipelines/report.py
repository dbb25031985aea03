"""A training run as one self-contained HTML page, from what MLflow holds — for someone without the MLflow UI.

The page has no script, stylesheet, font or image outside itself: every loss term (``loss_*``) and validation metric
(``val_*``, ``objective``) and the throughput (``images_per_s``) per epoch as an inline SVG chart drawn here; every
sample image the run logged with ``mlflow.log_image(key=…, step=…)`` (MLflow keeps them as
``images/<key>+step+<step>+timestamp+<ms>+<uuid>.png``, ``%`` instead of ``+`` before MLflow 3.x) as a base64
``data:`` URI; the run's params and any ``config.{yaml,yml,json}`` artifact; the eval table (``eval_*`` metrics of the
run, ``eval.*`` tags of the registered version) and the promotion decision (``promotion.*`` tags). Everything that
comes from MLflow — names, params, tags, keys, config text — is HTML-escaped (it is user input) and loses the
credentials of any URI in it (``storage.redact``).

A target is a run id, ``runs:/<run id>``, ``models:/NAME/VERSION`` or ``models:/NAME@alias``; a run given by its id
is reported with the newest version registered from it, if any.
"""

from __future__ import annotations

import base64
import html
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pipelines import storage, tracking
from pipelines.errors import I2IError, RegistryError

# images/<key>+step+<step>+timestamp+<ms>+<uuid>.png (MLflow 3); "%" separators in earlier versions
_IMAGE = re.compile(r"^(?P<key>[^+%]+)[+%]step[+%](?P<step>-?\d+)[+%]timestamp[+%](?P<ts>\d+)[+%][^+%]+\.png$")
CONFIG_ARTIFACTS = ("config.yaml", "config.yml", "config.json")
SECTIONS = (("Losses", lambda k: k.startswith("loss_")),
            ("Validation", lambda k: k.startswith("val_") or k == "objective"),
            ("Throughput", lambda k: k == "images_per_s"))


@dataclass(frozen=True)
class ReportResult:
    out: str
    run_id: str
    model_version: str | None  # NAME/VERSION, when the run is a registered version's
    plots: int
    images: int


@dataclass
class _Image:
    key: str
    step: int
    png: bytes


@dataclass
class _Data:
    run: object  # mlflow.entities.Run
    version: object | None  # mlflow.entities.model_registry.ModelVersion
    histories: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # metric → (step, value) by step
    images: list[_Image] = field(default_factory=list)
    configs: dict[str, str] = field(default_factory=dict)  # artifact name → text


def run_report(target: str, *, out: str | None, mlflow: tracking.MlflowConfig) -> ReportResult:
    """Fetch the run (and version) ``target`` names from MLflow and write the page to ``out`` (default:
    ``report-<run name>.html`` in the current directory; local or object storage)."""
    c = tracking.client(mlflow)
    run, version = _resolve(c, target)
    data = _fetch(c, run, version)
    page, plots = render(data)
    out = out or f"report-{_file_name(_run_name(run))}.html"
    if "://" not in out:  # the summary names the file wherever the command ran
        out = os.path.abspath(out)
    storage.write_bytes(out, page.encode())
    return ReportResult(out=out, run_id=run.info.run_id, plots=plots, images=len(data.images),
                        model_version=f"{version.name}/{version.version}" if version is not None else None)


# --- MLflow -----------------------------------------------------------------------------------------------------
def _resolve(c, target: str):
    """(run, version or None) of a run id, ``runs:/ID``, ``models:/NAME/VERSION`` or ``models:/NAME@alias``."""
    from mlflow.exceptions import MlflowException

    target = target.strip()
    version = None
    if target.startswith("models:/"):
        spec = target[len("models:/"):]
        name, sep, ref = spec.rpartition("@") if "@" in spec else spec.rpartition("/")
        if not name or not ref:
            raise RegistryError(f"{target}: expected models:/NAME/VERSION or models:/NAME@alias")
        try:
            version = c.get_model_version_by_alias(name, ref) if sep == "@" else c.get_model_version(name, ref)
        except MlflowException as err:
            raise RegistryError(f"{target}: no such registered model version ({_first_line(err)})") from None
        if not version.run_id:
            raise RegistryError(f"{target}: version {version.version} was not registered from an MLflow run")
        run_id = version.run_id
    else:
        run_id = target[len("runs:/"):].split("/", 1)[0] if target.startswith("runs:/") else target
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", run_id):
        raise I2IError(f"{target!r} is not a run id, runs:/RUN_ID, models:/NAME/VERSION or models:/NAME@alias")
    try:
        run = c.get_run(run_id)
    except MlflowException as err:
        raise I2IError(f"no MLflow run {run_id} at {storage.redact(c.tracking_uri)} ({_first_line(err)})") from None
    if version is None:
        found = c.search_model_versions(f"run_id={tracking.quote(run_id)}")
        version = max(found, key=lambda v: (v.creation_timestamp or 0, int(v.version))) if found else None
    return run, version


def _first_line(err: Exception) -> str:
    return storage.redact(str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)


def sample_images(c, run_id: str) -> list[tuple[str, int, str]]:
    """(key, step, artifact path) of every image the run logged with ``mlflow.log_image(key=…, step=…)``, by key
    and step (MLflow 3 stores them as ``images/<key>+step+<N>+timestamp+<ms>+<uuid>.png``, plus a ``.webp``)."""
    names = {a.path for a in c.list_artifacts(run_id)}
    found = []
    if "images" in names:
        for a in c.list_artifacts(run_id, "images"):
            m = _IMAGE.match(a.path.rsplit("/", 1)[-1])
            if m and not a.is_dir:
                found.append((m["key"].replace("~", "/").replace("#", "/"), int(m["step"]), a.path))
    return sorted(found, key=lambda f: (f[0], f[1]))


def final_sample_grid(cfg: tracking.MlflowConfig, run_id: str) -> str | None:
    """Where the last sample grid a training run logged is: a local file path when the artifact store is a local
    folder (the embedded default), else its ``runs:/`` URI; None when the run logged none."""
    c = tracking.client(cfg)
    grids = [(step, path) for key, step, path in sample_images(c, run_id) if key == "samples"]
    if not grids:
        return None
    path = max(grids)[1]
    root = c.get_run(run_id).info.artifact_uri
    if root.startswith("file://") or os.path.isabs(root):  # a local store (not mlflow-artifacts:/…, s3://…)
        return os.path.join(root.removeprefix("file://"), path)
    return f"runs:/{run_id}/{path}"


def _fetch(c, run, version) -> _Data:
    data = _Data(run=run, version=version)
    run_id = run.info.run_id
    for key in sorted(run.data.metrics):
        if any(wanted(key) for _, wanted in SECTIONS):
            points = {m.step: m.value for m in sorted(c.get_metric_history(run_id, key), key=lambda m: m.timestamp)}
            data.histories[key] = sorted(points.items())  # a resumed epoch's later value wins
    top = {a.path: a for a in c.list_artifacts(run_id)}
    with tempfile.TemporaryDirectory() as tmp:
        for key, step, path in sample_images(c, run_id):
            with open(c.download_artifacts(run_id, path, tmp), "rb") as f:
                data.images.append(_Image(key, step, f.read()))
        for name in CONFIG_ARTIFACTS:
            if name in top and not top[name].is_dir:
                with open(c.download_artifacts(run_id, name, tmp), encoding="utf-8", errors="replace") as f:
                    data.configs[name] = f.read()
    data.images.sort(key=lambda im: (im.key, im.step))
    return data


def _run_name(run) -> str:
    return run.data.tags.get(tracking.RUN_NAME_TAG) or run.info.run_name or run.info.run_id


def _file_name(name: str) -> str:
    """A run name as a safe file name part: no separators, no leading dot."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:120] or "run"


# --- HTML --------------------------------------------------------------------------------------------------------
def _e(value) -> str:
    """``value`` as HTML text, and without the credentials of any URI in it (``storage.redact``)."""
    return html.escape(storage.redact(str(value)), quote=True)


def _date(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if ms else "-"


def _num(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _table(rows: list[tuple], head: tuple[str, ...], cls: str = "") -> str:
    if not rows:
        return '<p class="none">none</p>'
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def chart(name: str, points: list[tuple[int, float]], width: int = 340, height: int = 190) -> str:
    """An SVG line chart of ``points`` (epoch, value): axes with ticks and labels, a dot per finite value (its
    value as a tooltip). Non-finite values are left out and counted under the chart."""
    finite = [(s, v) for s, v in points if math.isfinite(v)]
    left, right, top, bottom = 58, 12, 22, 34
    pw, ph = width - left - right, height - top - bottom
    if finite:
        xs, ys = [s for s, _ in finite], [v for _, v in finite]
        x0, x1 = (min(xs), max(xs)) if min(xs) < max(xs) else (min(xs) - 0.5, max(xs) + 0.5)
        y0, y1 = min(ys), max(ys)
        pad = (y1 - y0) * 0.08 if y1 > y0 else (abs(y0) * 0.1 or 1.0)
        y0, y1 = y0 - pad, y1 + pad
    else:
        x0, x1, y0, y1 = 0, 1, 0, 1

    def px(s: float) -> float:
        return left + (s - x0) / (x1 - x0) * pw

    def py(v: float) -> float:
        return top + (y1 - v) / (y1 - y0) * ph

    parts = [f'<svg class="plot" data-metric="{_e(name)}" data-points="{len(finite)}" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{_e(name)} per epoch</title>",
             f'<text x="{left + pw / 2:.1f}" y="14" class="t">{_e(name)}</text>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" class="axis"/>',
             f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" class="axis"/>']
    for i in range(5):
        v = y0 + (y1 - y0) * i / 4
        parts.append(f'<line x1="{left - 4}" y1="{py(v):.1f}" x2="{left + pw}" y2="{py(v):.1f}" class="grid"/>'
                     f'<text x="{left - 6}" y="{py(v) + 3:.1f}" class="yl">{v:.3g}</text>')
    steps = sorted({s for s, _ in finite})
    shown = steps if len(steps) <= 8 else steps[:: math.ceil(len(steps) / 6)] + steps[-1:]
    for s in dict.fromkeys(shown):
        parts.append(f'<line x1="{px(s):.1f}" y1="{top + ph}" x2="{px(s):.1f}" y2="{top + ph + 4}" class="axis"/>'
                     f'<text x="{px(s):.1f}" y="{top + ph + 15}" class="xl">{s}</text>')
    parts.append(f'<text x="{left + pw / 2:.1f}" y="{height - 3}" class="xl">epoch</text>')
    if finite:
        d = " ".join(f"{'M' if i == 0 else 'L'}{px(s):.1f} {py(v):.1f}" for i, (s, v) in enumerate(finite))
        parts.append(f'<path d="{d}" class="line"/>')
        if len(finite) <= 80:
            parts += [f'<circle cx="{px(s):.1f}" cy="{py(v):.1f}" r="2.5"><title>epoch {s}: {v:.6g}</title></circle>'
                      for s, v in finite]
    dropped = len(points) - len(finite)
    note = f'<div class="note">{dropped} non-finite value{"s" * (dropped != 1)} left out</div>' if dropped else ""
    return f'<figure>{"".join(parts)}</svg>{note}</figure>'


def _eval_rows(data: _Data) -> tuple[list[tuple], list[tuple]]:
    """(metric rows: name, run's eval_<name>, version's eval.<name>; the version's other eval.* tags)."""
    run_evals = {k[5:]: v for k, v in data.run.data.metrics.items() if k.startswith("eval_")}
    tags = data.version.tags if data.version is not None else {}
    meta = {"dataset", "dataset_id", "split", "fingerprint", "fingerprint_json"}
    version_evals = {k[5:]: v for k, v in tags.items() if k.startswith("eval.") and k[5:] not in meta}
    names = sorted(set(run_evals) | set(version_evals))
    rows = [(n, _num(run_evals.get(n, "-")), version_evals.get(n, "-")) for n in names]
    info = [(k, v) for k, v in sorted(tags.items()) if k.startswith("eval.") and k[5:] in meta]
    info += [(k, v) for k, v in sorted(data.run.data.tags.items()) if k.startswith("eval.") and k not in tags]
    return rows, info


def _shown_size(png: bytes) -> str:
    """``width``/``height`` attributes that show a small grid (32 px tiles) enlarged by a whole factor, up to 8×,
    to about 384 px wide (pixels kept sharp by the CSS); nothing for a grid that is wide already."""
    w, h = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")  # the PNG's IHDR chunk
    factor = min(8, 384 // w) if png[12:16] == b"IHDR" and 0 < w else 1
    return f' width="{w * factor}" height="{h * factor}"' if factor > 1 else ""


def _promotion(version) -> str:
    if version is None:
        return '<p class="decision none">not registered</p>'
    tags = {k: v for k, v in sorted(version.tags.items()) if k.startswith("promotion.")}
    aliases = ", ".join(getattr(version, "aliases", []) or []) or "none"
    head = (f'<p class="decision">{_e(tags.get("promotion.decision", "not judged yet"))}</p>'
            f"<p>{_e(version.name)} version {_e(version.version)} · aliases: {_e(aliases)}</p>")
    if reason := tags.get("promotion.reason"):
        head += f'<p class="reason">{_e(reason)}</p>'
    return head + _table(list(tags.items()), ("tag", "value"))


CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1120px;padding:0 16px;color:#222}
h1{margin-bottom:4px}h2{border-bottom:1px solid #ddd;padding-bottom:2px;margin-top:28px}.meta{color:#555}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ddd;padding:2px 8px;text-align:left;
vertical-align:top;font-variant-numeric:tabular-nums}th{background:#f4f4f4}td{word-break:break-all;max-width:640px}
.plots{display:flex;flex-wrap:wrap;gap:10px}figure{margin:0}.note{font-size:11px;color:#a00}
svg.plot{border:1px solid #eee;background:#fff}svg .axis{stroke:#444}svg .grid{stroke:#eee}
svg .line{fill:none;stroke:#1f6fb4;stroke-width:1.6}svg circle{fill:#1f6fb4}svg text{font-size:10px;fill:#333}
svg .t{font-size:12px;font-weight:600;text-anchor:middle}svg .yl{text-anchor:end}svg .xl{text-anchor:middle}
.samples figure{display:inline-block;margin:0 12px 12px 0;vertical-align:top}.samples img{image-rendering:pixelated;
max-width:100%;border:1px solid #ddd}figcaption{font-size:12px;color:#555}.decision{font-size:18px;font-weight:600}
.none{color:#777}pre{background:#f7f7f7;padding:8px;overflow:auto;max-height:480px}"""


def render(data: _Data) -> tuple[str, int]:
    """The page and the number of charts in it."""
    run, version, tags = data.run, data.version, data.run.data.tags
    name, params = _run_name(run), run.data.params
    model = tags.get("i2i.model") or params.get("model") or "-"
    dataset = tags.get("i2i.dataset") or "-"
    body = [f"<h1>{_e(name)}</h1>",
            f'<p class="meta">model <b>{_e(model)}</b> · dataset <b>{_e(dataset)}</b> · '
            f"{_e(_date(run.info.start_time))} → {_e(_date(run.info.end_time))} · status {_e(run.info.status)} · "
            f"run {_e(run.info.run_id)}"
            + (f" · registered as {_e(version.name)} v{_e(version.version)}" if version is not None else "")
            + "</p>", "<h2>Promotion</h2>", _promotion(version)]
    rows, info = _eval_rows(data)
    body += ["<h2>Evaluation</h2>", _table(rows, ("metric", "run (eval_*)", "version (eval.*)"), "eval")]
    if info:
        body.append(_table(info, ("tag", "value")))
    plots = 0
    for title, wanted in SECTIONS:
        keys = [k for k in data.histories if wanted(k)]
        if keys:
            body += [f"<h2>{_e(title)} per epoch</h2>", '<div class="plots">',
                     *(chart(k, data.histories[k]) for k in keys), "</div>"]
            plots += len(keys)
    body.append("<h2>Samples</h2>")
    if data.images:
        body.append('<div class="samples">')
        body += [f'<figure><img alt="{_e(im.key)} epoch {im.step}"{_shown_size(im.png)} src="data:image/png;'
                 f'base64,{base64.b64encode(im.png).decode()}"><figcaption>{_e(im.key)} · epoch {im.step}'
                 "</figcaption></figure>" for im in data.images]
        body.append("</div>")
    else:
        body.append('<p class="none">the run logged no sample images</p>')
    body += ["<h2>Config</h2>", _table(sorted(params.items()), ("param", "value"), "params")]
    body += [f"<h3>{_e(n)}</h3><pre>{_e(text)}</pre>" for n, text in data.configs.items()]
    last = [(k, _num(v)) for k, v in sorted(run.data.metrics.items())]
    body += ["<h2>Last value of every metric</h2>", _table(last, ("metric", "value"))]
    shown = [(k, v) for k, v in sorted(tags.items()) if not k.startswith("mlflow.")]
    body += ["<h2>Run tags</h2>", _table(shown, ("tag", "value"))]
    body.append(f'<p class="meta">written by i2i report on {_e(_date(_now_ms()))}</p>')
    head = f'<meta charset="utf-8"><title>{_e(name)} — i2i run report</title><style>{CSS}</style>'
    page = f'<!DOCTYPE html>\n<html lang="en"><head>{head}</head>\n<body>\n' + "\n".join(body) + "\n</body></html>\n"
    return page, plots


def _now_ms() -> int:
    return int(datetime.now(tz=timezone.utc).timestamp() * 1000)

