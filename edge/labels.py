"""The mask classes, in the classifier's output order, and the folder/label names that mean them."""

CLASSES = ("with_mask", "without_mask", "mask_weared_incorrect")
#: Other spellings -> class: MaskedFace-Net's ``correct_mask`` / ``incorrect_mask`` folders, jolignier's
#: ``with_incorrect_mask`` labels.
CLASS_ALIASES = {name: name for name in CLASSES} | {
    "correct_mask": "with_mask", "incorrect_mask": "mask_weared_incorrect", "with_incorrect_mask": "mask_weared_incorrect"}
