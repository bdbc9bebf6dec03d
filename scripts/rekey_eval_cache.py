"""One-time migration of `adapix eval` cache files to the per-quality profile fingerprint.

Until session 15 a cached Adapix row was keyed on a hash of ``repr`` of the whole profile, so any
change to a profile, even a new setting at a default that changes nothing, voided all of its
rows. Now the key hashes the profile as it runs at the row's quality
(:meth:`adapix.profiles.Profile.at`, settings at their defaults left out), so that changing,
say, what ``best`` does below lambda 0.027 re-measures only the qualities below it.

This script rewrites rows of the old key into the new one, but only where the profile that
measured them is the profile of today: it runs the code that measured them (a checkout of that
commit, ``--legacy-src``) to get the old key and the old profile's settings, and checks that
today's profile has the same settings (new settings must be at their defaults). Rows of any
other key (another profile version, other weights, another codec) are left as they are.

    git worktree add /tmp/adapix-c7b201d c7b201d
    python scripts/rekey_eval_cache.py --legacy-src /tmp/adapix-c7b201d \\
        results/kodak24-s14/cache/adapix-best.jsonl [...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from adapix.eval.codecs.adapix_codec import AdapixCodec
from adapix.profiles import get_profile

_LEGACY = """
import dataclasses, json, sys
import adapix
from adapix.eval.codecs.adapix_codec import AdapixCodec
from adapix.profiles import get_profile
name = sys.argv[1] or None
codec = AdapixCodec(name)
assert codec.available() is None, codec.available()
print(json.dumps({"file": adapix.__file__, "fingerprint": codec.fingerprint(),
                  "profile": dataclasses.asdict(get_profile(name or "fast"))}))
"""


def legacy(profile: str | None, src: Path) -> dict:
    """The old code's fingerprint of ``profile`` and its profile's settings (asdict)."""
    env = dict(os.environ, PYTHONPATH=str(src / "src"))
    out = subprocess.run([sys.executable, "-c", _LEGACY, profile or ""], env=env, check=True,
                         capture_output=True, text=True, cwd=src)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if not Path(res["file"]).resolve().is_relative_to((src / "src").resolve()):
        raise SystemExit(f"the legacy run imported {res['file']}, not the code in {src}")
    return res


def same_settings(old: object, new: object, default: object) -> bool:
    """Whether ``new`` (today's asdict) equals ``old`` (the legacy asdict, as JSON), fields that
    the old code did not have being at their ``default`` (asdict of a default instance)."""
    if isinstance(new, dict):
        if not isinstance(old, dict):
            return False
        for k, v in new.items():
            d = default.get(k) if isinstance(default, dict) else None
            if k not in old:
                if json.loads(json.dumps(v)) != json.loads(json.dumps(d)):
                    return False
            elif not same_settings(old[k], v, d):
                return False
        return set(old) <= set(new)
    if isinstance(new, (list, tuple)):
        if not isinstance(old, list) or len(old) != len(new):
            return False
        ds = list(default) if isinstance(default, (list, tuple)) else []
        ds += [None] * (len(new) - len(ds))
        return all(same_settings(o, n, d) for o, n, d in zip(old, new, ds))
    return json.loads(json.dumps(new)) == old


def rekey(path: Path, src: Path) -> tuple[int, int]:
    """Rewrites ``path`` (atomically); returns (rows rekeyed, rows left as they were)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    names = {r.get("codec") for r in rows}
    if len(names) != 1 or not str(next(iter(names))).startswith("adapix"):
        raise SystemExit(f"{path}: not the cache of one Adapix codec ({sorted(map(str, names))})")
    name = next(iter(names))
    profile = None if name == "adapix" else name[len("adapix-"):]
    codec = AdapixCodec(profile)
    if codec.available() is not None:
        raise SystemExit(f"{path}: {codec.available()}")
    old = legacy(profile, src)
    prof = get_profile(profile or "fast")
    if not same_settings(old["profile"], dataclasses.asdict(prof), default_settings(prof)):
        raise SystemExit(f"{path}: the profile {prof.name!r} is not what {src} had; rows kept")
    changed = kept = 0
    for r in rows:
        if r.get("fingerprint") == old["fingerprint"]:
            r["fingerprint"] = codec.fingerprint(r["param"])
            changed += 1
        else:
            kept += 1
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, path)
    return changed, kept


def default_settings(prof) -> dict:
    """asdict of the profile with every dataclass inside at its defaults (phases: each phase
    with its own required fields and the rest default), for :func:`same_settings`."""
    from adapix.optimize import GreedySearch, Phase, Preset

    preset = Preset(phases=tuple(Phase(p.name, p.iters, p.lr) for p in prof.preset.phases),
                    greedy=GreedySearch())
    return dataclasses.asdict(dataclasses.replace(prof, preset=preset))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path, help="cache files (cache/adapix-*.jsonl)")
    p.add_argument("--legacy-src", type=Path, required=True,
                   help="a checkout of the commit whose code measured the rows")
    args = p.parse_args(argv)
    for path in args.files:
        changed, kept = rekey(path, args.legacy_src)
        print(f"{path}: {changed} rows rekeyed, {kept} left as they were")
    return 0


if __name__ == "__main__":
    sys.exit(main())
