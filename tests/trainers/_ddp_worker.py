"""Run by `test_ddp.py` under ``torchrun --nproc_per_node 2``: train, then save this rank's weights."""

from __future__ import annotations

import json
import os
import sys

import torch


def main() -> None:
    store, out, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    torch.set_num_threads(1)
    from srcaco2.trainers.config import apply_overrides
    from srcaco2.trainers.fit import fit
    from srcaco2.trainers.recipes import recipe_config

    cfg = apply_overrides(recipe_config("vdsr", 4, "CELL2", store=store), overrides)
    res = fit(cfg, out, device="cpu")
    rank = os.environ["RANK"]
    torch.save(
        {k: v.detach().clone() for k, v in res.model.state_dict().items()}, f"{out}/rank{rank}.weights"
    )
    torch.save(res.losses, f"{out}/rank{rank}.losses")


if __name__ == "__main__":
    main()
