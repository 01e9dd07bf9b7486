"""``qenexd risk``: train, evaluate, score, and manage versions of the mempool risk model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cli.admin import DEFAULT_ADMIN_URL, TOKEN_ENV, admin_call, feedback_params
from cli.common import CLIError, emit, handle_errors, home_option, json_option, resolve_key, rpc_option
from cli.tx import fee_units
from node import txbuild
from node.client import Client

model_option = click.option(
    "--model", "model_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
    help="Model version directory (as [risk] model_dir).",
)


@click.group()
def risk() -> None:
    """The mempool risk model: train, eval, score, versions, rollback, restore, feedback."""


@risk.command()
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Model version directory; the new model becomes its current version.")
@click.option("--seed", default=0, show_default=True, help="Seed of the synthetic training data and weights.")
@click.option("--accounts", default=200, show_default=True, type=click.IntRange(20, 100_000))
@click.option("--blocks", default=1500, show_default=True, type=click.IntRange(100, 1_000_000))
@click.option("--epochs", default=25, show_default=True, type=click.IntRange(1, 1000))
@click.option("--review", default=0.5, show_default=True, type=click.FloatRange(0, 1))
@click.option("--reject", default=0.9, show_default=True, type=click.FloatRange(0, 1))
@json_option
@handle_errors
def train(out: Path, seed: int, accounts: int, blocks: int, epochs: int, review: float, reject: float,
          as_json: bool) -> None:
    """Train on seeded synthetic histories and save a new model version."""
    from node.risk.evaluate import render_table
    from node.risk.store import ModelStore
    from node.risk.train import train_to_store

    if review > reject:
        raise CLIError(f"--review {review} is above --reject {reject}")
    version, report = train_to_store(out, seed=seed, accounts=accounts, blocks=blocks, epochs=epochs,
                                     review=review, reject=reject)
    training = ModelStore(out).load(version).meta["training"]
    path = ModelStore(out).path(version)
    if as_json:
        emit({"version": version, "path": str(path), "training": training, "held_out": report}, True)
        return
    click.echo(f"model v{version} written to {path} ({training['samples']} samples, "
               f"{training['positives']} fraud, {training['samples_per_second']} samples/s, {training['seconds']} s)")
    click.echo(render_table(report))


@risk.command("eval")
@model_option
@click.option("--version", "version", default=None, type=int, help="Version to evaluate (default: current).")
@click.option("--seed", default=None, type=int, help="First held-out data seed (default: training seed + 1000).")
@click.option("--review", default=None, type=click.FloatRange(0, 1), help="Review threshold (default: the model's).")
@click.option("--reject", default=None, type=click.FloatRange(0, 1), help="Reject threshold (default: the model's).")
@click.option("--lopo/--no-lopo", default=True, show_default=True,
              help="Leave-one-pattern-out: retrain without each fraud pattern (5 trainings).")
@click.option("--out", "json_out", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report as JSON here (default: MODEL/eval-vN.json); ROC and PR PNGs beside it.")
@json_option
@handle_errors
def evaluate_cmd(model_dir: Path, version: int | None, seed: int | None, review: float | None,
                 reject: float | None, lopo: bool, json_out: Path | None, as_json: bool) -> None:
    """Held-out report: per-pattern recall, false positives, calibration, fee ablation, leave-one-pattern-out, baselines."""
    from node.risk.train import leave_one_pattern_out
    from node.risk.evaluate import (best_amount_threshold, best_share_threshold, evaluate,
                                    render_table, write_plots)
    from node.risk.store import ModelStore
    from node.risk.synth import generate
    from node.risk.train import HELD_OUT_OFFSET, POPULATIONS, calibration_seeds, populations, training_seeds

    model = ModelStore(model_dir).load(version)
    data = model.meta.get("data", {})
    train_seed = int(data.get("seed", 0))
    accounts, blocks = int(data.get("accounts", 200)), int(data.get("blocks", 1500))
    n_pop = int(data.get("populations", POPULATIONS))
    thresholds = dict(model.meta.get("thresholds", {}))
    if review is not None:
        thresholds["review"] = review
    if reject is not None:
        thresholds["reject"] = reject
    model.meta["thresholds"] = thresholds
    first = train_seed + HELD_OUT_OFFSET if seed is None else seed
    held_seeds = [first + k for k in range(max(n_pop, 3))]
    train = populations(training_seeds(train_seed, n_pop), accounts, blocks)
    held = populations(held_seeds, accounts, blocks)
    report = evaluate(model, held, best_amount_threshold(train), best_share_threshold(train))
    report["held_out_seeds"] = held_seeds
    if lopo:
        training = model.meta.get("training", {})
        calibration = populations(calibration_seeds(train_seed), accounts, blocks)
        report["leave_one_pattern_out"] = leave_one_pattern_out(
            train, calibration, held, seed=train_seed, epochs=int(training.get("epochs", 25)), trees=100,
            review=thresholds.get("review", 0.5), reject=thresholds.get("reject", 0.9))
    json_out = json_out or model_dir / f"eval-v{model.version:04d}.json"
    json_out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    plots = write_plots(report, json_out.parent, json_out.stem)
    if as_json:
        emit(report, True)
    else:
        click.echo(render_table(report))
        click.echo(f"report written to {json_out}")
        click.echo(plots if isinstance(plots, str) else "plots: " + ", ".join(str(p) for p in plots))


@risk.command()
@home_option
@rpc_option
@click.option("--raw", default=None, help="A signed transaction (0x-hex) to score.")
@click.option("--from", "sender", default=None, help="Or build a transfer: key name or key file ...")
@click.option("--to", "to", default=None, help="... receiver address (qnx1...) ...")
@click.option("--amount", default=None, help="... amount in whole units ...")
@click.option("--token", default="QNX", show_default=True, help="... and token.")
@click.option("--fee", default=None, help="Fee in QNX base units (default: gas x min gas price).")
@json_option
@handle_errors
def score(home: Path, rpc: str, raw: str | None, sender: str | None, to: str | None, amount: str | None,
          token: str, fee: str | None, as_json: bool) -> None:
    """Score one transaction on a node (qenex_riskScore) without submitting it."""
    client = Client(rpc)
    if raw is None:
        if not (sender and to and amount):
            raise CLIError("give --raw, or --from, --to and --amount to build a transfer")
        txbuild.address(to, "--to")
        key = resolve_key(sender, home)
        stx = client.sign(key, txbuild.transfer(to, client.units(token, amount), token), fee=fee_units(fee))
        raw = "0x" + stx.encode().hex()
    out = client.risk_score(raw)

    def human(r: dict[str, Any]) -> str:
        if not r.get("scored", True):
            return f"{r['hash']}: admit (this kind of transaction is not scored)"
        reasons = ", ".join(f"{f['feature']}={f['value']}" for f in r["top_features"]) or "-"
        rule = f"rule {r['rule']}; " if r.get("rule") else ""  # node.risk.policy: a drain, and its signals
        return (f"{r['hash']}: {r['decision']} ({rule}score {r['score']:.4f}; mlp {r['mlp']:.4f}, anomaly "
                f"{r['anomaly']:.4f}; model v{r['model_version']}; reasons: {reasons})")

    emit(out, as_json, human)


@risk.command()
@model_option
@json_option
@handle_errors
def versions(model_dir: Path, as_json: bool) -> None:
    """List kept model versions and the current one."""
    from node.risk.store import ModelStore

    store = ModelStore(model_dir)
    rows = []
    current = store.current_version()
    for v in store.versions():
        meta = json.loads(store.path(v).with_suffix(".json").read_text()) if store.path(v).with_suffix(".json").exists() else {}
        rows.append({"version": v, "current": v == current, "parent": meta.get("parent_version"),
                     "feedback_updates": len(meta.get("feedback", []))})
    emit({"current": current, "versions": rows}, as_json,
         lambda d: "\n".join(f"{'*' if r['current'] else ' '} v{r['version']}"
                             f"{'' if r['parent'] is None else f' (from v' + str(r['parent']) + ')'}"
                             for r in d["versions"]))


@risk.command()
@model_option
@handle_errors
def rollback(model_dir: Path) -> None:
    """Make the previous version current (a running node: use the admin risk_rollback)."""
    from node.risk.store import ModelStore

    click.echo(f"current version is now v{ModelStore(model_dir).rollback()}")


@risk.command()
@model_option
@click.option("--version", "version", required=True, type=int)
@handle_errors
def restore(model_dir: Path, version: int) -> None:
    """Make any kept version current."""
    from node.risk.store import ModelStore

    store = ModelStore(model_dir)
    store.load(version)  # refuse to point CURRENT at a corrupt file
    store.set_current(version)
    click.echo(f"current version is now v{version}")


@risk.command()
@click.option("--admin", "admin_url", default=DEFAULT_ADMIN_URL, show_default=True,
              envvar=["QENEX_ADMIN", "QENEX_RISK_ADMIN"], help="Admin API URL of the node ([admin] host/port).")
@click.option("--token", required=True, envvar=[TOKEN_ENV, "QENEX_RISK_TOKEN"],
              help=f"The [admin] token (env {TOKEN_ENV}).")
@click.option("--otp", required=True, help="The current TOTP code (`qenexd admin enroll`).")
@click.option("--hash", "tx_hash", default=None, help="A transaction the node has seen ...")
@click.option("--raw", default=None, help="... or a signed transaction (0x-hex).")
@click.option("--label", required=True, type=click.Choice(["fraud", "legit"]))
@click.option("--steps", default=30, show_default=True, type=click.IntRange(1, 500))
@json_option
@handle_errors
def feedback(admin_url: str, token: str, otp: str, tx_hash: str | None, raw: str | None, label: str, steps: int,
             as_json: bool) -> None:
    """Send labelled feedback to a node's admin API (as `qenexd admin risk-feedback`)."""
    emit(admin_call(admin_url, token, "risk_feedback", feedback_params(tx_hash, raw, label, steps), otp), as_json)


