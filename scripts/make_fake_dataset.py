"""Write a tiny dataset tree in the real on-disk format of one of the datasets (Cityscapes, VOC, ADE20K, CT, ...).

Useful to try the loaders and entrypoints without the real data:

    python scripts/make_fake_dataset.py voc2012 /tmp/fake_voc
    python evaluate.py dataset=voc2012 dataset.root=/tmp/fake_voc ...

FORMAT is one of cityscapes, voc2012, kvasir_seg, ade20k, voc2012_aug, lits, kits; OUT is the dataset root
to create. For example, a LiTS tree of five 32 x 32 x 6 volumes:

    python scripts/make_fake_dataset.py lits /tmp/fake_lits
    python train.py dataset=lits dataset.root=/tmp/fake_lits dataset.num_cases=5 ...
"""

from __future__ import annotations

import argparse

from rankseg.data.fake import FAKE_FORMATS, make_fake_dataset


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "format", choices=FAKE_FORMATS, metavar="FORMAT", help=f"one of {', '.join(FAKE_FORMATS)}"
    )
    parser.add_argument("out", metavar="OUT", help="dataset root to create (pass it as dataset.root=OUT)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random content")
    args = parser.parse_args(argv)
    root = make_fake_dataset(args.format, args.out, seed=args.seed)
    print(f"wrote a fake {args.format} tree to {root}; use dataset={args.format} dataset.root={root}")


if __name__ == "__main__":
    main()
