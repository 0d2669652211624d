"""Training losses of the RankSEG experiments (paper §4), all called as ``loss(logits, target)``.

``logits`` has shape (B, C, H, W); ``target`` is an int64 label map (B, H, W) where 255 marks unlabelled
pixels. Cross-entropy and Lovasz-Softmax come straight from torch and smp (see ``configs/loss/``); the others
are here because no library class matches the protocol.
"""

from rankseg.losses.losses import BCEOneVsRestLoss, FocalLoss, SoftDiceLoss, one_hot_with_ignore

__all__ = ["BCEOneVsRestLoss", "FocalLoss", "SoftDiceLoss", "one_hot_with_ignore"]
