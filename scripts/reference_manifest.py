"""Record the reference trainer's networks as data: state-dict keys, shapes and dtypes, output geometry.

    python scripts/reference_manifest.py --reference /tmp/refscratch/ref/pytorch-segmentation-rankseg \\
        --commit 9547cf9487a4e1407b04a6bbc0ff9b2337e6be67 --python /tmp/refscratch/venv/bin/python --check-ours

``--reference`` is a checkout of the JMLR authors' fork of pytorch-segmentation (GitHub statmlben/rankseg,
folder ``pytorch-segmentation-rankseg/``). For every architecture of the paper (PSPNet, DeepLab, FCN8, with
the backbones of the fork's config files) and every class count (19 Cityscapes, 21 VOC, 2 Kvasir-SEG) a child
process started in that folder with ``--python`` (an environment that can import the reference code: it needs
``tensorboard``, ``cv2`` and ``scipy``) imports the reference ``models`` package, builds the network with
``pretrained=False`` and writes its ``state_dict()`` keys, shapes and dtypes and its output shapes in eval and
training mode. ``--check-ours`` also gives the child's network random BatchNorm statistics, saves its weights
and eval-mode output on a fixed input, and loads them into :mod:`rankseg.models.reference`'s network (keys
prefixed with ``module.`` as in the checkpoints) to compare the outputs; the largest difference is recorded.

One JSON per (architecture, class count) goes to ``--out`` (``tests/data/reference_manifests``), with the
source repository, commit, git blob hashes of the files read, the command and the environment. Nothing is
downloaded. Never imported by the tests and not run by ``make test``: the reference code is not in this
repository.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# reference arch.type -> (arch.args as the fork's config files give them, our config, our class)
ARCHS = {
    "PSPNet": ({"backbone": "resnet50"}, "ref_pspnet", "ReferencePSPNet"),
    "DeepLab": ({"backbone": "resnet101"}, "ref_deeplabv3plus", "ReferenceDeepLabV3Plus"),
    "FCN8": ({"backbone": "resnet101"}, "ref_fcn8", "ReferenceFCN8"),
}
CLASS_COUNTS = {19: "Cityscapes", 21: "PASCAL VOC 2012", 2: "Kvasir-SEG"}
FILES_READ = [
    "models/__init__.py",
    "models/pspnet.py",
    "models/resnet.py",
    "models/deeplabv3_plus.py",
    "models/fcn.py",
    "base/base_model.py",
    "base/base_trainer.py",
    "utils/helpers.py",
    "config.json",
    "config_cityscales.json",
    "config_voc.json",
    "config_kvasir.json",
]
EVAL_INPUT = (1, 3, 65, 97)
TRAIN_INPUT = (2, 3, 65, 97)  # BatchNorm after 1x1 pooling needs two samples in training mode

# Runs inside the reference folder; argv[1] is a JSON job. Only the reference's own code builds the network.
CHILD = r"""
import json, sys, warnings
import torch
warnings.filterwarnings("ignore")
sys.path.insert(0, ".")
job = json.loads(sys.argv[1])
import models
torch.manual_seed(0)
net = getattr(models, job["type"])(job["num_classes"], pretrained=False, **job["args"])
initial = net.state_dict()
out = {"state_dict": [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in initial.items()]}
with torch.no_grad():
    gen = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # statistics that make a wrong BatchNorm mapping visible
            m.running_mean.normal_(0, 0.1, generator=gen)
            m.running_var.uniform_(0.5, 1.5, generator=gen)
            m.weight.uniform_(0.5, 1.5, generator=gen)
            m.bias.normal_(0, 0.1, generator=gen)
    x = torch.randn(*job["eval_input"], generator=gen)
    net.eval()
    y = net(x)
    out["eval_output"] = list(y.shape)
    state = {k: v.clone() for k, v in net.state_dict().items()}  # before training mode moves the statistics
    net.train()
    t = net(torch.randn(*job["train_input"], generator=gen))
    out["train_outputs"] = [list(o.shape) for o in (t if isinstance(t, tuple) else (t,))]
    if job.get("dump"):
        torch.save({"state_dict": state, "input": x, "output": y}, job["dump"])
