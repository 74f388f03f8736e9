"""The one price table: every cost figure in the mesh is made here (docs/orchestrator.md, "Cost").

Backends measure and report device seconds and the device class they ran on, never dollars. The Orchestrator
prices each call with `PriceTable.price`, writes that figure back into the call's result, and every other figure
(a job, a workflow step, a shotgun model, a webhook, analytics, an estimate, credits) is a sum or a conversion of
these, so two surfaces can never show two numbers for the same work.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.errors import InvalidArgument
from shared.gen.imagemesh.v1 import common_pb2

# Pixels an estimate assumes when the request gives no size: one megapixel, the size catalogue seconds are for.
_DEFAULT_SIDE = 1024
MEGAPIXEL = 1_000_000


def cents(usd: float) -> int:
    """Whole US cents, rounded to the nearest (the rounding every cents field declares)."""
    return round(usd * 100)


def sum_costs(costs: list[common_pb2.Cost]) -> common_pb2.Cost:
    """Figures already priced, added: the dollars and seconds add up; the class is "mixed" when they differ."""
    classes = {c.device_class for c in costs if c.device_class}
    return common_pb2.Cost(usd=sum(c.usd for c in costs), device_seconds=sum(c.device_seconds for c in costs),
                           device_class=classes.pop() if len(classes) == 1 else ("mixed" if classes else ""))


@dataclass(frozen=True)
class PriceTable:
    """US dollars per measured device second, by device class, with optional per-service overrides."""

    per_second_usd: dict[str, float]
    # service (job kind, e.g. "upscale") -> device class -> price; a missing pair falls back to per_second_usd.
    per_service_usd: dict[str, dict[str, float]] = field(default_factory=dict)
    # Class priced when a backend does not say which one it used (and for estimates).
    default_device_class: str = "cpu"
    # One credit (Image Studio's currency) is this many US dollars.
    usd_per_credit: float = 0.01
    # Catalogue seconds for estimates: "action" or "action:model" -> device seconds per megapixel of output.
    estimate_seconds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings) -> PriceTable:
        return cls(per_second_usd=dict(settings.price_per_second_usd),
                   per_service_usd={k: dict(v) for k, v in settings.service_price_per_second_usd.items()},
                   default_device_class=settings.default_device_class, usd_per_credit=settings.usd_per_credit,
                   estimate_seconds=dict(settings.estimate_seconds_per_megapixel))

    def rate(self, device_class: str, service: str = "") -> float:
        override = self.per_service_usd.get(service, {})
        if device_class in override:
            return override[device_class]
        return self.per_second_usd.get(device_class, 0.0)

    def price(self, device_seconds: float, device_class: str = "", service: str = "") -> common_pb2.Cost:
        device_class = device_class or self.default_device_class
        return common_pb2.Cost(usd=device_seconds * self.rate(device_class, service),
                               device_seconds=device_seconds, device_class=device_class)

    def reprice(self, reported: common_pb2.Cost, service: str = "", fallback_seconds: float = 0.0) -> common_pb2.Cost:
        """A backend's report (seconds and class; any dollars in it are ignored), priced; written back in place
        so the result a client reads carries the same figure as the job."""
        priced = self.price(reported.device_seconds or fallback_seconds, reported.device_class, service)
        reported.CopyFrom(priced)
        return priced

    def credits(self, usd: float) -> float:
        return usd / self.usd_per_credit

    def estimate(self, action: str, model_id: str = "", width: int = 0, height: int = 0,
                 count: int = 0) -> common_pb2.Cost:
        """Catalogue seconds per megapixel x megapixels x count, priced like finished work of that action."""
        per_mp = self.estimate_seconds.get(f"{action}:{model_id}") if model_id else None
        if per_mp is None:
            per_mp = self.estimate_seconds.get(action)
        if per_mp is None:
            raise InvalidArgument(f"no cost estimate for action {action!r}; known: {sorted(self.estimate_seconds)}",
                                  field="action", supported=sorted(self.estimate_seconds))
        if width < 0 or height < 0 or count < 0:
            raise InvalidArgument("width, height and count must be >= 0", field="width")
        megapixels = (width or _DEFAULT_SIDE) * (height or _DEFAULT_SIDE) / MEGAPIXEL
        return self.price(per_mp * megapixels * (count or 1), service=action)
