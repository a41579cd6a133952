"""`trtq autoquant`: keep INT8 where it is measured to be faster, under an agreement floor."""

from __future__ import annotations

from pathlib import Path

from trtq.errors import TrtqError

PARTS = ("encoder", "decoder")


def _part_of(path: str) -> str:
    found = [p for p in PARTS if p in Path(path).name]
    if len(found) != 1:
        raise TrtqError(f"cannot tell which part {path} profiles: name the files after the "
                        "part (encoder.fp16.profile.json, decoder.int8.profile.json, ...)")
    return found[0]


def profiles_from_args(args) -> dict[str, tuple[str, str]]:
    """{part: (FP16 profile, INT8 profile)} from --profile pairs or a deploy folder."""
    profiles: dict[str, tuple[str, str]] = {}
    for fp16, int8 in args.profile or ():
        part = _part_of(fp16)
        if _part_of(int8) != part:
            raise TrtqError(f"--profile {fp16} {int8}: the two files profile different parts")
        profiles[part] = (fp16, int8)
    if args.profile_dir:
        device = Path(args.profile_dir) / "device"
        for part in PARTS:
            pair = tuple(str(device / f"{part}.{p}.profile.json") for p in ("fp16", "int8"))
            if all(Path(f).is_file() for f in pair):
                profiles.setdefault(part, pair)
        if not profiles:
            raise TrtqError(f"{device} holds no PART.fp16.profile.json + PART.int8.profile.json "
                            "pair; run `trtq deploy` (it profiles every engine) into that folder")
    return profiles


def run(args) -> int:
    from trtq.autoquant.run import REPORT, AutoquantConfig, autoquant
    from trtq.commands._common import require_sam_model

    require_sam_model(args.model, "autoquant")
    cfg = AutoquantConfig(model=args.model, checkpoint=args.checkpoint,
                          calib_data=args.calib_data, split=args.split, out=args.out,
                          min_agreement=args.min_agreement, backend=args.backend,
                          recipe=args.recipe, num_images=args.num_images,
                          held_out=args.held_out, jobs=args.jobs,
                          profiles=profiles_from_args(args), add_back=args.add_back,
                          force=args.force)
    report = autoquant(cfg)
    s = report["summary"]
    width = max(len(r["group"]) for r in report["groups"])
    print(f"{'group':<{width}}  {'alone':>7}  {'gain ms':>8}  decision")
    for row in report["groups"]:
        alone = row["agreement_alone"]
        print(f"{row['group']:<{width}}  {'' if alone is None else f'{alone:.4f}':>7}  "
              f"{row['gain_ms']:>8.2f}  {row['decision']}")
    speed = f"{s['predicted_speedup']:.2f}x" if s["predicted_speedup"] else "n/a"
    print(f"{s['int8_groups']} of {s['groups']} groups INT8: held-out agreement "
          f"{s['held_out_agreement']:.4f} (floor {s['min_agreement']}; all groups "
          f"{s['all_groups_agreement']:.4f}); profiled time {s['baseline_ms']:.1f} ms, "
          f"{s['predicted_saved_ms']:.1f} ms saved ({speed} predicted on {s['backend']})")
    print(f"wrote {Path(args.out)} ({REPORT}, recipe.json, quant_state.pt)")
    return 0