@risk.command("market-train")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Model file to write (as [risk] market_model).")
@click.option("--seed", default=0, show_default=True)
@click.option("--series", default=6, show_default=True, type=click.IntRange(1, 1000))
@click.option("--length", default=1500, show_default=True, type=click.IntRange(200, 10**6))
@click.option("--epochs", default=15, show_default=True, type=click.IntRange(1, 1000))
@json_option
@handle_errors
def market_train(out: Path, seed: int, series: int, length: int, epochs: int, as_json: bool) -> None:
    """Train the pool price-direction predictor on seeded synthetic price series; print the held-out comparison."""
    from node.risk.market import render_market, train_market

    report = train_market(out, seed=seed, series=series, length=length, epochs=epochs)
    if as_json:
        emit({"path": str(out), "held_out": report}, True)
    else:
        click.echo(f"market model written to {out}")
        click.echo(render_market(report))


@risk.command("market-eval")
@click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--seed", default=None, type=int, help="Training seed (held-out series are seed+1000...).")
@json_option
@handle_errors
def market_eval(model_path: Path, seed: int | None, as_json: bool) -> None:
    """Held-out accuracy / log loss / ROC-AUC of the predictor against the naive baselines."""
    from node.risk.market import MarketModel, evaluate_market, render_market

    model = MarketModel.load(model_path)
    training = model.meta.get("training", {})
    report = evaluate_market(model, seed=int(training.get("seed", 0)) if seed is None else seed,
                             series=int(training.get("series", 6)), length=int(training.get("length", 1500)))
    emit(report, as_json, render_market)
