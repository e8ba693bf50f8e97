"""The screening report: one self-contained HTML file (figures inlined as base64 PNG,
no script, no network).

Sections: the summary, the score histogram with the threshold, the most anomalous rows
with their contributing columns highlighted (tables) or a grid of the most anomalous
images with their error maps (images), the mean contribution of each column among the
flagged rows, the training curve, and the model card (detector, parameters, data,
threshold rule).
"""

import base64
import datetime
import html
import io as _io

import numpy as np

#: Rows listed in the report's table of outliers, and images in its grid.
N_ROWS, N_IMAGES = 20, 12


def _png(figure):
    """``<img>`` of a matplotlib figure, inlined as base64 PNG."""
    buffer = _io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def _e(value):
    return html.escape(str(value))


def _cell(value):
    """A table value as text; a missing one as <i>missing</i>."""
    import pandas as pd

    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return "<i>missing</i>"
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return _e(value)


def _table(header, rows, css=None):
    head = "".join(f"<th>{_e(name)}</th>" for name in header)
    body = "".join("<tr>" + "".join(rows_cells) + "</tr>" for rows_cells in rows)
    kind = f' class="{css}"' if css else ""
    return f"<table{kind}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _histogram(result):
    from ..plots import plot_score_histogram

    detector = result.detector
    figure = plot_score_histogram(result.frame["score"].to_numpy(), detector.offset_,
                                  title="score_samples (higher = more normal)")
    figure.set_size_inches(7.5, 3.6)
    return _png(figure)


def _outlier_table(result):
    """The most anomalous rows, each cell shaded by its column's share of the score."""
    frame, data = result.frame, result.data.frame
    top = result.most_anomalous(N_ROWS)
    shares = result.contributions.loc[top.index]
    values = np.clip(shares.to_numpy(dtype=float), 0, None)
    totals = values.sum(axis=1, keepdims=True)
    shares.loc[:, :] = np.divide(values, totals, out=np.zeros_like(values), where=totals > 0)
    columns = [name for name in shares.columns if name in data.columns]
    weight = shares[columns].max(axis=0).sort_values(ascending=False)
    columns = list(weight.index[:25])  # the columns that matter in these rows
    code = [name for name in shares.columns if name not in data.columns]
    header = ["rank", "row", "score", *(["p-value"] if "p_value" in frame else []),
              "top column", *columns, *code]
    rows = []
    for index, row in top.iterrows():
        cells = [f"<td>{int(row['rank'])}</td>", f"<td>{int(row['row'])}</td>",
                 f"<td>{row['score']:.4g}</td>"]
        if "p_value" in frame:
            cells.append(f"<td>{row['p_value']:.4g}</td>")
        cells.append(f"<td><b>{_e(row['top1_column'])}</b> {row['top1_share']:.0%}</td>")
        for name in [*columns, *code]:
            share = float(shares.at[index, name])
            value = data.at[int(row["row"]), name] if name in data.columns else ""
            style = f' style="background: rgba(220, 50, 32, {min(1.0, share):.2f})"' \
                if share >= 0.05 else ""
            title = f' title="{share:.0%} of the anomaly score"'
            cells.append(f"<td{style}{title}>{_cell(value)}</td>")
        rows.append(cells)
    return _table(header, rows)


def _contribution_bars(result):
    """Mean share of each column in the anomaly score of the flagged rows."""
    from matplotlib.figure import Figure

    frame, terms = result.frame, result.contributions
    flagged = frame["label"].to_numpy() == -1
    subset = terms[flagged] if flagged.any() else terms
    values = np.clip(subset.to_numpy(dtype=float), 0, None)
    totals = values.sum(axis=1, keepdims=True)
    shares = np.divide(values, totals, out=np.zeros_like(values), where=totals > 0).mean(axis=0)
    order = np.argsort(shares)[::-1][:20][::-1]
    figure = Figure(figsize=(7.5, 0.9 + 0.25 * order.size), layout="constrained")
    ax = figure.add_subplot()
    ax.barh([str(terms.columns[i]) for i in order], shares[order], color="tab:red")
    ax.set_xlabel(f"mean share of the anomaly score ({'flagged' if flagged.any() else 'all'}"
                  f" rows, {subset.shape[0]})")
    return _png(figure)


