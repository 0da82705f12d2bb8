"""Frame quality as numbers: per-frame metrics in status.json and ``metrics.jsonl`` (a service)."""

from dream_window.quality.service import METRICS_LOG, QualityService
from dream_window.quality.tracker import QualityTracker

__all__ = ["METRICS_LOG", "QualityService", "QualityTracker"]
