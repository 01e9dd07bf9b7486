"""Logging set-up: text or JSON lines, per-logger levels, a rotating file in the home.

Every record gets the node's name and, when a consensus driver is attached,
the height and view it is deciding (``ContextFilter``: two attribute reads
per record, no locking: the driver lives on the same loop as most loggers,
and a slightly stale height from the p2p thread is harmless).  A ``peer``
passed with ``extra={"peer": ...}`` is kept as its own field.

Secrets never reach a log: nothing here formats config or keys, and the
callers log addresses and peer ids, never seeds, tokens or passwords
(tests/test_logs.py checks a running node's file).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from node.config import Home, NodeConfig

ROOT_LOGGER = "qenex"
_OWN_HANDLER = "_qenex_handler"  # marks handlers configure_logging installed, so a second call replaces them

# Attributes every LogRecord has; anything else on a record came from extra=.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class ContextFilter(logging.Filter):
    """Adds ``node``, ``height`` and ``view`` to every record (None when unknown)."""

    def __init__(self, node_name: str) -> None:
        super().__init__()
        self.node_name = node_name
        self.context: Callable[[], tuple[int | None, int | None]] = lambda: (None, None)

    def filter(self, record: logging.LogRecord) -> bool:
        record.node = self.node_name
        if not hasattr(record, "height"):
            record.height, record.view = self.context()
        if not hasattr(record, "peer"):
            record.peer = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, node, msg, height, view, peer, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "node": getattr(record, "node", None),
            "msg": record.getMessage(),
        }
        for key in ("height", "view", "peer"):
            value = getattr(record, key, None)
            if value is not None:
                out[key] = value
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out and key not in ("node", "height", "view", "peer"):
                out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(node)s %(levelname)s %(name)s: %(message)s%(context)s")

    def format(self, record: logging.LogRecord) -> str:
        parts = [f"{k}={getattr(record, k)}" for k in ("height", "view", "peer") if getattr(record, k, None) is not None]
        record.context = f" [{' '.join(parts)}]" if parts else ""
        return super().format(record)


def configure_logging(config: NodeConfig, home: Home | None, *, stream: Any = None) -> ContextFilter:
    """Install the node's handlers on the root logger (stderr, and the
    rotating file when configured); returns the filter whose ``context`` the
    runtime points at the driver."""
    section = config.log
    formatter: logging.Formatter = JsonFormatter() if section.format == "json" else TextFormatter()
    context = ContextFilter(config.name)
    handlers: list[logging.Handler] = [logging.StreamHandler(stream)]
    if section.file and home is not None:
        path = Path(section.file)
        path = path if path.is_absolute() else home.root / path
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(
            path, maxBytes=section.max_bytes, backupCount=section.backups, encoding="utf-8"))
    remove_handlers()
    root = logging.getLogger()
    for handler in handlers:
        setattr(handler, _OWN_HANDLER, True)
        handler.setFormatter(formatter)
        handler.addFilter(context)
        root.addHandler(handler)
    root.setLevel(getattr(logging, (section.level or config.log_level).upper()))
    for name, level in section.levels:
        logging.getLogger(name).setLevel(getattr(logging, level.upper()))
    return context


def remove_handlers() -> None:
    """Take down the handlers configure_logging installed (a test, or a second configure)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OWN_HANDLER, False)]:
        root.removeHandler(old)
        old.close()


def log_file(config: NodeConfig, home: Home) -> Path | None:
    if not config.log.file:
        return None
    path = Path(config.log.file)
    return path if path.is_absolute() else home.root / path
