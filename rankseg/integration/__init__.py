"""Apply RankSEG to the outputs of third-party segmentation models.

* :mod:`rankseg.integration.transformers`: Hugging Face semantic segmentation outputs (dense logits,
  MaskFormer/Mask2Former query outputs, DETR-style masks): ``restore_semantic_probs`` and ``postprocess``.
* :mod:`rankseg.integration.sam`: the SAM family (``Sam1`` for SAM/SAM-HQ, ``Sam2``, ``Sam3``).

Same API and behaviour as ``rankseg.integration`` of the PyPI release 0.0.8. Neither module imports
``transformers``: outputs are recognised by field and class names, so any object with the right fields works.
"""

from rankseg.integration import sam, transformers

__all__ = ["sam", "transformers"]
