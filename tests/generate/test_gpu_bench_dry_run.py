"""bench/gpu_generate.py --dry-run, as CI runs it: every full-size config built on the meta device with its
parameter count within 3% of its model card, FLOPs of one full-size step counted, and one real step (and VAE
decode) of each family's scaled-down config through the benchmark's own code, on CPU."""

from __future__ import annotations

import json

from bench import gpu_generate


def test_dry_run_checks_every_family(tmp_path):
    out = tmp_path / "dry_run.json"
    assert gpu_generate.main(["--dry-run", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    checks = {check["name"]: check for check in report["checks"]}
    assert report["ok"] is True and all(check["ok"] for check in checks.values()), \
        [c for c in checks.values() if not c["ok"]]
    # The denoisers the issue names, against their cards: ~0.86 B, ~2.6 B, ~12 B.
    for family, card in (("sd15", 0.86e9), ("sdxl", 2.6e9), ("flux", 12e9)):
        count = checks[f"params: {family} denoiser"]["value"]
        assert abs(count - card) / card <= 0.03, (family, count)
        assert checks[f"flops: {family} step, batch 1"]["value"] > 0
        assert checks[f"step: {family} scaled down"]["ok"] and checks[f"decode: {family} scaled down"]["ok"]
    # A full SDXL step costs more than an SD 1.5 one, and FLUX more than both.
    flops = [checks[f"flops: {f} step, batch 1"]["value"] for f in ("sd15", "sdxl", "flux")]
    assert flops == sorted(flops)


def test_peak_flops_table_knows_the_common_gpus():
    assert gpu_generate.peak_flops("NVIDIA H200") == gpu_generate.peak_flops("NVIDIA H100 80GB HBM3") == 989.4e12
    assert gpu_generate.peak_flops("NVIDIA H100 PCIe") == 756.5e12
    assert gpu_generate.peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert gpu_generate.peak_flops("NVIDIA L40S") == 362.05e12 and gpu_generate.peak_flops("NVIDIA L4") == 121e12
    assert gpu_generate.peak_flops("Some Future GPU") is None