def _image_grid(result):
    """The most anomalous images over their error maps."""
    from matplotlib.figure import Figure

    images = result.data.images
    top = result.most_anomalous(N_IMAGES)
    chosen = images[top["row"].to_numpy()]
    errors = result.detector.error_map(chosen)
    n = len(chosen)
    figure = Figure(figsize=(1.3 * n, 3.0), layout="constrained")
    axes = figure.subplots(2, n, squeeze=False)
    for k in range(n):
        picture, error = chosen[k], np.asarray(errors[k])
        picture = picture[0] if picture.ndim == 3 and picture.shape[0] == 1 else picture
        error = error.reshape(picture.shape[-2:]) if error.size == np.prod(
            picture.shape[-2:]) else error.mean(axis=0)
        axes[0, k].imshow(picture if picture.ndim == 2 else picture.transpose(1, 2, 0),
                          cmap="gray")
        axes[0, k].set_title(f"#{k + 1} row {int(top['row'].iloc[k])}", fontsize=7)
        axes[1, k].imshow(error, cmap="inferno")
        for ax in axes[:, k]:
            ax.set_axis_off()
    figure.suptitle("most anomalous images (top) and their squared reconstruction error "
                    "(bottom)", fontsize=9)
    return _png(figure)


def _training_curve(result):
    from ..plots import plot_loss_curves

    detector = result.detector
    figure = plot_loss_curves(detector.history_, best_epoch=getattr(detector, "best_epoch_",
                                                                    None))
    figure.set_size_inches(7.5, 3.4)
    return _png(figure)


def _model_card(result):
    from .. import __version__
    from .fit import threshold_text

    detector, data = result.detector, result.data
    entries = [("detector", type(detector).__name__),
               ("data", f"{data.path.name}: {data.shape_text()}"),
               ("features after encoding", detector.n_features_in_),
               ("threshold rule", threshold_text(detector)),
               ("offset_ (threshold on score_samples)", f"{detector.offset_:.6g}"),
               ("epochs trained", detector.n_iter_),
               ("device", detector.device_),
               ("time", ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())),
               ("aedetect", __version__),
               ("written", datetime.datetime.now(datetime.timezone.utc).strftime(
                   "%Y-%m-%d %H:%M UTC"))]
    if data.kind == "table":
        kinds = result.estimator.steps[0][1].column_kinds_
        counts = {kind: sum(1 for k in kinds.values() if k == kind) for kind in set(kinds.values())}
        entries.insert(2, ("column kinds", ", ".join(f"{n} {k}" for k, n in sorted(
            counts.items()))))
    params = {k: v for k, v in detector.get_params().items() if k != "callbacks"}
    entries.append(("parameters", ", ".join(f"{k}={v!r}" for k, v in params.items())))
    return _table(["", ""], [[f"<th>{_e(k)}</th>", f"<td>{_e(v)}</td>"] for k, v in entries],
                  css="card")


STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.8em;display:block;overflow-x:auto}
td,th{border:1px solid #ddd;padding:2px 6px;text-align:right;white-space:nowrap}
th{background:#f3f3f3}.card td{text-align:left;white-space:normal}.card{display:table}
img{max-width:100%}.note{color:#555;font-size:.9em}"""


def render(result):
    """The report of a screening (:class:`~aedetect.commands.screen.Screening`), as an
    HTML string."""
    frame, data = result.frame, result.data
    flagged = int((frame["label"] == -1).sum())
    from .fit import threshold_text

    parts = [f"<h1>aedetect screening report: {_e(data.path.name)}</h1>",
             f"<p>{_e(data.shape_text())} screened with {type(result.detector).__name__}; "
             f"<b>{flagged} {'rows' if data.kind == 'table' else 'images'} flagged as "
             f"outliers</b> ({flagged / len(frame):.2%}). "
             f"Threshold: {_e(threshold_text(result.detector))}.</p>",
             "<h2>Score distribution</h2>", _histogram(result),
             '<p class="note">Rows left of the threshold (the dashed line, offset_) are '
             "flagged.</p>"]
    if data.kind == "table":
        parts += [f"<h2>The {min(N_ROWS, len(frame))} most anomalous rows</h2>",
                  '<p class="note">Cells are shaded by their column\'s share of the row\'s '
                  "anomaly score (hover for the share); the columns are those that weigh "
                  "most in these rows.</p>", _outlier_table(result),
                  "<h2>Which columns make rows anomalous</h2>", _contribution_bars(result)]
    else:
        parts += ["<h2>The most anomalous images</h2>", _image_grid(result)]
    parts += ["<h2>Training curve</h2>", _training_curve(result),
              "<h2>Model card</h2>", _model_card(result)]
    title = f"aedetect report: {data.path.name}"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{_e(title)}</title><style>{STYLE}</style></head>"
            f"<body>{''.join(parts)}</body></html>\n")


def write_report(result, path):
    """Write the report of ``result`` to ``path`` atomically."""
    from .io import atomic_file

    text = render(result)
    with atomic_file(path) as staging:
        staging.write_text(text, encoding="utf-8")
