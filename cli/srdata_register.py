"""`srdata register-subpixel STORE` (logic in `srcaco2.srdata.registration.subpixel`)."""

from __future__ import annotations

import click

__all__ = ["register_subpixel"]


def _split_list(value: tuple[str, ...]) -> list[str]:
    return [v.strip() for item in value for v in item.split(",") if v.strip()]


def _scales(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list[int] | None:
    out = _split_list(value)
    bad = [s for s in out if not s.isdigit()]
    if bad:
        raise click.BadParameter(f"scales are integers (2, 4, 8), got {bad}")
    return [int(s) for s in out] or None


@click.command("register-subpixel")
@click.argument("store")
@click.option(
    "--split", "splits", multiple=True, help="Splits, e.g. test or val,test (default val,test: what fit "
    "validates on and eval scores).",
)  # fmt: skip
@click.option("--marker", "markers", multiple=True, help="Markers, e.g. CELL2 (default all of the store's).")
@click.option(
    "--scale", "scales", multiple=True, callback=_scales, help="Scales, e.g. 8 or 4,8 (default all)."
)
@click.option("--workers", type=click.IntRange(1), help="Threads running TV-L1 (default: all cores).")
@click.option("--overwrite", is_flag=True, help="Re-estimate entries already in the column.")
def register_subpixel(store, splits, markers, scales, workers, overwrite) -> None:
    """Estimate the unrounded registration shifts of STORE's windows (beyond the paper).

    The same TV-L1 registration as the build, per window, marker and scale, kept as the mean flow
    in HR px (float) in the index column shift_subpixel; the integer shift the paper applies is
    left as it is. `srtrain eval --alignment subpixel`, `eval-runs --alignment subpixel` and fit's
    eval.alignment=subpixel need it for the windows they score. Entries already estimated are kept
    (run it again after an interruption); one TV-L1 per window × marker × scale.
    """
    import sys

    from tqdm import tqdm

    from srcaco2.srdata.lease import LeaseLostError
    from srcaco2.srdata.registration.subpixel import write_subpixel_shifts
    from srcaco2.srdata.schema import StoreFormatError

    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(unit="window", file=sys.stderr, disable=None, desc="register-subpixel", total=total)
        bar.update(done - bar.n)

    try:
        names = [m.upper() for m in _split_list(markers)] or None
        rep = write_subpixel_shifts(
            store, splits=_split_list(splits) or None, markers=names, scales=scales, overwrite=overwrite,
            workers=workers, progress=progress,
        )  # fmt: skip
    except (StoreFormatError, LeaseLostError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if bar is not None:
            bar.close()
    click.echo(
        f"{store}: sub-pixel shifts of {rep.windows} windows: {rep.estimated} TV-L1 estimates run, "
        f"{rep.kept} kept (index/shift_subpixel)"
    )