print(json.dumps(out))
"""


def git_blob_sha(path: Path) -> str:
    """The git object id of a file's content (``git hash-object``), so a manifest names file versions."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def run_child(python: str, reference: Path, job: dict) -> dict:
    proc = subprocess.run(
        [python, "-c", CHILD, json.dumps(job)], cwd=reference, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"reference build failed for {job['type']} ({job['num_classes']} classes):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_ours(class_name: str, num_classes: int, dump: Path) -> dict:
    """Load the reference network's weights into ours and compare eval-mode outputs on the same input."""
    import torch

    from rankseg.models import reference

    saved = torch.load(dump, map_location="cpu", weights_only=True)
    torch.manual_seed(0)
    net = getattr(reference, class_name)(num_classes).eval()
    reference.load_reference_state_dict(net, {"module." + k: v for k, v in saved["state_dict"].items()})
    with torch.no_grad():
        ours = net(saved["input"])
    diff = (ours - saved["output"]).abs().max().item()
    return {
        "class": f"rankseg.models.{class_name}",
        "max_abs_diff": diff,
        "output_abs_max": saved["output"].abs().max().item(),
    }


def _dumps(manifest: dict) -> str:
    """Indented JSON with one state-dict entry per line (diffable, a few kB per manifest)."""
    entries = manifest.pop("state_dict")
    head = json.dumps(manifest, indent=1)[:-2]
    lines = ",\n  ".join(json.dumps(e) for e in entries)
    return f'{head},\n "state_dict": [\n  {lines}\n ]\n}}\n'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", type=Path, required=True, help="folder pytorch-segmentation-rankseg/")
    parser.add_argument("--repo", default="statmlben/rankseg", help="GitHub repository the folder comes from")
    parser.add_argument("--subdir", default="pytorch-segmentation-rankseg", help="its path in that repository")
    parser.add_argument("--commit", required=True, help="commit of --repo that the files were taken from")
    parser.add_argument("--python", default=sys.executable, help="interpreter that can import the reference code")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "tests" / "data" / "reference_manifests")
    parser.add_argument("--classes", type=int, nargs="+", default=list(CLASS_COUNTS))
    parser.add_argument("--check-ours", action="store_true", help="compare our networks' outputs (see above)")
    parser.add_argument("--note", action="append", default=[], help="extra note for every manifest")
    args = parser.parse_args()

    reference = args.reference.resolve()
    env = json.loads(
        subprocess.run(
            [
                args.python,
                "-c",
                "import json,sys,torch,torchvision; print(json.dumps({'python': sys.version.split()[0],"
                " 'torch': torch.__version__, 'torchvision': torchvision.__version__}))",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    env["platform"] = platform.platform()
    python = Path(sys.executable)
    if python.is_relative_to(Path.cwd()):
        python = python.relative_to(Path.cwd())
    command = shlex.join([str(python), *sys.argv])
    args.out.mkdir(parents=True, exist_ok=True)
    for arch, (arch_args, config, class_name) in ARCHS.items():
        for num_classes in args.classes:
            with tempfile.TemporaryDirectory() as tmp:
                dump = Path(tmp) / "net.pt"
                job = {
                    "type": arch,
                    "args": arch_args,
                    "num_classes": num_classes,
                    "eval_input": EVAL_INPUT,
                    "train_input": TRAIN_INPUT,
                    "dump": str(dump) if args.check_ours else None,
                }
                built = run_child(args.python, reference, job)
                parity = check_ours(class_name, num_classes, dump) if args.check_ours else None
            manifest = {
                "source": {
                    "repo": args.repo,
                    "commit": args.commit,
                    "subdir": args.subdir,
                    "files": {f: git_blob_sha(reference / f) for f in FILES_READ if (reference / f).is_file()},
                },
                "arch": {"type": arch, "args": {**arch_args, "pretrained": False}},
                "num_classes": num_classes,
                "dataset": CLASS_COUNTS.get(num_classes, "?"),
                "our_config": config,
                "command": command,
                "environment": env,
                "notes": [
                    "state_dict is the reference network's own state_dict(); checkpoints saved by the reference "
                    "trainer wrap it in torch.nn.DataParallel, so their keys carry a 'module.' prefix.",
                    "built with pretrained=False; the reference code ran unmodified (torchvision accepts the "
                    "positional 'pretrained' with a deprecation warning). With pretrained=True the keys and "
                    "shapes are the same (DeepLab's layer0 is then torchvision's conv1/bn1/relu/maxpool).",
                    "the child's BatchNorm statistics and affine parameters were randomised before the forward "
                    "passes (seeded), so forward_parity also checks the BatchNorm mapping.",
                    *args.note,
                ],
                "geometry": {
                    "eval_input": list(EVAL_INPUT),
                    "eval_output": built["eval_output"],
                    "train_input": list(TRAIN_INPUT),
                    "train_outputs": built["train_outputs"],
                },
                "forward_parity": parity,
                "state_dict": built["state_dict"],
            }
            path = args.out / f"{arch.lower()}_{num_classes}.json"
            path.write_text(_dumps(manifest))
            extra = f", max |ours - reference| = {parity['max_abs_diff']:.3g}" if parity else ""
            print(
                f"{path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}: "
                f"{len(built['state_dict'])} entries{extra}"
            )


if __name__ == "__main__":
    main()
